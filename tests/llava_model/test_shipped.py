"""The checkpoint that ships in the package (`tiny-shapes`, trained by `llava-train tiny-shapes`): it
loads by name with no download, stays small, and answers the synthetic benchmarks better than chance,
so a regression in preprocessing, prompting or decoding shows up as a score drop."""

from __future__ import annotations

import pytest

from llava_eval.runner import run
from llava_model.checkpoint import BUILTIN_CHECKPOINTS, load_bundle

ROWS = 96
# The fingerprint of the shipped weights, tokenizer, template and preprocessing (docs/benchmarks.md records it
# with the scores); retraining the checkpoint means updating both.
SHIPPED_FINGERPRINT = "8ddf2d3d1bf24fbc"


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


@pytest.mark.parametrize("task,metric,margin", [
    ("seed_image", "accuracy", 12.0),  # four options
    ("mmbench_en_dev", "accuracy", 12.0),  # circular: every rotation of a 2-4 option question right
    ("textvqa_val", "accuracy", 40.0),  # reading the word in the image
    ("gqa", "accuracy", 8.0),
])
def test_beats_chance(shipped, tmp_path, task, metric, margin):
    """Above the chance level the run records for the same rows (the task's trivial answerer, scored by its
    own scorer) by a clear margin."""
    from llava_eval.engine import LlavaEngine

    results = run(LlavaEngine(shipped, batch_size=16), [task], tmp_path, model_id="tiny-shapes", data="synthetic",
                  limit=ROWS, echo=lambda *_: None)
    metrics = results[task]["metrics"]
    assert metrics[metric] > metrics["chance"]["value"] + margin, metrics
