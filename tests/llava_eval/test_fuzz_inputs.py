"""Random bytes and random JSON where the CLI reads a user's file (data rows, an answer file, a checkpoint's
config.json) never end in a traceback: the command succeeds, or says what is wrong in one `error:` line
with exit status 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llava_eval.cli import main

TINY_SHAPES = Path(__file__).resolve().parents[2] / "llava_model" / "assets" / "tiny-shapes"
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(["pope-0-0", "pope-0-1", "yes", "no", "", "adversarial"]))


def json_values(keys: list[str]):
    """Any JSON value, with object keys mostly drawn from the names the reader looks for."""
    key = st.sampled_from(keys) | st.text(max_size=6)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(key, inner, max_size=5),
                        max_leaves=12)


def jsonl(keys: list[str]):
    """A JSONL file's bytes: objects with the expected keys (some values wrong), other JSON values, or noise."""
    row = st.fixed_dictionaries({k: scalars for k in keys}, optional={"x": json_values(keys)})
    line = row | json_values(keys)
    return st.lists(line, max_size=5).map(lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode())


def file_bytes(keys: list[str]):
    return st.binary(max_size=200) | jsonl(keys)


def no_traceback(result) -> None:
    """Exit 0, or exit 2 with exactly one `error:` line on stderr."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


POPE_COLUMNS = ["question_id", "question", "answer", "category", "image"]
ANSWER_KEYS = ["question_id", "text", "prompt", "answer_id"]


@given(content=file_bytes(ANSWER_KEYS))
@FUZZ
def test_random_answer_file_for_score(content, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_bytes(content)
    no_traceback(CliRunner().invoke(main, ["score", "--task", "pope", "--data", "synthetic", "--predictions",
                                           str(answers)]))


@given(content=file_bytes(POPE_COLUMNS))
@FUZZ
def test_random_data_rows_for_score(content, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(content)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": "pope-0-0", "text": "Yes"}) + "\n")
    no_traceback(CliRunner().invoke(main, ["score", "--task", "pope", "--data", str(rows), "--predictions",
                                           str(answers)]))


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-shapes"
    shutil.copytree(TINY_SHAPES, folder)
    return folder


@given(content=st.binary(max_size=200) | json_values(["model_type", "text_config", "vision_config",
                                                      "llava_template", "mm_projector_type"]).map(
    lambda v: json.dumps(v).encode()))
@FUZZ
def test_random_checkpoint_config_for_generate(content, checkpoint_dir):
    (checkpoint_dir / "config.json").write_bytes(content)
    no_traceback(CliRunner().invoke(main, ["generate", "--model", str(checkpoint_dir), "--prompt", "hi",
                                           "--max-new-tokens", "1"]))
