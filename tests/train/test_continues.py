"""A recipe's `continues` entry: a further stage-2 pass (a curriculum) that starts from the previous entry's
final model, in its own folder; how recipes with one are checked, and `llava-train` running one end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from train.cli import main as train_main
from train.recipes import RECIPE_DIR, RecipeError, read_recipe


def _recipe(tmp_path, *extra: dict):
    stages = json.loads((RECIPE_DIR / "tiny-shapes.json").read_text())["stages"]
    base = dict(stages[1], data_path="synthetic:stage2:8", per_device_batch_size=4,
                global_batch_size=4, learning_rate=1e-5)
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "r", "description": "d",
                                "stages": [base, *({**base, **e} for e in extra)]}))
    return path


def test_a_continuation_has_its_own_folder(tmp_path):
    recipe = read_recipe(_recipe(tmp_path, {"continues": True, "name": "stage2-more"}))
    assert [s.folder for s in recipe.stages] == ["stage2", "stage2-more"]
    assert [s.continues for s in recipe.stages] == [False, True]


@pytest.mark.parametrize("extra, message", [
    ({"continues": True}, "needs its own name"),
    ({"continues": True, "name": "stage2"}, "same folder"),
    ({"name": "again"}, "once each in order"),
    ({"continues": True, "name": "../up"}, "folder name"),
    ({"continues": True, "name": "s1", "stage": 1, "lora": None}, "further stage-2"),
])
def test_bad_continuations_are_refused(tmp_path, extra, message):
    with pytest.raises(RecipeError, match=message):
        read_recipe(_recipe(tmp_path, extra))


def test_llava_train_runs_the_continuation_from_the_previous_result(tmp_path):
    from llava_model.checkpoint import load_bundle

    recipe = _recipe(tmp_path, {"continues": True, "name": "stage2-more", "learning_rate": 1e-3, "warmup_ratio": 0,
                                "lr_scheduler": "constant", "data_path": "synthetic:stage2:8:existence"})
    out = tmp_path / "out"
    result = CliRunner().invoke(train_main, [str(recipe), "--out", str(out), "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    assert "stage2-more done" in result.output
    first = load_bundle(str(out / "stage2" / "final"), device="cpu").model.state_dict()
    second = load_bundle(str(out / "stage2-more" / "final"), device="cpu").model.state_dict()
    # It started from stage 2's weights (one small step away), not from the preset's random ones.
    moved = max(float((first[k] - second[k]).abs().max()) for k in first)
    assert 0 < moved < 0.05
    # Rerun as after an interruption: both finished passes are reused, not retrained.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/final/model.safetensors")}
    again = CliRunner().invoke(train_main, [str(recipe), "--out", str(out), "--max-steps", "1"])
    assert again.exit_code == 0, again.output
    assert len(stamps) == 2 and stamps == {p: p.stat().st_mtime_ns for p in stamps}
