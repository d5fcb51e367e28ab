"""The GPT judge against a real HTTP server on 127.0.0.1 speaking the chat-completions API, scripted per
request (tests/llava_eval/judge_server.py): good verdicts, 429 with Retry-After, 500, answers slower than the
timeout, malformed verdicts."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from llava_eval.cli import main
from llava_eval.runner import run
from tasks.mmvet import RETRY_SUFFIX
from tests.llava_eval.judge_server import Script, serve

KEY = "sk-test-0123456789abcdefSECRET"
TASKS = ["llava_bench", "mmvet"]


@pytest.fixture
def server():
    with serve() as state:
        yield state


class Echo:
    def generate(self, requests):
        return [f"An answer to {r.doc_id}." for r in requests]


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    out = tmp_path / "run"
    run(Echo(), TASKS, out, model_id="echo", limit=6, batch_size=4, echo=lambda *_: None, model_fp="e",
        progress=False)
    return out


def judge(run_dir, url, *extra):
    args = ["judge", str(run_dir), "--provider", "compatible", "--base-url", url, "--api-key-env", "JUDGE_TEST_KEY",
            "--timeout", "0.5", "--retries", "4", "--concurrency", "4", *extra]
    return CliRunner().invoke(main, args)


def metrics(run_dir, task):
    return json.loads((run_dir / task / "metrics.json").read_text())["metrics"]


def scores(run_dir):
    return {t: {k: v for k, v in metrics(run_dir, t).items()
                if k not in ("fresh_calls", "cached", "prompt_tokens", "completion_tokens", "cost_usd")}
            for t in TASKS}


def test_clean_run_scores_and_a_rerun_costs_nothing(server, run_dir):
    result = judge(run_dir, server["url"])
    assert result.exit_code == 0, result.output
    bench, mmvet = metrics(run_dir, "llava_bench"), metrics(run_dir, "mmvet")
    assert bench["status"] == mmvet["status"] == "complete"
    assert bench["n_verdicts"] == mmvet["n_verdicts"] == 18 and bench["n_missing"] == 0
    assert bench["judge_model"] == "gpt-4-0314" and mmvet["judge_model"] == "gpt-4-0613"
    assert bench["fresh_calls"] == 36 - 18 and bench["prompt_tokens"] == 1800  # 18 requests x 100 tokens
    assert len(bench["runs_relative"]) == 3 and "relative_score" in bench
    assert mmvet["n_runs"] == 3 and "total" in mmvet and "std" in mmvet
    n_requests = len(server["script"].requests)
    assert n_requests == 1 + 18 + 18  # probe + 6 docs x 3 runs per task
    assert all(r["auth"] == f"Bearer {KEY}" for r in server["script"].requests)
    first = scores(run_dir)
    again = judge(run_dir, server["url"])
    assert again.exit_code == 0
    assert len(server["script"].requests) == n_requests  # nothing to ask: not even the probe
    assert scores(run_dir) == first and metrics(run_dir, "mmvet")["cached"] == 0  # nothing was even missing


def test_a_rerun_with_every_verdict_at_hand_works_offline_without_a_key(server, run_dir, monkeypatch):
    """Stored verdicts (judge.jsonl) or cached ones (the SQLite cache) need no key, no probe, no request."""
    assert judge(run_dir, server["url"], "--runs", "2").exit_code == 0
    first, n_requests = scores(run_dir), len(server["script"].requests)
    monkeypatch.delenv("JUDGE_TEST_KEY")
    again = judge(run_dir, server["url"], "--runs", "2")
    assert again.exit_code == 0, again.output
    assert len(server["script"].requests) == n_requests and scores(run_dir) == first
    for task in TASKS:
        (run_dir / task / "judge.jsonl").unlink()
    cached = judge(run_dir, server["url"], "--runs", "2")
    assert cached.exit_code == 0, cached.output
    assert len(server["script"].requests) == n_requests and scores(run_dir) == first
    assert metrics(run_dir, "mmvet")["cached"] == 12 and metrics(run_dir, "mmvet")["fresh_calls"] == 0
    # one more run per answer must be asked: only now is the key needed
    more = judge(run_dir, server["url"], "--runs", "3")
    assert more.exit_code == 2 and "environment variable JUDGE_TEST_KEY" in more.output
    assert len(server["script"].requests) == n_requests


def test_the_probe_is_sent_once_on_the_first_request_to_send(server, run_dir):
    assert judge(run_dir, server["url"], "--runs", "1").exit_code == 0
    n_requests = len(server["script"].requests)
    assert judge(run_dir, server["url"], "--runs", "2").exit_code == 0  # one more run: 12 verdicts to ask
    sent = [r["body"]["messages"][-1]["content"] for r in server["script"].requests[n_requests:]]
    assert sent[0] == "ping" and sent.count("ping") == 1 and len(sent) == 1 + 12


def test_verdicts_are_cached_across_judge_files(server, run_dir):
    assert judge(run_dir, server["url"]).exit_code == 0
    for task in TASKS:
        (run_dir / task / "judge.jsonl").unlink()
    n = len(server["script"].requests)
    assert judge(run_dir, server["url"]).exit_code == 0
    assert len(server["script"].requests) == n and metrics(run_dir, "mmvet")["cached"] == 18
    assert judge(run_dir, server["url"], "--no-cache").exit_code == 0
    assert len(server["script"].requests) > n + 2  # --no-cache asks again


def test_flaky_server_gives_the_clean_scores(server, run_dir, tmp_path):
    assert judge(run_dir, server["url"]).exit_code == 0
    clean = scores(run_dir)
    flaky = tmp_path / "flaky"
    import shutil

    shutil.copytree(run_dir, flaky, ignore=shutil.ignore_patterns("judge*"))
    server["script"] = Script(["429", "500", "slow", "bad", "ok"])
    result = judge(flaky, server["url"])
    assert result.exit_code == 0, result.output
    assert scores(flaky) == clean
    mm = [json.loads(x) for x in (flaky / "mmvet" / "judge.jsonl").read_text().splitlines()]
    # the three runs of a grade send the same request, so they share the script; the one that met the
    # malformed reply was re-asked
    assert all(v["status"] == "ok" for v in mm) and any(v["attempts"] == 2 for v in mm)
    temps = sorted({r["body"]["temperature"] for r in server["script"].requests if r["body"]["max_tokens"] == 3})
    assert temps == [0.0]  # the original re-asks first at 0.0 (with the suffix) and raises the temperature after
    assert any(r["body"]["messages"][-1]["content"].endswith(RETRY_SUFFIX) for r in server["script"].requests)


def test_permanent_failures_are_missing_never_zero(server, run_dir):
    server["script"] = Script(["500"])
    result = judge(run_dir, server["url"], "--retries", "1")
    assert result.exit_code == 3 and "no score" in result.output
    m = metrics(run_dir, "mmvet")
    assert m["status"] == "incomplete" and m["n_missing"] == 18 and "total" not in m
    rows = [json.loads(x) for x in (run_dir / "mmvet" / "judge.jsonl").read_text().splitlines()]
    assert all(r["status"] == "missing" and "parsed" not in r and "500" in r["reason"] for r in rows)
    # the server recovers: a rerun fills exactly the missing verdicts
    server["script"] = Script(["ok"])
    result = judge(run_dir, server["url"])
    assert result.exit_code == 0, result.output
    assert len(server["script"].requests) == 1 + 36 and metrics(run_dir, "mmvet")["status"] == "complete"


def test_allow_missing_scores_the_complete_docs(server, run_dir):
    unlucky = {}

    class Partial(Script):
        def action(self, body):
            content = body["messages"][-1]["content"]
            if content != "ping" and "An answer to" in content and content.count("v1_0") == 0 and \
                    unlucky.setdefault("doc", content.split("An answer to ")[1][:12]) in content:
                return "500"
            return "ok"

    server["script"] = Partial()
    result = judge(run_dir, server["url"], "--retries", "0", "--tasks", "mmvet", "--allow-missing", "0.2")
    assert result.exit_code == 0, result.output
    m = metrics(run_dir, "mmvet")
    assert m["status"] == "scored_with_missing" and m["n_missing"] == 3 and m["n_scored_docs"] == 5


def test_key_never_written(server, run_dir):
    assert judge(run_dir, server["url"]).exit_code == 0
    server["script"] = Script(["ok"], default="401")
    bad = judge(run_dir, server["url"], "--no-cache")  # a rejected key at the probe (sent: there is work to do)
    assert bad.exit_code == 2
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in bad.output


@pytest.mark.parametrize(("action", "message"), [("401", "rejected the key in JUDGE_TEST_KEY (401)"),
                                                 ("404", "not found (404)")])
def test_probe_stops_before_any_work(server, run_dir, action, message):
    server["script"] = Script(["ok"], default=action)
    result = judge(run_dir, server["url"])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert len(server["script"].requests) == 1
    assert not (run_dir / "mmvet" / "judge.jsonl").exists()


def test_unreachable_endpoint_is_one_clear_error(run_dir):
    result = judge(run_dir, "http://127.0.0.1:9/v1")
    assert result.exit_code == 2 and "unusable" in result.output and "Traceback" not in result.output


def test_missing_key_is_named(server, run_dir, monkeypatch):
    monkeypatch.delenv("JUDGE_TEST_KEY")
    result = judge(run_dir, server["url"])
    assert result.exit_code == 2 and "environment variable JUDGE_TEST_KEY" in result.output


def test_tasks_without_a_judge_never_ask_for_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = tmp_path / "judge.yaml"
    config.write_text("provider: openai\napi_key_env: OPENAI_API_KEY\n")
    result = CliRunner().invoke(main, ["run", "--tasks", "pope", "--limit", "4", "--out", str(tmp_path / "r"),
                                       "--judge-config", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output


def test_config_file_with_a_key_is_refused(tmp_path, run_dir):
    config = tmp_path / "judge.yaml"
    config.write_text("api_key: sk-123\n")
    result = CliRunner().invoke(main, ["judge", str(run_dir), "--judge-config", str(config)])
    assert result.exit_code == 2 and "holds no key" in result.output


@pytest.mark.parametrize("yaml_text, fragment", [
    ('prices: {gpt-4: {input: "cheap", output: 1}}', "price of 'gpt-4'"),
    ("prices: {gpt-4: {input: 1, output: -2}}", "price of 'gpt-4'"),
    ("prices: {gpt-4: {input: false, output: 1}}", "price of 'gpt-4'"),
    ("timeout: .nan", "timeout"),
    (f"api_key_env: {KEY}", "must name an environment variable"),
    ("api_key_env: [OPENAI_API_KEY]", "must name an environment variable"),
    (f"provider: compatible\nbase_url: https://me:{KEY}@127.0.0.1/v1", "without credentials"),
])
def test_judge_config_is_checked_when_loaded(yaml_text, fragment, tmp_path):
    """Refused before any request is made (and paid for), without repeating a secret."""
    from llava_eval.judge.config import JudgeConfigError, load_judge_config

    config = tmp_path / "judge.yaml"
    config.write_text(yaml_text + "\n")
    with pytest.raises(JudgeConfigError, match=fragment) as caught:
        load_judge_config(config)
    assert KEY not in str(caught.value)


def test_cost_is_recorded_from_config_prices(server, run_dir, tmp_path):
    config = tmp_path / "judge.yaml"
    config.write_text(f"provider: compatible\nbase_url: {server['url']}\napi_key_env: JUDGE_TEST_KEY\nruns: 1\n"
                      "prices:\n  gpt-4-0613: {input: 30.0, output: 60.0}\n")
    result = CliRunner().invoke(main, ["judge", str(run_dir), "--judge-config", str(config), "--tasks", "mmvet"])
    assert result.exit_code == 0, result.output
    m = metrics(run_dir, "mmvet")
    assert m["runs"] == 1 and m["cost_usd"] == pytest.approx(6 * (100 * 30 + 10 * 60) / 1e6)
    assert "$0.0216" in result.output


def test_llava_bench_metrics_golden_from_verdict_pairs():
    """Relative score per category and overall, per run, then the mean of the runs (protocol 3.10)."""
    from llava_eval.judge.config import JudgeConfig
    from llava_eval.judge.run import _metrics
    from tasks.registry import get_task

    task = get_task("llava_bench")
    docs = [{"question_id": i, "category": c} for i, c in enumerate(["conv", "conv", "detail", "complex"])]
    ids = [0, 1, 2, 3]
    pairs = {0: [(8, 6), (8, 8)], 1: [(10, 5), (10, 6)], 2: [(5, 5), (4, 5)], 3: [(8, 4), (8, 2)]}
    stored = {(d, r): {"status": "ok", "model": "m", "parsed": list(p[r])} for d, p in pairs.items() for r in (0, 1)}
    m = _metrics("llava_bench", task, docs, ids, {i: "x" for i in ids}, stored, JudgeConfig(runs=2), "m", 0.0)
    # run 0: conv 11/18 -> 61.1, detail 100.0, complex 50.0, all (6+5+5+4)/(8+10+5+8) = 20/31 -> 64.5
    # run 1: conv 14/18 -> 77.8, detail 5/4 -> 125.0, complex 25.0, all 21/30 -> 70.0
    assert m["runs_relative"] == [64.5, 70.0]
    assert m["relative_score"] == round((64.5 + 70.0) / 2, 1)
    assert m["categories"] == {"complex": 37.5, "conv": round((61.1 + 77.8) / 2, 1), "detail": 112.5}
    assert m["status"] == "complete" and m["n_verdicts"] == 8


def test_mmvet_metrics_golden_from_grades():
    from llava_eval.judge.config import JudgeConfig
    from llava_eval.judge.run import _metrics
    from tasks.registry import get_task

    task = get_task("mmvet")
    docs = [{"question_id": "v1_0", "capability": "rec"}, {"question_id": "v1_1", "capability": "rec,ocr"}]
    grades = {"v1_0": [1.0, 0.5, 1.0], "v1_1": [0.0, 0.5, 0.5]}
    stored = {(d, r): {"status": "ok", "model": "m", "parsed": g[r]} for d, g in grades.items() for r in range(3)}
    m = _metrics("mmvet", task, docs, ["v1_0", "v1_1"], {"v1_0": "a", "v1_1": "b"}, stored, JudgeConfig(), "m", 0.0)
    # run totals: 50, 50, 75 -> mean 58.33, population std 11.79; ocr only on v1_1: 0, 50, 50 -> 33.33
    assert m["runs"] == [50.0, 50.0, 75.0]
    assert m["total"] == pytest.approx(175 / 3) and m["std"] == pytest.approx(11.785, abs=1e-3)
    assert m["capabilities"]["ocr"] == pytest.approx(100 / 3) and m["capabilities"]["rec"] == pytest.approx(175 / 3)


# ---- run-level safety: reruns keep the judge's numbers, the lock, replies that are no chat completion ------
@pytest.fixture
def no_backoff(monkeypatch):
    """Retries without the exponential back-off's seconds of sleep."""
    from llava_eval.judge import client

    original = client.JudgeClient.__init__
    monkeypatch.setattr(client.JudgeClient, "__init__", lambda self, config, sleep=None: original(
        self, config, sleep=lambda _: None))


