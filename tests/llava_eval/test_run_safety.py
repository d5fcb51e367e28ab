"""Run-directory safety: a task whose every image failed has no metric; every invocation's data options are
recorded and every consumer reads each task's rows with the options that produced it; bad data and a busy
directory are refused before a model loads; a first call that answered nothing leaves no config.json."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from llava_eval.cli import main
from llava_eval.rundir import RunLock
from llava_eval.runner import run
from tasks.base import TaskError
from tasks.registry import get_task
from tests.fakes import Yes


class Broken:
    def generate(self, requests):
        raise RuntimeError("device lost")


def _run(out, model=None, tasks=("pope",), limit=4, lines=None, **kw):
    return run(model or Yes(), list(tasks), out, model_id="fake", limit=limit, batch_size=4, model_fp="m",
               echo=(lines if lines is not None else []).append, progress=False, **kw)


def pope_rows(tmp_path, n, missing):
    """A local POPE file of `n` rows whose first `missing` images do not exist (the others are PNGs under tmp_path)."""
    rows = []
    for i, doc in enumerate(get_task("pope").synthetic_docs(n)):
        if i >= missing:
            (tmp_path / f"{i}.png").write_bytes(doc["image"]["bytes"])
        rows.append({**doc, "image": f"{i}.png"})
    data = tmp_path / "pope.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def no_model(*args, **kwargs):
    raise AssertionError("the model was loaded")


def one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- rows that all failed -------------------------------------------------------------------------------
def test_a_task_whose_every_image_fails_reports_no_scoreable_rows(tmp_path):
    from llava_eval.leaderboard import run_row
    from llava_eval.report import write_report

    data, out, model, lines = pope_rows(tmp_path, 4, missing=4), tmp_path / "run", Yes(), []
    m = _run(out, model, data=str(data), data_root=str(tmp_path), lines=lines)["pope"]["metrics"]
    assert m["status"] == "no_scoreable_rows" and m["n_errors"] == 4 and m["n_docs"] == 4
    assert "f1" not in m and "accuracy" not in m and "ci95" not in m
    assert model.seen == [] and not (out / "pope" / "items.jsonl").exists()
    assert "no scoreable rows (4 image errors)" in lines[0], lines
    assert run_row(out)["POPE"] is None  # the leaderboard cell stays empty
    html = write_report(out).read_text()
    # the report's summary says what the run's table said (no number)
    assert re.search(r'<tr data-task="pope">.*?<td class="num">(.*?)</td>', html, re.S).group(1) == lines[0].split(
        "f1", 1)[1].split("n=")[0].strip() == "no scoreable rows (4 image errors)"
    for i in range(4):  # the images come back: the rerun scores the task
        (tmp_path / f"{i}.png").write_bytes(get_task("pope").synthetic_docs(4)[i]["image"]["bytes"])
    m = _run(out, data=str(data), data_root=str(tmp_path))["pope"]["metrics"]
    assert "status" not in m and m["n_errors"] == 0 and isinstance(m["f1"], float)


def test_some_failed_images_are_counted_and_the_rest_scored(tmp_path):
    lines = []
    m = _run(tmp_path / "run", data=str(pope_rows(tmp_path, 4, missing=2)), data_root=str(tmp_path),
             lines=lines)["pope"]["metrics"]
    assert m["n_errors"] == 2 and m["n_missing"] == 2 and isinstance(m["f1"], float)  # as the original: empty answers
    assert "2 image errors" in lines[0]


# ---- data options of every invocation, one rule for every consumer ---------------------------------------
def test_every_invocation_records_its_data_options(tmp_path):
    from llava_eval.rundir import RunDir

    _run(tmp_path, limit=4)
    _run(tmp_path, limit=6)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["limit"] == 4
    assert {k: config["resumes"][-1][k] for k in ("data", "data_root", "limit")} == {
        "data": "synthetic", "data_root": None, "limit": 6}
    entry = json.loads((tmp_path / "pope" / "metrics.json").read_text())
    assert entry["options"] == {"data": "synthetic", "data_root": None, "limit": 6}
    assert RunDir(tmp_path).task_data_options("pope") == entry["options"]


def test_consumers_read_the_rows_that_produced_each_task(tmp_path):
    from llava_eval.report import write_report
    from llava_eval.rundir import RunDir
    from llava_eval.stats import compare_runs

    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, tasks=("pope", "vizwiz_test"), limit=4)
    _run(a, tasks=("pope", "vizwiz_test"), limit=6)  # the rerun extends both tasks to 6 rows
    _run(b, limit=6)
    assert len(RunDir(a).run_docs("pope")[1]) == 6  # what judge and compare load
    assert [r["n_shared"] for r in compare_runs(a, b)] == [6]
    html = write_report(a).read_text()
    n_items = sum(len((a / t / "items.jsonl").read_text().splitlines()) for t in ("pope", "vizwiz_test"))
    assert html.count("data:image/jpeg;base64,") == n_items == 12  # every sample found its row's image
    sub = tmp_path / "vizwiz.json"
    result = CliRunner().invoke(main, ["submit", str(a), "--task", "vizwiz_test", "--out", str(sub)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(sub.read_text())) == 6


def test_submit_of_a_directory_that_is_no_run_is_one_line(tmp_path):
    (tmp_path / "pope").mkdir()
    (tmp_path / "pope" / "predictions.jsonl").write_text("")
    one_line_error(CliRunner().invoke(main, ["submit", str(tmp_path), "--task", "pope", "--out", str(tmp_path / "x")]),
                   "not a run directory")


def test_a_first_call_that_answers_nothing_leaves_no_config(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TaskError, match="data not found"):
        _run(out, data=str(tmp_path / "none.jsonl"))
    assert not (out / "config.json").exists()
    with pytest.raises(RuntimeError, match="device lost"):
        _run(out, Broken())
    assert not (out / "config.json").exists()
    _run(out)
    assert "resumes" not in json.loads((out / "config.json").read_text())  # the first call on record


# ---- refused before the model loads -----------------------------------------------------------------------
def test_bad_data_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr("llava_eval.cli.load_from_options", no_model)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--model", "tiny", "--tasks", "pope", "--data", "/nonexistent.jsonl",
                                       "--out", str(out)])
    one_line_error(result, "data not found: /nonexistent.jsonl")
    assert not out.exists()


def test_data_that_fits_only_the_first_task_answers_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("llava_eval.cli.load_from_options", no_model)
    out = tmp_path / "run"
    data = pope_rows(tmp_path, 4, missing=0)
    result = CliRunner().invoke(main, ["run", "--model", "tiny", "--tasks", "pope,scienceqa_img", "--data", str(data),
                                       "--data-root", str(tmp_path), "--out", str(out)])
    one_line_error(result, "task scienceqa_img", "pope.jsonl")
    assert not out.exists()


def test_a_directory_in_use_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr("llava_eval.cli.load_from_options", no_model)
    with RunLock(tmp_path):  # what a live run or judge holds
        result = CliRunner().invoke(main, ["run", "--model", "tiny", "--tasks", "pope", "--limit", "2", "--out",
                                           str(tmp_path)])
    one_line_error(result, f"is in use by pid {os.getpid()}")
    assert not (tmp_path / "config.json").exists()


def test_a_damaged_results_file_is_one_error_naming_it(tmp_path):
    _run(tmp_path)
    (tmp_path / "results.json").write_text('{"pope": {"task": "po')  # cut off by a full disk
    one_line_error(CliRunner().invoke(main, ["report", str(tmp_path)]), "results.json: not valid JSON")
