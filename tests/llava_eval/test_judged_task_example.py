"""A judged benchmark is one task module: the toy task below declares its prompt, schema, synthetic rows and
judge protocol here, in the test, and `llava-eval run` + `llava-eval judge` run and judge it with no change
anywhere else (the judge is the scripted chat-completions server of judge_server.py)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from llava_eval.cli import main
from tasks.base import Task
from tasks.judging import JudgeProtocol
from tasks.registry import TASKS, register_task
from tests.llava_eval.judge_server import serve

KEY_ENV = "TOY_JUDGE_KEY"
ASK = "Question {qid}: is ANSWER about the colour {colour}? Reply with one digit, 1 (yes) or 0 (no).\nANSWER: {answer}"


def toy_messages(doc: dict, answer: str, attempt: int) -> list[dict]:
    text = ASK.format(qid=doc["question_id"], colour=doc["colour"], answer=answer)
    return [{"role": "user", "content": text + ("\nOne digit only." if attempt else "")}]


def toy_parse(text: str) -> int | None:
    return int(text) if text in ("0", "1") else None


def toy_aggregate(docs: list[dict], verdicts: list[list]) -> dict:
    votes = [v for runs in verdicts for v in runs]
    return {"on_topic": 100.0 * sum(votes) / len(votes), "n_runs": len(verdicts[0])}


@pytest.fixture
def toy_task():
    from synthetic import make_scene

    @register_task("toy_judged")
    class ToyJudged(Task):
        version = 3
        title = "Toy judged benchmark"
        doc_id_column = "question_id"
        schema = {"question_id": "id", "question": "str", "colour": "str", "image": "image"}
        max_new_tokens = 4
        metrics = ("on_topic",)
        primary_metric = "on_topic"
        scored_locally = False
        judge = JudgeProtocol(messages=toy_messages, parse=toy_parse, aggregate=toy_aggregate, model="toy-judge-1",
                              max_tokens=2, temperatures=(0.0, 0.7))

        def prompt(self, doc: dict) -> str:
            return doc["question"]

        def gold_text(self, doc: dict) -> str:
            return doc["colour"]

        def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
            scenes = [make_scene(seed * 1000 + i) for i in range(n)]
            return [{"question_id": i, "question": "What colour is the first shape?", "colour": s.shapes[0].color,
                     "image": {"bytes": s.png_bytes(), "path": None}} for i, s in enumerate(scenes)]

    yield ToyJudged
    TASKS.pop("toy_judged", None)


def toy_verdict(body: dict) -> str:
    """Odd questions are on topic; question 3's first attempt gets a reply that is no digit."""
    asked = re.match(r"Question (\d+):", body["messages"][-1]["content"])
    if asked is None:
        return "pong"  # the judge's probe
    qid = int(asked.group(1))
    return "perhaps" if qid == 3 and body["temperature"] == 0.0 else str(qid % 2)


def judge(out, server, *extra):
    return CliRunner().invoke(main, ["judge", str(out), "--provider", "compatible", "--base-url", server["url"],
                                     "--api-key-env", KEY_ENV, *extra])


def test_a_toy_task_declared_in_a_test_is_run_and_judged(toy_task, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-toy-0123456789")
    out = tmp_path / "run"
    ran = CliRunner().invoke(main, ["run", "--model", "tiny", "--tasks", "toy_judged", "--limit", "4", "--out",
                                    str(out), "--no-progress"])
    assert ran.exit_code == 0, ran.output
    assert "not judged (no judge configured): toy_judged" in ran.output
    with serve(toy_verdict) as server:
        judged = judge(out, server, "--runs", "2")
        requests = [r["body"] for r in server["script"].requests]
    assert judged.exit_code == 0, judged.output
    entry = json.loads((out / "toy_judged" / "metrics.json").read_text())
    metrics = entry["metrics"]
    assert entry["judged"] and entry["primary_metric"] == "on_topic"
    assert metrics["on_topic"] == 50.0 and metrics["n_runs"] == 2 and metrics["status"] == "complete"
    assert metrics["judge_model"] == "toy-judge-1" and metrics["n_verdicts"] == 8 and metrics["n_missing"] == 0
    assert "on_topic" in judged.output and "50.0" in judged.output
    assert all(b["model"] == "toy-judge-1" for b in requests)
    asks = [b for b in requests if b["messages"][-1]["content"] != "ping"]
    assert all(b["max_tokens"] == 2 for b in asks) and len(asks) == 4 * 2 + 2  # question 3 asked twice per run
    retried = [b for b in asks if b["temperature"] == 0.7]
    assert len(retried) == 2 and all(b["messages"][0]["content"].endswith("One digit only.") for b in retried)
    verdicts = [json.loads(line) for line in (out / "toy_judged" / "judge.jsonl").read_text().splitlines()]
    assert sorted((v["question_id"], v["parsed"], v["attempts"]) for v in verdicts) == [
        (0, 0, 1), (0, 0, 1), (1, 1, 1), (1, 1, 1), (2, 0, 1), (2, 0, 1), (3, 1, 2), (3, 1, 2)]
    # --judge-model names the judge of every judged task of the call, a declared task included
    with serve(toy_verdict) as server:
        again = judge(out, server, "--runs", "1", "--judge-model", "other-judge")
        models = {r["body"]["model"] for r in server["script"].requests}
    assert again.exit_code == 0, again.output
    assert models == {"other-judge"}
    metrics = json.loads((out / "toy_judged" / "metrics.json").read_text())["metrics"]
    assert metrics["judge_model"] == "other-judge" and metrics["on_topic"] == 50.0 and metrics["n_runs"] == 1
    # rescore recomputes the judged metrics from the stored verdicts: no judge, no key, the same numbers
    monkeypatch.delenv(KEY_ENV)
    results = json.loads((out / "results.json").read_text())
    results["toy_judged"]["metrics"]["on_topic"] = -1.0
    (out / "results.json").write_text(json.dumps(results))
    rescored = CliRunner().invoke(main, ["rescore", str(out)])
    assert rescored.exit_code == 0, rescored.output
    assert json.loads((out / "results.json").read_text())["toy_judged"]["metrics"] == metrics


def test_a_protocol_needs_an_attempt():
    with pytest.raises(ValueError, match="at least one attempt"):
        JudgeProtocol(messages=toy_messages, parse=toy_parse, aggregate=toy_aggregate, model="m", max_tokens=1,
                      temperatures=())
