"""Judge continuity: `llava-eval judge calibrate` re-judges released answers with a substitute judge (the
scripted chat-completions server of judge_server.py) and compares with the released verdicts, written here in
the released formats (LLaVA's review .jsonl, MM-Vet's grade .json); a judge config naming the calibration marks
the substitute's numbers in the metrics, the leaderboard and the report."""

from __future__ import annotations

import json
import statistics
from html.parser import HTMLParser

import pandas as pd
import pytest
from click.testing import CliRunner

from llava_eval.cli import main
from llava_eval.runner import run
from tests.llava_eval.judge_server import serve, verdict_for

KEY_ENV = "CALIBRATE_TEST_KEY"
# MM-Vet: question id, question, ground truth, capabilities, released answer, released grade (content, score),
# the substitute judge's grade of that answer. v1_4's released grade is the evaluator's forced 0.0 after five
# unreadable replies (left out); v1_5 has no released answer (left out).
MMVET = [
    (0, "How many cats are there?", "2<OR>two", ["rec"], "Two cats.", ("1.0", 1.0), "1.0"),
    (1, "What does the sign say?", "stop", ["rec", "ocr"], "It says stop.", ("0.5", 0.5), "1.0"),
    (2, "Read the number.", "42", ["ocr"], "The number is 41.", ("0.0", 0.0), "0.3"),
    (3, "How many shapes plus 3?", "5", ["rec", "math"], "Five.", ("1.0", 1.0), "0.5"),
    (4, "Why is this funny?", "irony", ["know", "gen"], "Because of irony.", ("Sorry", 0.0), "0.8"),
    (5, "Which colour is it?", "red", ["rec"], None, None, "1.0"),
]
# LLaVA-Bench: question id, category, released answer, released (reference, model) score per review run, the
# substitute's review. Question 3's second review was unreadable ([-1, -1]: left out).
BENCH = [
    (0, "conv", "A cat on a mat.", [(8, 6), (8, 7)], "8 8"),
    (1, "detail", "A red car parked by a tree.", [(8, 8), (9, 9)], "8 8"),
    (2, "complex", "It is raining, so they carry umbrellas.", [(10, 5), (10, 6)], "10 10"),
    (3, "conv", "Two dogs.", [(7, 7), (-1, -1)], "5 5"),
]
SUBSTITUTE = {answer: grade for *_, answer, _, grade in MMVET if answer} | {a: f"{r}\nfine." for _, _, a, _, r in BENCH}


def substitute_verdict(body: dict) -> str:
    """The substitute judge's reply, read off the released answer it is asked about (any other answer: the
    scripted server's usual verdict)."""
    content = body["messages"][-1]["content"]
    for answer, reply in SUBSTITUTE.items():
        if f"| {answer} | " in content or f"[Assistant 2]\n{answer}\n" in content:
            return reply
    return verdict_for(body)


