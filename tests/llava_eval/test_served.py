"""`llava-eval run --model served:NAME` against a scripted OpenAI-compatible server on 127.0.0.1
(served_server.py): the server receives the protocol's exact inputs (prompt bytes through the shipped chat
template or raw, images preprocessed to 336 x 336 and padded with the CLIP mean, temperature 0, the task's
token cap); 429 / 500 / timeouts / dropped connections / malformed replies are retried; answers that never come
are recorded as missing, leave the task unscored unless --allow-missing, and a rerun asks only for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from llava_eval.backends import inflight
from llava_eval.backends.exact_inputs import PAD_COLOR, prepare_image
from llava_eval.cli import main
from llava_eval.data import load_docs, resolve_image
from llava_model.conversation import VICUNA_V1, render
from llava_model.preprocess import load_image
from llava_types import USER, Message
from tasks.registry import get_task
from tests.llava_eval.served_server import answer_for, serve

MODEL = "served:llava-1.5-7b"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(inflight, "BACKOFF", 0.01)


def run(server, out: Path, *extra, tasks="pope", limit="6", mode="chat"):
    base = server.url if mode == "chat" else server.root
    return CliRunner().invoke(main, ["run", "--model", MODEL, "--model-base-url", base, "--served-mode", mode,
                                     "--tasks", tasks, "--limit", limit, "--out", str(out), "--no-progress",
                                     "--max-in-flight", "4", *extra])


def expected_inputs(tasks: str, limit: int, data="synthetic", data_root=None) -> list[tuple]:
    """(prompt, image bytes, token cap) of every doc, computed the local engine's way."""
    out = []
    for name in tasks.split(","):
        task = get_task(name)
        docs = load_docs(task, data, data_root=data_root, limit=limit)
        for index in range(len(docs)):
            images = [load_image(resolve_image(v, data_root)) for v in task.image_values(docs[index])]
            request = task.request(docs[index], index, tuple(images))
            sent = [prepare_image(im, task.image_mode or "pad", 336).tobytes() for im in images]
            out.append((render(VICUNA_V1, request.messages, add_generation_prompt=True), sent, task.max_new_tokens))
    return sorted(out)


def received(server) -> list[tuple]:
    return sorted((s.prompt, [im.tobytes() for im in s.images], s.max_tokens) for s in server.answered())


def predictions(out: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (out / task / "predictions.jsonl").read_text().splitlines()]


def metrics(out: Path, task: str) -> dict:
    return json.loads((out / task / "metrics.json").read_text())["metrics"]


@pytest.mark.parametrize("mode,path,window", [("chat", "/v1/chat/completions", "4"), ("generate", "/generate", "4"),
                                              ("chat", "/v1/chat/completions", "16")], ids=["chat", "generate", "wide"])
def test_the_server_receives_the_protocols_exact_inputs(tmp_path, mode, path, window):
    """Also from 16 in flight, where worker processes encode the images."""
    with serve() as server:
        result = run(server, tmp_path / "run", "--max-in-flight", window, tasks="pope,scienceqa_img", limit="5",
                     mode=mode)
    assert result.exit_code == 0, result.output
    assert server.problems == []
    assert received(server) == expected_inputs("pope,scienceqa_img", 5)  # prompt bytes, pixels and token caps
    seen = server.answered()
    assert {s.path for s in seen} == {path} and {s.temperature for s in seen} == {0.0}
    assert {im.size for s in seen for im in s.images} == {(336, 336)}
    if mode == "chat":
        assert {s.model for s in seen} == {"llava-1.5-7b"}
    rows = predictions(tmp_path / "run", "pope") + predictions(tmp_path / "run", "scienceqa_img")
    assert sorted(r["text"] for r in rows) == sorted(answer_for(s.prompt, s.images).strip() for s in seen)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backend"] == "served" and config["served_mode"] == mode and config["template"] == "vicuna_v1"
    assert config["preprocessing"] == "pad to square with (122, 116, 104), bicubic resize to 336x336, PNG"
    assert config["model"] == MODEL and {r["model_id"] for r in rows} == {MODEL}


