"""The main job's table and outputs: every task's chance level is recorded in metrics.json and results.json
and printed beside its score, every row of the locally scored suite has a number, empty and degenerate
answers are counted per task and shown, and `run --report FILE --leaderboard FILE` writes the HTML report
and the leaderboard CSV with the paper's rows, saying where they are."""

from __future__ import annotations

import csv
import json
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from llava_eval.backends.entry import BackendEntry
from llava_eval.backends.registry import BACKENDS
from llava_eval.cli import main
from llava_eval.report import write_report
from llava_eval.runner import run
from llava_eval.scoring import answer_counts
from tasks.registry import SUITES, get_task
from tests.cli_checks import one_line_error
from tests.fakes import Yes

RUNAWAY_O = "Triangle" + "O" * 40
README = Path(__file__).resolve().parents[2] / "README.md"


class Scripted:
    """Gives the scripted answers in turn, whatever the request."""

    def __init__(self, answers):
        self.answers = list(answers)

    def generate(self, requests):
        return [self.answers.pop(0) for _ in requests]


@pytest.mark.parametrize("text,empty,degenerate", [
    ("", 1, 0), (" \n\t", 1, 0), ("Yes", 0, 0), ("A", 0, 0), ("1000000", 0, 0), ("a red circle left of a square", 0, 0),
    (RUNAWAY_O, 0, 1), ("Triangle Triangle Triangle Triangle Triangle", 0, 1), ("x" * 16, 0, 1), ("x" * 15, 0, 0),
    ("red, blue, red, blue", 0, 0),
])
def test_empty_and_degenerate_answers_are_told_apart_from_short_ones(text, empty, degenerate):
    assert answer_counts([text]) == {"n_empty": empty, "n_degenerate": degenerate}


def test_a_task_counts_its_empty_and_degenerate_answers_and_the_row_shows_them(tmp_path):
    lines = []
    results = run(Scripted(["", "Yes", "No", RUNAWAY_O, " ", "Yes"]), ["pope"], tmp_path, model_id="scripted",
                  data="synthetic", limit=6, echo=lines.append)
    metrics = json.loads((tmp_path / "pope" / "metrics.json").read_text())["metrics"]
    assert metrics["n_empty"] == 2 and metrics["n_degenerate"] == 1
    assert results["pope"]["metrics"]["n_empty"] == 2
    assert lines[0].endswith("(2 empty, 1 degenerate)"), lines


def test_answers_without_trouble_count_zero_and_add_nothing_to_the_row(tmp_path):
    lines = []
    run(Yes(), ["pope"], tmp_path, model_id="yes", data="synthetic", limit=6, echo=lines.append)
    metrics = json.loads((tmp_path / "pope" / "metrics.json").read_text())["metrics"]
    assert metrics["n_empty"] == 0 and metrics["n_degenerate"] == 0
    assert "empty" not in lines[0] and "degenerate" not in lines[0]


def test_the_chance_level_is_recorded_and_printed_beside_the_score(tmp_path):
    lines = []
    run(Yes(), ["pope"], tmp_path, model_id="yes", data="synthetic", limit=6, echo=lines.append)
    entry = json.loads((tmp_path / "pope" / "metrics.json").read_text())
    stored = json.loads((tmp_path / "results.json").read_text())["pope"]["metrics"]["chance"]
    chance = entry["metrics"]["chance"]
    assert chance == stored and chance["answerer"] == 'always "Yes"'
    # The always-"yes" model scores exactly its own chance level.
    assert chance["value"] == pytest.approx(entry["metrics"]["f1"])
    assert re.search(rf"{entry['metrics']['f1']:.2f} \[[^]]+\]\s+chance\s+{chance['value']:.2f}\s+n=6", lines[0]), lines


def test_every_row_of_the_locally_scored_suite_has_a_number_and_its_chance(tmp_path):
    names = SUITES["llava-1.5-local"]
    assert "vqav2_val" in names and "vizwiz_val" in names and not {"llava_bench", "mmvet"} & set(names)
    lines = []
    run(Yes(), list(names), tmp_path, model_id="yes", data="synthetic", limit=6, echo=lines.append)
    assert len(lines) == len(names)
    for name, line in zip(names, lines, strict=True):
        assert re.match(rf"{name}\s+\S+\s+\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]\s+chance\s+\d+\.\d\d\s+n=6", line), line