def write_lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def released(tmp_path):
    """The original eval layout (llava:DIR) and the released answers and verdicts, as eval.zip lays them out."""
    root = tmp_path / "eval"
    mmvet, bench = root / "mm-vet", root / "llava-bench-in-the-wild"
    write_lines(mmvet / "llava-mm-vet.jsonl", [{"question_id": i, "text": q, "image": f"v1_{i}.png"}
                                              for i, q, *_ in MMVET])
    (mmvet / "mm-vet.json").write_text(json.dumps({f"v1_{i}": {"question": q, "answer": a, "capability": caps,
                                                               "imagename": f"v1_{i}.png"}
                                                   for i, q, a, caps, *_ in MMVET}))
    (mmvet / "results").mkdir()
    (mmvet / "results" / "llava-v1.5-13b.json").write_text(json.dumps(
        {f"v1_{i}": answer for i, _, _, _, answer, *_ in MMVET if answer}, indent=2))
    (mmvet / "results" / "llava-v1.5-13b_gpt-4-grade-1runs.json").write_text(json.dumps(
        {f"v1_{i}": {"model": ["gpt-4-0613"], "content": [g[0]], "score": [g[1]]}
         for i, _, _, _, _, g, _ in MMVET if g}, indent=4))
    write_lines(bench / "questions.jsonl", [{"question_id": i, "image": f"{i}.jpg", "text": f"Question {i}?",
                                             "category": c} for i, c, *_ in BENCH])
    write_lines(bench / "context.jsonl", [{"id": f"{i}", "image": f"{i}.jpg", "caption": f"Picture {i}."}
                                          for i, *_ in BENCH])
    write_lines(bench / "answers_gpt4.jsonl", [{"question_id": i, "text": f"Reference answer {i}."}
                                               for i, *_ in BENCH])
    write_lines(bench / "answers" / "llava-v1.5-13b.jsonl", [
        {"question_id": i, "prompt": f"Question {i}?", "text": a, "answer_id": f"a{i}", "model_id": "llava-v1.5-13b",
         "metadata": {}} for i, _, a, _, _ in BENCH])
    for run_index in range(2):
        write_lines(bench / "reviews" / f"llava-v1.5-13b-eval{run_index + 1}.jsonl", [
            {"id": n + 1, "question_id": i, "answer1_id": i, "answer2_id": f"a{i}", "category": f"llava_bench_{c}",
             "content": "{} {}\nexplanation".format(*pairs[run_index]), "tuple": list(map(float, pairs[run_index]))}
            for n, (i, c, _, pairs, _) in enumerate(BENCH)])
    return root


def calibrate(root, server, task, out, *extra):
    files = {"mmvet": ["--answers", root / "mm-vet/results/llava-v1.5-13b.json",
                       "--reference", root / "mm-vet/results/llava-v1.5-13b_gpt-4-grade-1runs.json"],
             "llava_bench": ["--answers", root / "llava-bench-in-the-wild/answers/llava-v1.5-13b.jsonl",
                             "--reference", root / "llava-bench-in-the-wild/reviews/llava-v1.5-13b-eval1.jsonl",
                             "--reference", root / "llava-bench-in-the-wild/reviews/llava-v1.5-13b-eval2.jsonl"]}
    args = ["judge", "calibrate", "--task", task, "--data", f"llava:{root}", *files[task], "--out", out,
            "--provider", "compatible", "--base-url", server["url"], "--api-key-env", KEY_ENV, *extra]
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-calibrate-0123456789")
    with serve(substitute_verdict) as state:
        yield state


def test_mmvet_calibration_against_released_grades(released, server, tmp_path, monkeypatch):
    out = tmp_path / "cal"
    result = calibrate(released, server, "mmvet", out, "--judge-model", "sub-judge", "--runs", "2")
    assert result.exit_code == 0, result.output
    c = json.loads((out / "mmvet" / "calibration.json").read_text())
    assert (c["task"], c["judge_model"], c["protocol_model"], c["runs"]) == ("mmvet", "sub-judge", "gpt-4-0613", 2)
    assert c["reference"]["model"] == "gpt-4-0613" and c["reference"]["runs"] == 1
    assert c["n_docs"] == 6 and c["n_compared"] == 4
    assert c["left_out"] == {"no_answer": 1, "no_reference": 0, "reference_unreadable": 1, "judge_missing": 0}
    # released grades of v1_0..v1_3: 1.0 0.5 0.0 1.0 -> 62.5; the substitute's: 1.0 1.0 0.3 0.5 -> 70.0
    head = c["headline"]
    assert (head["metric"], head["reference"], head["ours"], head["offset"]) == ("total", 62.5, 70.0, 7.5)
    assert head["ci95"][0] <= 7.5 <= head["ci95"][1] and head["n_boot"] == 1000
    # capabilities: rec (v1_0, v1_1, v1_3) 83.33 both; ocr (v1_1, v1_2) 25 -> 65; math (v1_3) 100 -> 50
    cats = {k: (v["n"], v["offset"]) for k, v in c["categories"].items()}
    assert cats == {"rec": (3, 0.0), "ocr": (2, 40.0), "math": (1, -50.0)}
    per = c["per_answer"]
    assert per["pearson"] == pytest.approx(statistics.correlation([1, .5, 0, 1], [1, 1, .3, .5]), abs=1e-4)
    assert per["exact_agreement"] == 0.25 and per["n_verdict_pairs"] == 4  # runs compared: those both have
    assert "total" in result.output and "+7.50" in result.output and "exact agreement 25.0%" in result.output
    asked = [r["body"] for r in server["script"].requests]
    assert len(asked) == 1 + 4 * 2 and {b["model"] for b in asked} == {"sub-judge"}
    # a rerun asks for nothing, needs no key, and writes the same calibration
    monkeypatch.delenv(KEY_ENV)
    again = calibrate(released, server, "mmvet", out, "--judge-model", "sub-judge", "--runs", "2")
    assert again.exit_code == 0, again.output
    assert len(server["script"].requests) == len(asked)
    assert {k: v for k, v in json.loads((out / "mmvet" / "calibration.json").read_text()).items()
            if k not in ("created", "usage")} == {k: v for k, v in c.items() if k not in ("created", "usage")}


