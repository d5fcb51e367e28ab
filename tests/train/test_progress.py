"""`llava-train` on the built-in synthetic data renders only the images its steps can use and is never silent
before the first step: a `--max-steps 2` run of the tiny-shapes recipe (batch 16) renders at most 2 x 16 images
per stage (and curriculum pass), not the recipe's tens of thousands, and logs progress for generation,
validation and encoding."""

from __future__ import annotations

import logging
import os

from click.testing import CliRunner

from synthetic.world import Scene
from train.cli import main
from train.progress import Progress
from train.recipes import load_recipe

STEPS, BATCH, STAGES = 2, 16, len(load_recipe("tiny-shapes"))


def test_a_max_steps_run_renders_only_what_its_steps_use_and_logs_progress(tmp_path, monkeypatch, caplog):
    rendered = []
    original = Scene.png_bytes

    def counted(scene):
        rendered.append(scene)
        assert len(rendered) <= STEPS * BATCH * STAGES, "rendered more images than the steps can use"
        return original(scene)

    monkeypatch.setattr(Scene, "png_bytes", counted)
    caplog.set_level(logging.INFO, logger="llava_train")
    result = CliRunner().invoke(main, ["tiny-shapes", "--out", str(tmp_path / "run"), "--max-steps", str(STEPS)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert 0 < len(rendered) <= STEPS * BATCH * STAGES
    messages = [r.getMessage() for r in caplog.records if r.name == "llava_train"]
    for stage in ("stage1", "stage2"):
        assert any(f"synthetic:{stage}" in m and "generating" in m for m in messages), messages
        assert any(f"synthetic:{stage}" in m and "rendering images" in m for m in messages), messages
    for step in ("validat", "encoding"):
        assert any(step in m for m in messages), messages


def test_progress_lines_are_spaced_and_name_the_count():
    now = [0.0]
    log = logging.getLogger("test_progress")
    lines = []
    log.info = lambda msg, *args: lines.append(msg % args)  # type: ignore[method-assign]
    progress = Progress("rendering", 100, log, every_s=5.0, clock=lambda: now[0])
    for done in range(1, 100):
        now[0] = done * 0.5
        progress(done)
    progress.finish()
    assert lines[0] == "rendering: 100 ..." and lines[-1] == "rendering: 100 done in 49.5 s"
    assert lines[1].startswith("rendering: 10/100 (2/s, about 45 s left)")
    assert len(lines) == 2 + 9  # one line every 5 s over 49.5 s


def test_synthetic_data_paths_name_a_mix_and_bad_ones_are_refused(tmp_path):
    import pytest

    from llava_types import UserError
    from train.synthetic_data import synthetic_data

    path, folder = synthetic_data("synthetic:stage2:6:existence", tmp_path, max_samples=3)
    assert path.endswith("synthetic-stage2-6-existence/stage2.json") and len(os.listdir(folder)) == 3
    synthetic_data("synthetic:stage2:6:existence", tmp_path, max_samples=5)  # a longer run adds to the same folder
    assert len(os.listdir(folder)) == 5
    for bad in ("synthetic:stage2:6:nonsense", "synthetic:stage1:6:existence", "synthetic:stage3", "synthetic:x:y"):
        with pytest.raises(UserError, match="existence"):
            synthetic_data(bad, tmp_path)
