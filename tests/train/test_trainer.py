"""The trainer end to end on the tiny model and synthetic conversations: loss falls, resume continues
the step count from the last checkpoint, stage 1 writes only its trainable weights and stage 2 loads
them, the stage-2 result loads in the harness and answers, and results hold the recipe's projector and
record its template."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.train.test_init import LINEAR_KEYS, projector_keys
from train.recipes import load_recipe
from train.trainer import TRAINABLE_FILE, run_stage


def small(stage: int, **changes):
    recipe = load_recipe("tiny-shapes")[stage - 1]
    base = dict(data_path=f"synthetic:stage{stage}:24", per_device_batch_size=4, global_batch_size=4,
                gradient_accumulation_steps=1, save_steps=2, epochs=1.0, max_length=1024, logging_steps=2)
    base.update(changes)
    return dataclasses.replace(recipe, **base)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "stage1"
    return run_stage(small(1), out, max_steps=2)


def test_stage1_writes_only_trainable_weights(stage1):
    from safetensors.torch import load_file

    weights = load_file(str(stage1 / TRAINABLE_FILE))
    assert weights and all(k.startswith(("model.multi_modal_projector.", "model.vision_tower.")) for k in weights)
    assert any(k.startswith("model.multi_modal_projector.") for k in weights)


def test_stage2_loss_falls_and_result_loads_in_the_harness(stage1, tmp_path):
    from llava_eval.engine import LlavaEngine
    from llava_model.checkpoint import load_bundle
    from llava_model.conversation import eval_messages
    from llava_types import GenerationSettings, Request

    out = tmp_path / "stage2"
    result = run_stage(small(2, learning_rate=3e-3, data_path="synthetic:stage2:16"), out, init_from=stage1,
                       max_steps=12)
    losses = [row["loss"] for row in json.loads((out / "train_summary.json").read_text())["log_history"]
              if "loss" in row]
    assert len(losses) >= 2 and losses[-1] < losses[0] - 0.5, losses
    bundle = load_bundle(str(result), device="cpu")
    assert bundle.template.name == "vicuna_v1" and bundle.image_mode == "pad"
    from synthetic import make_scene

    request = Request("q", eval_messages("What color is the circle?", True), (make_scene(1).image(),),
                      GenerationSettings(max_new_tokens=4))
    assert isinstance(LlavaEngine(bundle).generate([request])[0], str)


def test_resume_continues_the_step_count(stage1, tmp_path):
    out = tmp_path / "resume"
    run_stage(small(2), out, init_from=stage1, max_steps=4)
    assert (out / "checkpoint-4").is_dir()
    run_stage(small(2), out, init_from=stage1, max_steps=6)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-4" and summary["global_step"] == 6


def test_lora_stage2_merges_into_a_plain_checkpoint(stage1, tmp_path):
    from llava_model.checkpoint import load_bundle
    from train.recipes import LoraSpec

    out = tmp_path / "lora"
    result = run_stage(small(2, lora=LoraSpec(r=4, alpha=8, dropout=0.0), projector_lr=1e-3), out,
                       init_from=stage1, max_steps=2)
    bundle = load_bundle(str(result), device="cpu")
    names = list(bundle.model.state_dict())
    assert not any("lora" in n for n in names) and any("multi_modal_projector" in n for n in names)


def test_stage1_records_its_template_and_projector(stage1):
    meta = json.loads((stage1 / "llava_eval.json").read_text())
    assert (meta["stage"], meta["template"], meta["image_mode"], meta["projector"]) == (1, "plain", "crop",
                                                                                      "mlp2x_gelu")


def test_the_result_is_built_and_recorded_as_the_recipe_says(tmp_path):
    """A linear-projector stage 1 chains into a linear stage 2 rendered with llava_v1; the checkpoint holds
    the linear projector and records llava_v1 in config.json and llava_eval.json. The linear stage-1
    weights cannot start an mlp2x_gelu stage 2."""
    from safetensors.torch import load_file

    from llava_model.checkpoint import load_bundle
    from llava_types import UserError

    first = run_stage(small(1, projector="linear"), tmp_path / "stage1", max_steps=1)
    assert projector_keys(load_file(str(first / TRAINABLE_FILE))) == LINEAR_KEYS
    assert json.loads((first / "llava_eval.json").read_text())["projector"] == "linear"
    result = run_stage(small(2, projector="linear", template="llava_v1", data_path="synthetic:stage2:8"),
                       tmp_path / "stage2", init_from=first, max_steps=1)
    assert json.loads((result / "llava_eval.json").read_text())["template"] == "llava_v1"
    config = json.loads((result / "config.json").read_text())
    assert (config["llava_template"], config["llava_projector"]) == ("llava_v1", "linear")
    bundle = load_bundle(str(result), device="cpu")
    assert bundle.template.name == "llava_v1" and projector_keys(bundle.model.state_dict()) == LINEAR_KEYS
    with pytest.raises(UserError, match="lacks projector weights"):
        run_stage(small(2, data_path="synthetic:stage2:8"), tmp_path / "mlp", init_from=first, max_steps=1)


def test_a_finished_stage_is_reused_when_rerun_with_the_same_recipe(stage1, tmp_path):
    out = tmp_path / "again"
    first = run_stage(small(2), out, init_from=stage1, max_steps=2)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert run_stage(small(2), out, init_from=stage1, max_steps=2) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # not retrained, not rewritten
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["run"]["max_steps"] == 2 and summary["global_step"] == 2


def test_checkpoints_of_another_recipe_are_not_resumed(stage1, tmp_path):
    from train.resume import ResumeError

    out = tmp_path / "changed"
    run_stage(small(2), out, init_from=stage1, max_steps=2)
    with pytest.raises(ResumeError, match="different recipe.*learning_rate"):
        run_stage(small(2, learning_rate=5e-4), out, init_from=stage1, max_steps=4)
    summary = json.loads((out / "train_summary.json").read_text())
    run_stage(small(2, learning_rate=5e-4), out, init_from=stage1, max_steps=2, resume=False)
    assert json.loads((out / "train_summary.json").read_text())["run"] != summary["run"]


def test_a_crash_while_saving_leaves_nothing_to_reuse(stage1, tmp_path, monkeypatch):
    import train.trainer as trainer_module

    out = tmp_path / "crash"
    first = run_stage(small(2), out, init_from=stage1, max_steps=2)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(trainer_module, "save_result", crash)
    with pytest.raises(OSError):
        run_stage(small(2), out, init_from=stage1, max_steps=4)  # a longer run, killed while writing final/
    monkeypatch.undo()
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    run_stage(small(2), out, init_from=stage1, max_steps=2)  # the first run's summary must not vouch for final/
    assert (first / "model.safetensors").stat().st_mtime_ns != stamp


@pytest.mark.parametrize("stored", ["[1, 2]", "{not json", "null"])
def test_an_unreadable_recipe_beside_checkpoints_is_a_clear_error(tmp_path, stored):
    from train.resume import ResumeError, check_checkpoints_match

    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "recipe.json").write_text(stored)
    with pytest.raises(ResumeError, match="not a recipe entry; pass --no-resume"):
        check_checkpoints_match(tmp_path, small(2))