def test_llava_bench_calibration_against_released_reviews(released, server, tmp_path):
    out = tmp_path / "cal"
    result = calibrate(released, server, "llava_bench", out, "--runs", "2")
    assert result.exit_code == 0, result.output
    c = json.loads((out / "llava_bench" / "calibration.json").read_text())
    assert c["judge_model"] == c["protocol_model"] == "gpt-4-0314" and c["reference"]["runs"] == 2
    assert c["n_compared"] == 3 and c["left_out"]["reference_unreadable"] == 1
    # released, per review run: (6+8+5)/(8+8+10) -> 73.1, (7+9+6)/(8+9+10) -> 81.5; mean 77.3. Substitute: 100.0
    head = c["headline"]
    assert (head["metric"], head["reference"], head["ours"], head["offset"]) == ("relative_score", 77.3, 100.0, 22.7)
    # conv: 75.0 and 87.5 -> 81.2 (rounded half to even); detail 100 -> 100; complex 50, 60 -> 55
    assert {k: v["offset"] for k, v in c["categories"].items()} == {"complex": 45.0, "conv": 18.8, "detail": 0.0}
    per = c["per_answer"]  # per answer: the model's score (Assistant 2), mean over runs
    assert per["pearson"] == pytest.approx(statistics.correlation([6.5, 8.5, 5.5], [8, 8, 10]), abs=1e-4)
    assert per["exact_agreement"] == pytest.approx(1 / 6, abs=1e-4)


# ---- the substitute's numbers carry their judge, marked and calibrated -------------------------------------
class Echo:
    def generate(self, requests):
        return [f"An answer to {r.doc_id}." for r in requests]


