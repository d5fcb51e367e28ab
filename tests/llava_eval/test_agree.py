"""`llava-eval agree RUN_A RUN_B`: per task, on the docs both runs answered, the share of identical answers, the
score difference with the paired bootstrap interval `compare` computes, and the first differing answers;
written as agreement.json. Two toy backends make the runs: one answers "Yes" to everything, the other "No" to
every third request."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llava_eval.backends.entry import BackendEntry
from llava_eval.backends.registry import BACKENDS
from llava_eval.cli import main
from llava_eval.stats import compare_runs


class Toy:
    chunk_size = 64

    def __init__(self, model, options):
        self.source, self.model = f"toy:{model}", model

    def generate(self, requests):
        if self.model == "yes":
            return ["Yes"] * len(requests)
        return ["No" if hash_index(r.doc_id) % 3 == 0 else "Yes" for r in requests]

    def fingerprint(self):
        return f"toy-{self.model}"

    def record(self):
        return {"backend": "toy"}

    def prompt(self, request):
        return request.messages[-1].text


def hash_index(doc_id) -> int:
    return doc_id if isinstance(doc_id, int) else int(str(doc_id).rsplit("-", 1)[-1])


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "toy", BackendEntry(open=Toy))
    for name in ("yes", "mixed"):
        result = CliRunner().invoke(main, ["run", "--model", f"toy:{name}", "--tasks", "pope,mme", "--limit", "12",
                                           "--out", str(tmp_path / name), "--no-progress"])
        assert result.exit_code == 0, result.output
    return tmp_path / "yes", tmp_path / "mixed"


def test_agreement_per_task_with_the_paired_interval_and_the_first_differences(runs):
    a, b = runs
    result = CliRunner().invoke(main, ["agree", str(a), str(b), "--examples", "2"])
    assert result.exit_code == 0, result.output
    saved = json.loads((b / "agreement.json").read_text())
    assert f"wrote {b / 'agreement.json'}" in result.output
    pope = saved["tasks"]["pope"]
    assert pope["n_both"] == 12 and pope["n_identical"] == 8 and pope["identical"] == pytest.approx(8 / 12)
    assert pope["differences"] == [{"question_id": "pope-0-0", "a": "Yes", "b": "No"},
                                   {"question_id": "pope-0-3", "a": "Yes", "b": "No"}]
    compared = {row["task"]: row for row in compare_runs(a, b)}
    for task in ("pope", "mme"):
        score = saved["tasks"][task]["score"]
        assert {k: score[k] for k in ("a", "b", "diff", "low", "high")} == pytest.approx(
            {k: compared[task][k] for k in ("a", "b", "diff", "low", "high")})
    assert "pope" in result.output and "66.7%" in result.output and "pope pope-0-0: A 'Yes' | B 'No'" in result.output


def test_only_the_docs_both_answered_count(runs, tmp_path):
    a, b = runs
    pred = b / "pope" / "predictions.jsonl"
    rows = pred.read_text().splitlines()
    kept = [line for line in rows if json.loads(line)["question_id"] not in ("pope-0-0", "pope-0-1")]
    pred.write_text("\n".join(kept) + "\n" + json.dumps({"question_id": "pope-0-1", "missing": "timeout",
                                                         "task": "pope"}) + "\n")
    out = tmp_path / "agreement.json"
    result = CliRunner().invoke(main, ["agree", str(a), str(b), "--tasks", "pope", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pope = json.loads(out.read_text())["tasks"]["pope"]
    assert (pope["n_a"], pope["n_b"], pope["n_both"], pope["n_identical"]) == (12, 10, 10, 7)


def test_a_task_not_answered_in_both_is_one_error(runs):
    a, b = runs
    result = CliRunner().invoke(main, ["agree", str(a), str(b), "--tasks", "gqa"])
    assert result.exit_code == 2 and result.output.strip() == "error: not answered in both runs: gqa"


def test_the_report_links_the_agreement(runs):
    a, b = runs
    assert CliRunner().invoke(main, ["agree", str(a), str(b)]).exit_code == 0
    report = CliRunner().invoke(main, ["report", str(b)])
    assert report.exit_code == 0, report.output
    html = (b / "report.html").read_text()
    shares = json.loads((b / "agreement.json").read_text())["tasks"]
    assert '<p id="agreement">' in html and 'href="agreement.json"' in html and str(a) in html
    assert f"pope {100 * shares['pope']['identical']:.1f}% identical" in html
    assert CliRunner().invoke(main, ["report", str(a)]).exit_code == 0  # no agreement measured into A
    assert '<p id="agreement">' not in (a / "report.html").read_text()
