"""The command line: help everywhere, one-line errors with exit status 2 on bad input, and no torch or
transformers import on the fast paths (`llava-eval --help` must answer in well under 1.5 s)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from llava_eval.cli import main
from tests.cli_checks import one_line_error


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    from tests.conftest import shape_image

    path = tmp_path_factory.mktemp("img") / "shapes.png"
    shape_image(160, 120, 3).save(path)
    return path


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_help_does_not_import_torch():
    code = ("import sys; from llava_eval.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


@pytest.mark.parametrize("command", [[], ["generate"], ["convert"], ["presets"]])
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_generate_answers_one_question(image_file):
    result = run("generate", "--model", "tiny", "--image", str(image_file), "--prompt", "What shape?",
                 "--max-new-tokens", "5")
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) <= 1



def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"definitely not a png")
    one_line_error(run("generate", "--image", str(bad), "--prompt", "hi"), "cannot read image", "bad.png")


def test_missing_image(tmp_path):
    one_line_error(run("generate", "--image", str(tmp_path / "none.png"), "--prompt", "hi"), "not found")


def test_missing_checkpoint_file(tmp_path, image_file):
    one_line_error(run("generate", "--model", str(tmp_path), "--image", str(image_file), "--prompt", "hi"),
                   "config.json")


def test_unknown_preset_lists_valid_names(image_file):
    one_line_error(run("generate", "--model", "llava-v9", "--image", str(image_file), "--prompt", "hi"),
                   "llava-v1.5-7b", "tiny")


def test_presets_lists_all():
    result = run("presets")
    assert result.exit_code == 0
    for name in ("llava-v1.5-7b", "llava-v1.5-13b", "llava-v1.5-7b-linear", "llava-v1.5-7b-224", "tiny"):
        assert name in result.output


def test_presets_lists_each_family_with_template_and_image_preprocessing():
    lines = run("presets").output.splitlines()
    rows = {line.split()[0]: line.split()[1:4] for line in lines if not line.startswith(("preset ", "backend "))}
    assert rows["tiny"] == ["llava", "vicuna_v1", "pad"]
    assert rows["llava-v1.5-13b-hd"] == rows["tiny-hd"] == ["llava-next", "vicuna_v1", "anyres"]
    assert any(line.startswith("backend llava-next (model_type llava_next") for line in lines)