class SummaryCells(HTMLParser):
    """The text of each cell of the report's summary table, row by row."""

    def __init__(self):
        super().__init__()
        self.rows, self.inside, self.cell = [], False, None

    def handle_starttag(self, tag, attrs):
        self.inside |= tag == "table" and dict(attrs).get("id") == "summary"
        if self.inside and tag == "tr":
            self.rows.append([])
        if self.inside and tag == "td":
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None
        self.inside &= tag != "table"


def test_the_report_summary_shows_the_chance_level_and_the_counts(tmp_path):
    run(Scripted(["", "Yes", "No", RUNAWAY_O, " ", "Yes"]), ["pope"], tmp_path, model_id="scripted",
        data="synthetic", limit=6, echo=lambda *_: None)
    page = SummaryCells()
    page.feed(write_report(tmp_path).read_text(encoding="utf-8"))
    [pope] = [row for row in page.rows if row and row[0] == "pope"]
    chance = json.loads((tmp_path / "pope" / "metrics.json").read_text())["metrics"]["chance"]["value"]
    assert pope[-2:] == [f"{chance:.2f}", "2 / 1"], pope


# ---- the command line ------------------------------------------------------------------------------------
class Toy:
    """A registered backend that answers "Yes" (and once nothing), in chunks of four."""

    chunk_size, source = 4, "toy:main"

    def __init__(self):
        self.answered = 0

    def generate(self, requests):
        self.answered += len(requests)
        return ["" if self.answered == len(requests) else "Yes"] + ["Yes"] * (len(requests) - 1)

    def fingerprint(self) -> str:
        return "toy"

    def record(self) -> dict:
        return {"backend": "toy"}

    def prompt(self, request) -> str:
        return request.messages[-1].text


@pytest.fixture
def toy(monkeypatch):
    opened = []
    monkeypatch.setitem(BACKENDS, "toy", BackendEntry(open=lambda model, options: opened.append(Toy()) or opened[-1]))
    return opened


def test_run_writes_the_report_and_the_leaderboard_with_the_paper_rows(toy, tmp_path):
    out = tmp_path / "runs" / "demo"
    report, board = out / "report.html", tmp_path / "boards" / "leaderboard.csv"
    result = CliRunner().invoke(main, ["run", "--model", "toy:main", "--suite", "llava-1.5-local", "--limit", "3",
                                       "--out", str(out), "--report", str(report), "--leaderboard", str(board),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"report: {report}" in lines and f"leaderboard: {board} (this run and the paper's rows)" in lines
    assert "<html" in report.read_text(encoding="utf-8").lower()
    rows = list(csv.DictReader(board.open(encoding="utf-8")))
    assert rows[0]["Method"] == "toy:main" and rows[0]["POPE"] != ""
    assert {"LLaVA-1.5-7B", "LLaVA-1.5-13B"} <= {r["Method"] for r in rows}
    # The footnotes: what the counts mean (the first answer was empty), and what the suite leaves out.
    assert any(line.startswith("note: empty = ") for line in lines)
    assert any(line.startswith("note: not in this suite: llava_bench") and "judge" in line for line in lines)


def test_without_the_options_the_run_writes_neither(toy, tmp_path):
    result = CliRunner().invoke(main, ["run", "--model", "toy:main", "--tasks", "pope", "--limit", "2",
                                       "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "report:" not in result.output and "leaderboard:" not in result.output
    assert not (tmp_path / "run" / "report.html").exists()


@pytest.mark.parametrize("option", ["--report", "--leaderboard"])
def test_an_unwritable_output_file_is_refused_before_the_model_loads(toy, tmp_path, option):
    (tmp_path / "file").write_text("x")
    for path, fragment in ((tmp_path, "is a folder"), (tmp_path / "file" / "out.html", "is a file")):
        result = CliRunner().invoke(main, ["run", "--model", "toy:main", "--tasks", "pope", "--limit", "2",
                                           "--out", str(tmp_path / "run"), option, str(path)])
        one_line_error(result, option, fragment)
    assert toy == [] and not (tmp_path / "run").exists()


def test_the_readmes_main_command_is_one_line_that_scores_every_row_and_writes_report_and_leaderboard():
    block = README.read_text(encoding="utf-8").split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.count("\n") == 1, block  # one line: sets up and runs
    args = shlex.split(block.split("&& llava-eval ", 1)[1])
    context = main.commands["run"].make_context("run", args[1:])
    assert args[0] == "run" and context.params["report"] and context.params["leaderboard"]
    tasks = SUITES[context.params["suite"]]
    assert all(get_task(n).scored_locally and not get_task(n).needs_judge for n in tasks), tasks
