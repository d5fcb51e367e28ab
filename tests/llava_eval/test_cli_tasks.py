"""The task commands: `tasks` listing and `--show`, `score` on an existing answer file (original
LLaVA answer-file format) with its bad-input cases, `run` into a directory and `submit`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llava_eval.cli import main
from tasks.registry import get_task
from tests.cli_checks import one_line_error


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])



@pytest.fixture
def pope_files(tmp_path):
    task = get_task("pope")
    docs = task.synthetic_docs(6)
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps({k: v for k, v in d.items() if k != "image"}) for d in docs))
    return task, docs, data, tmp_path


def write_answers(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_tasks_lists_tasks_and_suites():
    result = run_cli("tasks")
    assert result.exit_code == 0 and "pope" in result.output and "suite llava-1.5:" in result.output


def test_tasks_show_prints_the_contract():
    result = run_cli("tasks", "--show", "pope")
    assert result.exit_code == 0, result.output
    for fragment in ("lmms-lab/POPE", "question_id", "Answer the question using a single word or phrase.",
                     "f1", "version 1"):
        assert fragment in result.output


def test_unknown_task_suggests_nearest():
    one_line_error(run_cli("tasks", "--show", "popee"), "unknown task 'popee'", "pope")
    one_line_error(run_cli("run", "--tasks", "pope,gqaa", "--limit", "1"), "gqaa")


def test_score_gold_answer_file(pope_files):
    task, docs, data, tmp = pope_files
    answers = write_answers(tmp / "answers.jsonl", [
        {"question_id": d["question_id"], "prompt": "", "text": task.gold_text(d), "answer_id": "x",
         "model_id": "m", "metadata": {}} for d in docs])
    result = run_cli("score", "--task", "pope", "--data", data, "--predictions", answers)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["f1"] == pytest.approx(100.0) and metrics["n_missing"] == 0


def test_score_counts_missing_predictions(pope_files):
    task, docs, data, tmp = pope_files
    answers = write_answers(tmp / "a.jsonl", [{"question_id": d["question_id"], "text": "No"} for d in docs[:4]])
    metrics = json.loads(run_cli("score", "--task", "pope", "--data", data, "--predictions", answers).stdout)
    assert metrics["n_missing"] == 2 and metrics["n_docs"] == 6


def test_score_rejects_duplicate_ids(pope_files):
    _, docs, data, tmp = pope_files
    qid = docs[0]["question_id"]
    answers = write_answers(tmp / "a.jsonl", [{"question_id": qid, "text": "yes"}, {"question_id": qid, "text": "no"}])
    one_line_error(run_cli("score", "--task", "pope", "--data", data, "--predictions", answers), "duplicate", qid)


def test_score_rejects_unknown_ids(pope_files):
    _, _, data, tmp = pope_files
    answers = write_answers(tmp / "a.jsonl", [{"question_id": "nope-1", "text": "yes"}])
    one_line_error(run_cli("score", "--task", "pope", "--data", data, "--predictions", answers), "nope-1")


def test_score_rejects_malformed_lines_and_schema(pope_files):
    _, _, data, tmp = pope_files
    bad = tmp / "bad.jsonl"
    bad.write_text('{"question_id": 1, "text": "yes"}\nnot json\n')
    one_line_error(run_cli("score", "--task", "pope", "--data", data, "--predictions", bad), "bad.jsonl:2")
    rows = tmp / "rows2.jsonl"
    rows.write_text(json.dumps({"question_id": "a", "question": "q"}) + "\n")
    one_line_error(run_cli("score", "--task", "pope", "--data", rows, "--predictions", bad), "'answer'")


def test_run_writes_run_directory(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "--model", "tiny", "--tasks", "pope", "--limit", "3", "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and (out / "results.json").is_file()
    assert len((out / "pope" / "predictions.jsonl").read_text().splitlines()) == 3
    assert "pope" in result.output and "f1" in result.output


@pytest.mark.parametrize("name", sorted(__import__("tasks.registry").registry.load_all()))
def test_every_task_shows_its_contract(name):
    task = get_task(name)
    result = run_cli("tasks", "--show", name)
    assert result.exit_code == 0, result.output
    assert f"{name} (version {task.version})" in result.output and "doc id:" in result.output
    assert "<image>\\n" in result.output  # the prompt example, with its image placeholder
    assert f"versions:    request {task.version}, scoring {task.scoring_version}" in result.output


def test_submit_from_a_run_directory(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "--model", "tiny", "--tasks", "seed_image,mmbench_en_test", "--limit", "4",
                   "--out", out).exit_code == 0
    result = run_cli("submit", out, "--task", "seed_image", "--out", tmp_path / "seed.jsonl")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "seed.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(set(x) == {"question_id", "prediction"} for x in lines)
    result = run_cli("submit", out, "--task", "mmbench_en_test", "--out", tmp_path / "mmb.xlsx")
    assert result.exit_code == 0, result.output
    import pandas as pd

    sheet = pd.read_excel(tmp_path / "mmb.xlsx")
    assert {"index", "question", "A", "B", "prediction"} <= set(sheet.columns) and len(sheet) == 4


def test_submit_without_the_vqav2_question_list_is_refused(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "--model", "tiny", "--tasks", "vqav2_testdev", "--limit", "2", "--out", out).exit_code == 0
    one_line_error(run_cli("submit", out, "--task", "vqav2_testdev", "--out", tmp_path / "v.json"), "test2015")
    result = run_cli("submit", out, "--task", "vqav2_testdev", "--out", tmp_path / "v.json",
                     "--extra", "allow_partial=1")
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "v.json").read_text())) == 2