def rerun(run_dir, limit=6):
    lines = []
    run(Echo(), TASKS, run_dir, model_id="echo", limit=limit, batch_size=4, echo=lines.append, model_fp="e",
        progress=False)
    return lines


def entries(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def test_a_rerun_that_adds_no_answer_keeps_the_judged_scores(server, run_dir):
    assert judge(run_dir, server["url"]).exit_code == 0
    judged = entries(run_dir)
    assert "relative_score" in judged["llava_bench"]["metrics"] and "total" in judged["mmvet"]["metrics"]
    lines = rerun(run_dir)
    assert entries(run_dir) == judged
    for task in TASKS:
        assert json.loads((run_dir / task / "metrics.json").read_text()) == judged[task]
    assert any("(judged)" in line and "llava_bench" in line for line in lines), lines


def test_new_answers_keep_the_judged_scores_aside_until_judged_again(server, run_dir):
    assert judge(run_dir, server["url"]).exit_code == 0
    judged = entries(run_dir)
    lines = rerun(run_dir, limit=8)  # two more docs per task: the verdicts no longer cover every answer
    now = entries(run_dir)
    for task in TASKS:
        assert now[task]["judged_stale"] is True and now[task]["stale_judged_metrics"] == judged[task]["metrics"]
        assert now[task]["metrics"]["status"] == "needs_judge" and now[task]["metrics"]["n_docs"] == 8
        assert json.loads((run_dir / task / "metrics.json").read_text()) == now[task]
    assert sum("needs re-judging" in line for line in lines) == 2, lines
    rerun(run_dir, limit=8)  # a further rerun keeps them aside too
    assert entries(run_dir)["mmvet"]["stale_judged_metrics"] == judged["mmvet"]["metrics"]
    assert judge(run_dir, server["url"]).exit_code == 0
    again = entries(run_dir)
    for task in TASKS:
        assert again[task]["judged"] and "judged_stale" not in again[task] and "stale_judged_metrics" not in again[task]
        assert again[task]["metrics"]["n_docs"] == 8 and again[task]["metrics"]["status"] == "complete"


def test_judge_refuses_a_directory_a_run_holds(server, run_dir):
    from llava_eval.rundir import RunLock

    with RunLock(run_dir):
        result = judge(run_dir, server["url"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: run directory {run_dir} is in use by pid {os.getpid()}; wait for it to finish or choose another --out"]
    assert server["script"].requests == [] and not (run_dir / "mmvet" / "judge.jsonl").exists()


def test_a_run_is_refused_while_judge_works(server, run_dir):
    """While the judge's requests are in flight, a `run` into the same directory is refused by the lock."""
    from llava_eval.runstate import RunStateError

    refused = []

    class RunDuringJudging(Script):
        def action(self, body):
            if body["messages"][-1]["content"] != "ping" and not refused:
                try:
                    rerun(run_dir, limit=8)
                    refused.append("not refused")
                except RunStateError as exc:
                    refused.append(str(exc))
            return "ok"

    server["script"] = RunDuringJudging()
    result = judge(run_dir, server["url"], "--concurrency", "1")
    assert result.exit_code == 0, result.output
    assert refused and "is in use by pid" in refused[0], refused
    assert all(e["metrics"]["n_docs"] == 6 for e in entries(run_dir).values())


def test_replies_that_are_no_chat_completion_are_retried(server, run_dir, tmp_path, no_backoff):
    import shutil

    odd = tmp_path / "odd"
    shutil.copytree(run_dir, odd)
    assert judge(run_dir, server["url"]).exit_code == 0
    server["script"] = Script(["notjson", "choices-str", "list", "content-int", "empty", "bad-usage"])
    result = judge(odd, server["url"], "--retries", "6")
    assert result.exit_code == 0, result.output
    assert scores(odd) == scores(run_dir)
    verdicts = [json.loads(x) for x in (odd / "mmvet" / "judge.jsonl").read_text().splitlines()]
    assert all(v["status"] == "ok" for v in verdicts) and max(v["attempts"] for v in verdicts) == 1


@pytest.mark.parametrize("reply", ["notjson", "choices-str", "list", "content-int"])
def test_a_judge_that_never_sends_a_completion_leaves_verdicts_missing(server, run_dir, no_backoff, reply):
    class MMVetBroken(Script):
        def action(self, body):
            return reply if body["max_tokens"] == 3 and body["messages"][-1]["content"] != "ping" else "ok"

    server["script"] = MMVetBroken()
    result = judge(run_dir, server["url"], "--retries", "1")
    assert result.exit_code == 3 and "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit)
    assert metrics(run_dir, "llava_bench")["status"] == "complete"  # the verdicts obtained stay
    bench = [json.loads(x) for x in (run_dir / "llava_bench" / "judge.jsonl").read_text().splitlines()]
    assert len(bench) == 18 and all(v["status"] == "ok" for v in bench)
    mm = [json.loads(x) for x in (run_dir / "mmvet" / "judge.jsonl").read_text().splitlines()]
    assert len(mm) == 18 and all(v["status"] == "missing" and "malformed" in v["reason"] for v in mm)
    assert metrics(run_dir, "mmvet")["status"] == "incomplete" and "total" not in metrics(run_dir, "mmvet")


# ---- rescoring from the verdict file alone -------------------------------------------------------------------
def forbid_judge_client(monkeypatch):
    """From here on, making a judge client fails, and there is no key."""
    from llava_eval.judge import run as judge_run_module

    def refuse(*args, **kwargs):
        raise AssertionError("rescoring made a judge client")

    monkeypatch.setattr(judge_run_module, "JudgeClient", refuse)
    monkeypatch.delenv("JUDGE_TEST_KEY")


def test_rescore_recomputes_the_judged_metrics_without_a_request(server, run_dir, monkeypatch):
    from llava_eval.judge.run import rescore_judged

    assert judge(run_dir, server["url"]).exit_code == 0
    judged, n_requests = entries(run_dir), len(server["script"].requests)
    for task in TASKS:  # the numbers are damaged in the task's file, and gone from results.json
        entry = json.loads((run_dir / task / "metrics.json").read_text())
        entry["metrics"].update({"n_verdicts": 0, "status": "incomplete", "runs_relative": [1.0], "total": -5.0})
        (run_dir / task / "metrics.json").write_text(json.dumps(entry))
    (run_dir / "results.json").write_text(json.dumps({"mmvet": {"metrics": {}}}))
    forbid_judge_client(monkeypatch)
    for task in TASKS:
        assert rescore_judged(run_dir, task) == judged[task]["metrics"]
    assert entries(run_dir) == judged
    for task in TASKS:
        assert json.loads((run_dir / task / "metrics.json").read_text()) == judged[task]
    assert len(server["script"].requests) == n_requests


def test_rescore_keeps_the_missing_share_judging_accepted(server, run_dir, monkeypatch):
    from llava_eval.judge.run import rescore_judged

    class OneDocFails(Script):
        def action(self, body):
            return "500" if "An answer to v1_1." in body["messages"][-1]["content"] else "ok"

    server["script"] = OneDocFails()
    result = judge(run_dir, server["url"], "--retries", "0", "--tasks", "mmvet", "--allow-missing", "0.2")
    assert result.exit_code == 0, result.output
    judged = metrics(run_dir, "mmvet")
    assert judged["status"] == "scored_with_missing" and judged["n_missing"] == 3
    forbid_judge_client(monkeypatch)
    assert rescore_judged(run_dir, "mmvet") == judged


def test_rescore_refuses_a_task_never_judged(run_dir, monkeypatch):
    from llava_eval.judge.run import rescore_judged
    from tasks.base import TaskError

    forbid_judge_client(monkeypatch)
    with pytest.raises(TaskError, match="no judged metrics to rescore.*llava-eval judge"):
        rescore_judged(run_dir, "mmvet")
    with pytest.raises(TaskError, match="pope is not judged"):
        rescore_judged(run_dir, "pope")