def test_a_wide_image_arrives_padded_with_the_clip_mean(tmp_path):
    Image.new("RGB", (300, 120), (200, 30, 30)).save(tmp_path / "wide.png")
    rows = [{"question_id": f"q{i}", "question": f"Is there a red square {i}?", "answer": "yes", "category": "random",
             "image": "wide.png"} for i in range(2)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with serve() as server:
        result = run(server, tmp_path / "run", "--data", str(tmp_path / "rows.jsonl"), "--data-root", str(tmp_path))
    assert result.exit_code == 0, result.output
    for seen in server.answered():
        [image] = seen.images
        assert image.size == (336, 336)
        assert image.getpixel((168, 0)) == PAD_COLOR and image.getpixel((168, 335)) == PAD_COLOR
        assert image.getpixel((168, 168)) == (200, 30, 30)
    assert received(server) == expected_inputs("pope", None, str(tmp_path / "rows.jsonl"), tmp_path)


FAULTS = ("429", "500", "slow", "drop", "notjson", "empty", "list", "choices-str", "content-int")


def test_faults_are_retried_and_the_answers_equal_a_clean_run(tmp_path):
    with serve() as server:
        clean = run(server, tmp_path / "clean", limit="12")
    assert clean.exit_code == 0, clean.output
    faults = {}

    def plan(seen, n):
        fault = faults.setdefault(seen.key, FAULTS[len(faults) % len(FAULTS)])
        return fault if n == 0 else "ok"

    with serve(plan=plan, slow=1.0) as server:
        result = run(server, tmp_path / "faulty", "--request-timeout", "0.3", limit="12")
    assert result.exit_code == 0, result.output
    assert server.problems == [] and set(faults.values()) == set(FAULTS)
    assert len(server.answered()) == 12 + len(faults)  # every fault retried once, then answered
    texts = {r["question_id"]: r["text"] for r in predictions(tmp_path / "faulty", "pope")}
    assert texts == {r["question_id"]: r["text"] for r in predictions(tmp_path / "clean", "pope")}
    assert metrics(tmp_path / "faulty", "pope") == metrics(tmp_path / "clean", "pope")


def test_the_window_bounds_the_requests_in_flight(tmp_path):
    with serve(delay=0.05) as server:
        result = run(server, tmp_path / "run", "--max-in-flight", "3", limit="12")
    assert result.exit_code == 0, result.output
    assert server.most_in_flight == 3


def failing(ids_to_fail: set, task="pope"):
    """A plan that answers every request with 500, for the docs whose question is in `ids_to_fail`."""
    docs = load_docs(get_task(task), "synthetic", limit=8)
    questions = {docs[i]["question"] for i in range(len(docs)) if docs[i]["question_id"] in ids_to_fail}
    return lambda seen, n: "500" if any(q in seen.prompt for q in questions) else "ok"


def test_unanswered_docs_leave_the_task_unscored_and_a_rerun_asks_only_for_them(tmp_path):
    out = tmp_path / "run"
    lost = {"pope-0-1", "pope-0-6"}
    with serve(plan=failing(lost)) as server:
        result = run(server, out, "--request-retries", "1", limit="8")
    assert result.exit_code == 3, result.output
    assert "incomplete: pope" in result.output and "no score (2 unanswered)" in result.output
    m = metrics(out, "pope")
    assert m["status"] == "incomplete" and m["n_unanswered"] == 2 and "f1" not in m
    assert set(m["unanswered"]) == lost and "no answer after 2 tries: server error 500" in m["unanswered"]["pope-0-1"]
    missing = [r for r in predictions(out, "pope") if "missing" in r]
    assert {r["question_id"] for r in missing} == lost and not any("text" in r for r in missing)
    assert not (out / "pope" / "items.jsonl").exists()

    with serve() as server:
        again = run(server, out, limit="8")
    assert again.exit_code == 0, again.output
    assert len(server.answered()) == 2  # only the missing ones
    assert "n_unanswered" not in metrics(out, "pope") and "f1" in metrics(out, "pope")


def test_allow_missing_scores_the_answered_docs_only(tmp_path):
    with serve(plan=failing({"pope-0-1", "pope-0-6"})) as server:
        result = run(server, tmp_path / "run", "--request-retries", "0", "--allow-missing", "0.25", limit="8")
    assert result.exit_code == 0, result.output
    assert "2 unanswered" in result.output
    m = metrics(tmp_path / "run", "pope")
    assert m["n_unanswered"] == 2 and m["n_scored"] == 6 and m["n_docs"] == 8 and "f1" in m
    items = [json.loads(x) for x in (tmp_path / "run" / "pope" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 6 and not {"pope-0-1", "pope-0-6"} & {i["question_id"] for i in items}
    with serve(plan=failing({"pope-0-1", "pope-0-6"})) as server:  # over the allowed share: no score
        over = run(server, tmp_path / "over", "--request-retries", "0", "--allow-missing", "0.2", limit="8")
    assert over.exit_code == 3 and metrics(tmp_path / "over", "pope")["status"] == "incomplete"


def test_generate_asks_a_served_model_one_question(tmp_path):
    Image.new("RGB", (64, 32), (10, 200, 10)).save(tmp_path / "green.png")
    with serve() as server:
        result = CliRunner().invoke(main, ["generate", "--model", MODEL, "--model-base-url", server.url, "--image",
                                           str(tmp_path / "green.png"), "--prompt", "What colour?", "--show-prompt"])
    assert result.exit_code == 0, result.output
    [seen] = server.answered()
    assert seen.prompt == render(VICUNA_V1, (Message(USER, "<image>\nWhat colour?"),), add_generation_prompt=True)
    assert result.output.splitlines() == [seen.prompt.splitlines()[0], seen.prompt.splitlines()[1],
                                          answer_for(seen.prompt, seen.images).strip()]
