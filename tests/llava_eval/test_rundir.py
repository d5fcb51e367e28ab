"""The run directory has one owner: only llava_eval/rundir.py spells a run file's name (a checkpoint's own
config.json belongs to llava_model, which is not scanned), and `llava-eval run` hands the runner one typed,
frozen RunOptions value built from its command line."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
RUN_FILES = ("predictions.jsonl", "predictions.rank", "items.jsonl", "metrics.json", "results.json", "config.json",
             "agreement.json",
             "judge.jsonl", ".lock", "judge-cache")
OWNER = Path("llava_eval/rundir.py")


def spelled_run_files(root: Path) -> list[str]:
    """`file:line: name` for every string literal (f-strings included, docstrings not) of the harness and the
    tasks outside rundir.py that names a run file."""
    found = []
    for path in sorted([*(root / "llava_eval").rglob("*.py"), *(root / "tasks").rglob("*.py")]):
        if path.relative_to(root) == OWNER:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [f"{path.relative_to(root)}:{node.lineno}: {name}" for name in RUN_FILES
                          if name in node.value]
    return found


def test_only_the_run_directory_class_spells_a_run_file_name():
    assert spelled_run_files(ROOT) == []


def test_a_spelled_run_file_is_found(tmp_path):
    (tmp_path / "llava_eval").mkdir()
    (tmp_path / "tasks").mkdir()
    (tmp_path / "llava_eval" / "rundir.py").write_text('NAME = "metrics.json"\n')
    (tmp_path / "llava_eval" / "report.py").write_text(
        '"""Reads <task>/items.jsonl."""\n\ndef f(run, name):\n    """Its metrics.json."""\n'
        '    return run / name / f"items.jsonl"\n')
    (tmp_path / "tasks" / "pope.py").write_text('LOCK = "x/.lock"\n')
    assert spelled_run_files(tmp_path) == ["llava_eval/report.py:5: items.jsonl", "tasks/pope.py:1: .lock"]


def test_run_builds_one_typed_frozen_options_value(tmp_path, monkeypatch):
    import llava_eval.cli as cli
    from llava_eval.options import ModelOptions, RunOptions
    from llava_types import UserError

    seen = []

    def capture(options, shard):
        seen.append(options)
        raise UserError("stop before the model loads")

    monkeypatch.setattr(cli, "load_model", capture)
    result = CliRunner().invoke(cli.main, ["run", "--tasks", "pope,gqa", "--limit", "2", "--batch-size", "3",
                                           "--engine", "reference", "--dtype", "float32", "--out", str(tmp_path / "r"),
                                           "--no-progress", "--runs", "2"])
    assert result.exit_code == 2 and "stop before the model loads" in result.output, result.output
    [options] = seen
    assert isinstance(options, RunOptions) and options.tasks == ("pope", "gqa") and options.out == tmp_path / "r"
    assert (options.limit, options.batch_size, options.data, options.progress) == (2, 3, "synthetic", False)
    assert options.model == ModelOptions(dtype="float32", engine="reference")
    assert options.judge.runs == 2 and not options.judge.configured
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.limit = 3
