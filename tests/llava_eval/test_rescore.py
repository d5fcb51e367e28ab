"""Re-scoring never regenerates: `llava-eval rescore` recomputes items, metrics and results from the stored
answers, a scorer fix (`Task.scoring_version`) leaves every answer valid, and a `run` rerun after one generates
nothing and rescores."""

from __future__ import annotations

import json

from click.testing import CliRunner

from llava_eval.cli import main
from llava_eval.runner import run
from tasks.registry import get_task
from tests.fakes import Yes


def _run(out, model=None, tasks=("pope", "scienceqa_img"), limit=12):
    return run(model or Yes(), list(tasks), out, model_id="yes", limit=limit, batch_size=4, model_fp="m",
               echo=lambda *_: None, progress=False)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def files(out, task):
    return {name: (out / task / name).read_bytes() for name in ("predictions.jsonl", "items.jsonl", "metrics.json")}


def scorer_fix(monkeypatch):
    """POPE's parser changed (every answer read as "no") and its scoring version bumped, as a scorer fix does."""
    cls = type(get_task("pope"))
    monkeypatch.setattr(cls, "parse", lambda self, text, doc: "no")
    monkeypatch.setattr(cls, "scoring_version", 2)


def test_rescore_of_an_untouched_run_changes_nothing(tmp_path):
    _run(tmp_path)
    before = {t: files(tmp_path, t) for t in ("pope", "scienceqa_img")}
    results = (tmp_path / "results.json").read_bytes()
    result = cli("rescore", tmp_path)
    assert result.exit_code == 0, result.output
    assert {t: files(tmp_path, t) for t in ("pope", "scienceqa_img")} == before
    assert (tmp_path / "results.json").read_bytes() == results
    lines = result.output.splitlines()
    assert lines[0].startswith("pope") and "f1" in lines[0] and lines[1].startswith("scienceqa_img")
    rescores = json.loads((tmp_path / "config.json").read_text())["rescores"]
    assert rescores[-1]["scoring_versions"] == {"pope": 1, "scienceqa_img": 1}


def test_rescore_after_a_scorer_fix_uses_the_new_scorer_and_keeps_the_answers(tmp_path, monkeypatch):
    _run(tmp_path, tasks=("pope",))
    entry = json.loads((tmp_path / "pope" / "metrics.json").read_text())
    assert entry["scoring_version"] == 1 and entry["metrics"]["yes_ratio"] == 100.0
    answers = (tmp_path / "pope" / "predictions.jsonl").read_bytes()
    scorer_fix(monkeypatch)
    result = cli("rescore", tmp_path, "--tasks", "pope")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pope" / "predictions.jsonl").read_bytes() == answers
    entry = json.loads((tmp_path / "pope" / "metrics.json").read_text())
    assert entry["scoring_version"] == 2 and entry["metrics"]["yes_ratio"] == 0.0
    assert entry["generated"] == 12  # what generation recorded stays
    assert json.loads((tmp_path / "results.json").read_text())["pope"] == entry
    items = [json.loads(x) for x in (tmp_path / "pope" / "items.jsonl").read_text().splitlines()]
    assert {i["parsed"] for i in items} == {"no"}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rescores"][-1]["scoring_versions"] == {"pope": 2}


def test_a_rerun_after_a_scorer_fix_generates_nothing_and_rescores(tmp_path, monkeypatch):
    _run(tmp_path, tasks=("pope",))
    answers = (tmp_path / "pope" / "predictions.jsonl").read_bytes()
    scorer_fix(monkeypatch)
    model = Yes()
    entry = _run(tmp_path, model, tasks=("pope",))["pope"]
    assert model.seen == [] and entry["generated"] == 0
    assert entry["scoring_version"] == 2 and entry["metrics"]["yes_ratio"] == 0.0
    assert (tmp_path / "pope" / "predictions.jsonl").read_bytes() == answers


def test_rescore_refuses_what_it_cannot_rescore(tmp_path):
    def one_line(result, fragment):
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and result.output.startswith("error: ") and fragment in result.output

    one_line(cli("rescore", tmp_path), "no results.json")
    _run(tmp_path, tasks=("pope",))
    one_line(cli("rescore", tmp_path, "--tasks", "gqa"), "not finished in")
    (tmp_path / "pope" / "predictions.jsonl").unlink()
    one_line(cli("rescore", tmp_path), "no stored answers for pope")


def test_rescore_refuses_a_directory_in_use(tmp_path):
    import os

    from llava_eval.rundir import RunLock

    _run(tmp_path, tasks=("pope",))
    with RunLock(tmp_path):
        result = cli("rescore", tmp_path)
    assert result.exit_code == 2 and f"in use by pid {os.getpid()}" in result.output


def test_judged_tasks_go_to_the_judges_rescoring_or_are_skipped_until_judged(tmp_path, monkeypatch):
    from llava_eval.judge import run as judge_run

    _run(tmp_path, tasks=("pope", "mmvet"), limit=4)
    result = cli("rescore", tmp_path)  # mmvet was never judged: nothing to rescore
    assert result.exit_code == 0, result.output
    assert "mmvet" in result.output and "not rescored" in result.output
    assert json.loads((tmp_path / "config.json").read_text())["rescores"][-1]["scoring_versions"] == {"pope": 1}
    calls = []
    entry = json.loads((tmp_path / "mmvet" / "metrics.json").read_text())
    (tmp_path / "mmvet" / "metrics.json").write_text(json.dumps(entry | {"judged": True}))  # as a judge records
    monkeypatch.setattr(judge_run, "rescore_judged", lambda run_dir, name: calls.append((run_dir, name)))
    assert cli("rescore", tmp_path, "--tasks", "mmvet").exit_code == 0
    assert calls == [(tmp_path, "mmvet")]
