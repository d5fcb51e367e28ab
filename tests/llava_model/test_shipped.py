"""The checkpoint that ships in the package (`tiny-shapes`, trained by `llava-train tiny-shapes`): it
loads by name with no download, stays small, answers the synthetic benchmarks better than chance (the
yes/no existence questions of POPE and MME included, with balanced answers), and stops its open-ended
answers, so a regression in preprocessing, prompting or decoding shows up as a score drop."""

from __future__ import annotations

import json

import pytest

from llava_eval.runner import run
from llava_model.checkpoint import BUILTIN_CHECKPOINTS, load_bundle

ROWS = 96
# The fingerprint of the shipped weights, tokenizer, template and preprocessing (docs/benchmarks.md records it
# with the scores); retraining the checkpoint means updating both.
SHIPPED_FINGERPRINT = "5937994e36211ad4"


@pytest.fixture(scope="module")
def shipped():
    return load_bundle("tiny-shapes", device="cpu")


def test_ships_small_safetensors():
    files = list(BUILTIN_CHECKPOINTS["tiny-shapes"].glob("*.safetensors"))
    assert files and sum(f.stat().st_size for f in files) <= 15 * 2**20


def test_the_weights_are_the_recorded_ones(shipped):
    from llava_model.fingerprint import model_fingerprint

    assert model_fingerprint(shipped) == SHIPPED_FINGERPRINT


def test_records_template_and_preprocessing(shipped):
    assert shipped.template.name == "vicuna_v1" and shipped.image_mode == "pad"


def _run(shipped, tmp_path, task, rows=ROWS):
    from llava_eval.engine import LlavaEngine

    results = run(LlavaEngine(shipped, batch_size=16), [task], tmp_path, model_id="tiny-shapes", data="synthetic",
                  limit=rows, echo=lambda *_: None)
    return results[task]["metrics"]


@pytest.mark.parametrize("task,metric,margin", [
    ("seed_image", "accuracy", 12.0),  # four options
    ("mmbench_en_dev", "accuracy", 12.0),  # circular: every rotation of a 2-4 option question right
    ("textvqa_val", "accuracy", 40.0),  # reading the word in the image
    ("gqa", "accuracy", 8.0),
    ("vizwiz_val", "accuracy", 20.0),
])
def test_beats_chance(shipped, tmp_path, task, metric, margin):
    """Above the chance level the run records for the same rows (the task's trivial answerer, scored by its
    own scorer) by a clear margin."""
    metrics = _run(shipped, tmp_path, task)
    assert metrics[metric] > metrics["chance"]["value"] + margin, metrics


def test_answers_existence_questions_from_the_image(shipped, tmp_path):
    """POPE F1 >= 75 with a yes-ratio within 35-65% (always "Yes" scores F1 66.7 with 100%), on 200 rows."""
    metrics = _run(shipped, tmp_path, "pope", rows=200)
    assert metrics["f1"] >= 75 and 35 <= metrics["yes_ratio"] <= 65, metrics


def test_mme_perception_beats_a_fair_coin(shipped, tmp_path):
    """MME perception >= 900 on 200 rows (a fair coin expects 750, always "Yes" 500)."""
    metrics = _run(shipped, tmp_path, "mme", rows=200)
    assert metrics["perception"] >= 900 > metrics["chance"]["value"], metrics


def test_open_ended_answers_stop(shipped, tmp_path):
    """LLaVA-Bench and MM-Vet answers end with EOS well before the 1024-token cap, none empty or degenerate."""
    for task in ("llava_bench", "mmvet"):
        metrics = _run(shipped, tmp_path / task, task, rows=40)
        assert metrics["n_answered"] == 40 and metrics["n_empty"] == metrics["n_degenerate"] == 0, metrics
        answers = [json.loads(line)["text"] for line in (tmp_path / task / task / "predictions.jsonl").open()]
        token_counts = [len(shipped.tokenizer(a)["input_ids"]) for a in answers]
        assert max(token_counts) < 200, token_counts