class Cells(HTMLParser):
    """The text of the report's summary cells, per row."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell, self._in = [], None, False

    def handle_starttag(self, tag, attrs):
        self._in = self._in or (tag == "table" and dict(attrs).get("id") == "summary")
        if self._in and tag == "tr":
            self.rows.append([])
        if self._in and tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        self._in = self._in and tag != "table"
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_numbers_of_a_substitute_judge_are_marked_with_their_calibration(released, server, tmp_path):
    from llava_eval.judge.run import rescore_judged
    from llava_eval.report import write_report

    assert calibrate(released, server, "mmvet", tmp_path / "cal", "--judge-model", "sub-judge").exit_code == 0
    config = tmp_path / "conf" / "judge.yaml"
    config.parent.mkdir()
    config.write_text(f"provider: compatible\nbase_url: {server['url']}\napi_key_env: {KEY_ENV}\nruns: 1\n"
                      "calibrations: [../cal/mmvet/calibration.json]\n")  # relative to the config file
    out = tmp_path / "run"
    run(Echo(), ["llava_bench", "mmvet"], out, model_id="echo", limit=4, batch_size=4, echo=lambda *_: None,
        model_fp="e", progress=False)
    judged = CliRunner().invoke(main, ["judge", str(out), "--judge-config", str(config), "--judge-model", "sub-judge"])
    assert judged.exit_code == 0, judged.output
    mm = json.loads((out / "mmvet" / "metrics.json").read_text())["metrics"]
    assert mm["judge_model"] == "sub-judge" and mm["judge_protocol_model"] == "gpt-4-0613"
    assert mm["judge_calibration"]["offset"] == 7.5 and mm["judge_calibration"]["reference_model"] == "gpt-4-0613"
    assert mm["judge_calibration"]["file"].endswith("calibration.json")
    assert "judge_calibration" not in json.loads((out / "llava_bench" / "metrics.json").read_text())["metrics"]
    assert rescore_judged(out, "mmvet") == mm  # rescoring keeps what the judging recorded

    ran = CliRunner().invoke(main, ["leaderboard", str(out), "--out", str(tmp_path / "lb.csv"), "--markdown",
                                    str(tmp_path / "lb.md")])
    assert ran.exit_code == 0, ran.output
    row = pd.read_csv(tmp_path / "lb.csv").iloc[0]
    low, high = mm["judge_calibration"]["ci95"]
    assert row["judges"] == ("LLaVA-W=sub-judge (not the protocol judge gpt-4-0314, no calibration recorded);"
                             f"MM-Vet=sub-judge (not the protocol judge gpt-4-0613, calibration offset +7.50 "
                             f"[95% {low:+.2f}, {high:+.2f}] against gpt-4-0613)")
    assert row["non_protocol_judge"] == "LLaVA-W;MM-Vet"
    markdown = (tmp_path / "lb.md").read_text()
    assert f"{row['MM-Vet']:g}\u2020" in markdown and "\u2020 echo: judged by LLaVA-W=sub-judge" in markdown

    cells = Cells()
    cells.feed(write_report(out).read_text())
    by_task = {r[0]: r for r in cells.rows if r}
    judge = 11  # the summary's judge column (task, metric, value, interval, n, errors, column, 7B, d, 13B, d, judge)
    assert by_task["mmvet"][2].endswith("\u2020") and "calibration offset +7.50" in by_task["mmvet"][judge]
    assert "not the protocol judge gpt-4-0314, no calibration recorded" in by_task["llava_bench"][judge]

    # judged again by the protocol's own judges: named, not marked
    assert CliRunner().invoke(main, ["judge", str(out), "--judge-config", str(config)]).exit_code == 0
    assert CliRunner().invoke(main, ["leaderboard", str(out), "--out", str(tmp_path / "lb.csv")]).exit_code == 0
    row = pd.read_csv(tmp_path / "lb.csv").iloc[0]
    assert row["judges"] == "LLaVA-W=gpt-4-0314;MM-Vet=gpt-4-0613" and pd.isna(row["non_protocol_judge"])
    cells = Cells()
    cells.feed(write_report(out).read_text())
    assert {r[0]: r[11] for r in cells.rows if r}["mmvet"] == "gpt-4-0613"  # the judge column


# ---- bad input: one line, exit status 2 ----------------------------------------------------------------------
@pytest.mark.parametrize(("calibrations", "fragment"), [
    ("[missing.json]", "judge calibration not found"),
    ("[judge.yaml]", "not readable JSON"),
    ("[other.json]", "not a calibration file"),
    ("missing.json", "must be a list"),
])
def test_a_wrong_calibration_in_the_judge_config_is_one_error(tmp_path, calibrations, fragment):
    (tmp_path / "other.json").write_text('{"task": "mmvet"}')
    config = tmp_path / "judge.yaml"
    config.write_text(f"calibrations: {calibrations}\n")
    result = CliRunner().invoke(main, ["judge", str(tmp_path), "--judge-config", str(config)])
    assert result.exit_code == 2 and result.output.startswith("error: ") and fragment in result.output, result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda r: r["bench_review"].write_text('{"question_id": 0, "tuple": [8, 6, 1]}\n'), "eval1.jsonl:1: `tuple`"),
    (lambda r: r["bench_review"].write_text('{"question_id": 0, "tuple": [8, 6]}\n' * 2), "twice in one run"),
    (lambda r: r["grades"].write_text('{"v1_0": {"content": ["2"], "score": [2.0]}}'), "a score should be"),
    (lambda r: r["grades"].write_text('{"v1_0": {"content": ["1.0"], "score": [1.0, 0.5]}}'), "2 scores but 1"),
    (lambda r: r["grades"].write_text("[1, 2]"), "expected a JSON object"),
    (lambda r: r["results"].write_text('{"v1_0": 5}'), "should be text"),
])
def test_released_files_that_are_not_in_the_released_format_are_one_error(released, server, tmp_path, edit,
                                                                           fragment):
    edit({"bench_review": released / "llava-bench-in-the-wild/reviews/llava-v1.5-13b-eval1.jsonl",
          "grades": released / "mm-vet/results/llava-v1.5-13b_gpt-4-grade-1runs.json",
          "results": released / "mm-vet/results/llava-v1.5-13b.json"})
    task = "llava_bench" if "eval1" in fragment or "twice" in fragment else "mmvet"
    result = calibrate(released, server, task, tmp_path / "cal")
    assert result.exit_code == 2 and result.output.startswith("error: ") and fragment in result.output, result.output
    assert server["script"].requests == []  # refused before anything is asked


def test_files_that_do_not_belong_together_are_refused(released, server, tmp_path):
    (released / "mm-vet/results/llava-v1.5-13b.json").write_text('{"v1_99": "an answer"}')
    result = calibrate(released, server, "mmvet", tmp_path / "cal")
    assert result.exit_code == 2 and "no row of the data has both a released answer and released verdicts" in \
        result.output, result.output


def test_a_run_directory_is_not_a_calibration_folder(released, server, tmp_path):
    out = tmp_path / "run"
    run(Echo(), ["mmvet"], out, model_id="echo", limit=2, batch_size=2, echo=lambda *_: None, model_fp="e",
        progress=False)
    result = calibrate(released, server, "mmvet", out)
    assert result.exit_code == 2 and "is a run directory; calibrate into a folder of its own" in result.output
    assert not (out / "mmvet" / "judge.jsonl").exists() and server["script"].requests == []


def test_calibrate_is_a_subcommand_and_judge_keeps_its_run_directory_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    not_judged = CliRunner().invoke(main, ["judge", "calibrate", "--task", "pope", "--data", "synthetic",
                                           "--answers", "a.jsonl", "--reference", "r.jsonl", "--out", "cal"])
    assert not_judged.exit_code == 2 and "pope is not judged" in not_judged.output, not_judged.output
    a_run_named_calibrate = CliRunner().invoke(main, ["judge", "./calibrate", "--provider", "openai"])
    assert a_run_named_calibrate.exit_code == 2, a_run_named_calibrate.output
    assert "error: calibrate has no results.json" in a_run_named_calibrate.output  # judged as a run directory
    judge_help = " ".join(CliRunner().invoke(main, ["judge", "--help"]).output.split())
    assert "`judge calibrate` measures a substitute judge" in judge_help
    assert "judge calibrate [OPTIONS]" in CliRunner().invoke(
        main, ["judge", "calibrate", "--help"]).output


def test_the_judge_presets_load_and_name_a_judge_for_every_judged_task():
    from pathlib import Path

    from llava_eval.judge.config import load_judge_config
    from llava_eval.judge.run import judged_tasks

    presets = sorted((Path(__file__).resolve().parents[2] / "examples" / "judge").glob("*.yaml"))
    assert [p.name for p in presets] == ["openai-gpt-4o.yaml", "vllm-local.yaml"]
    for path in presets:
        config = load_judge_config(path)
        assert set(config.models) == set(judged_tasks()) and config.calibrations == []
        assert config.models["mmvet"] != "gpt-4-0613" and config.runs == 3  # a substitute, judged as the papers did
    vllm = load_judge_config(presets[1])
    assert (vllm.provider, vllm.base_url, vllm.api_key_env) == ("compatible", "http://127.0.0.1:8000/v1",
                                                               "VLLM_API_KEY")
