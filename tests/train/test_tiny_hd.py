"""The tiny-hd recipe (LLaVA-1.5-HD on transformers' LLaVA-NeXT machinery): `llava-train tiny-hd` runs both
stages for two steps on a few synthetic samples, stage 2 trains the image_newline vector, and the result is a
llava-next checkpoint that `llava-eval run` evaluates and whose answers equal transformers' own LlavaNext
`generate` (batch size 1) and are the same at batch size 8 and with prefix sharing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from train.cli import main as train_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both stages, two steps each on 8 samples. At the recipe's LR (1e-3) two steps teach the tiny model to
    answer `</s>` at once, whatever the input; 1e-5 keeps its answers long and input-dependent, so that the
    comparison with transformers below compares something."""
    out = tmp_path_factory.mktemp("hd") / "tiny-hd"
    for stage in (1, 2):
        result = CliRunner().invoke(train_main, [
            "tiny-hd", "--out", str(out), "--stage", str(stage), "--max-steps", "2",
            "--set", f"data_path=synthetic:stage{stage}:8", "--set", "per_device_batch_size=4",
            "--set", "global_batch_size=4", "--set", "learning_rate=1e-5"])
        assert result.exit_code == 0, result.output
    return out


def test_the_recipe_trains_both_stages_on_anyres_inputs(trained):
    from safetensors.torch import load_file

    from llava_model.next import load_next_bundle
    from train.trainer import TRAINABLE_FILE

    stage1 = load_file(str(trained / "stage1" / "final" / TRAINABLE_FILE))
    assert "model.image_newline" not in stage1  # Reference: train.py stage 1 trains mm_projector alone
    bundle = load_next_bundle(str(trained / "stage2" / "final"), device="cpu")
    assert bundle.image_mode == "anyres" and bundle.template.name == "vicuna_v1"
    untrained = load_next_bundle("tiny-hd", device="cpu", seed=42)
    assert not torch.equal(bundle.model.model.image_newline, untrained.model.model.image_newline)


def test_the_result_evaluates_and_answers_as_transformers_does(trained, tmp_path):
    from llava_model.presets import NEXT_PRESETS
    from tests.next_models import check_against_transformers, run_and_check, synthetic_requests

    result = trained / "stage2" / "final"
    run_and_check(result, tmp_path / "run", [list(g) for g in NEXT_PRESETS["tiny-hd"].grid_pinpoints])
    check_against_transformers(result, synthetic_requests())


def test_anyres_needs_a_llava_next_model():
    from llava_types import UserError
    from train.recipes import load_recipe
    from train.trainer import init_bundle

    with pytest.raises(UserError, match="image_mode 'anyres' does not fit model_init 'tiny-112'"):
        init_bundle(dataclasses.replace(load_recipe("tiny-hd")[0], model_init="tiny-112"))
    with pytest.raises(UserError, match="image_mode 'pad' does not fit model_init 'tiny-hd'"):
        init_bundle(dataclasses.replace(load_recipe("tiny-hd")[1], image_mode="pad"))
