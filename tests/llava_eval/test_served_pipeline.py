"""The runner's side of served throughput: a backend with `generate_stream` gets the next chunk before this
chunk's answers are written, and the answer file still holds every doc once, in doc order, resumable; rows on
one image share one decoded image (read, decoded and hashed once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava_eval.options import RunOptions
from llava_eval.runner import Answerer, build_requests, generate_task, load_task_docs
from llava_eval.runstate import image_fingerprint
from tasks.registry import get_task


class Streaming:
    """A backend that answers each request with its doc id and logs when chunks are taken and handed back."""

    source, chunk_size = "stream:toy", 4

    def __init__(self, log: list, crash_after: int | None = None):
        self.log, self.crash_after = log, crash_after

    def generate(self, requests):  # pragma: no cover - the runner uses the stream
        raise AssertionError("generate_stream expected")

    def generate_stream(self, chunks):
        previous: list = []
        for number, requests in enumerate(chunks):
            self.log.append(("taken", number))
            if number >= 1:
                if number - 1 == self.crash_after:
                    raise RuntimeError("crash")
                yield [f"a{r.doc_id}" for r in previous]
                self.log.append(("answered", number - 1))
            previous = requests
        yield [f"a{r.doc_id}" for r in previous]
        self.log.append(("answered", number))

    def fingerprint(self):
        return "stream-toy"

    def record(self):
        return {"backend": "stream"}

    def prompt(self, request):
        return request.messages[-1].text


def run(out: Path, backend: Streaming, limit: int = 14) -> list[dict]:
    options = RunOptions(tasks=("pope",), out=out, limit=limit)
    docs = load_task_docs(options)["pope"]
    generate_task(get_task("pope"), docs, Answerer(backend, backend.source, backend.fingerprint()), options)
    return [json.loads(line) for line in (out / "pope" / "predictions.jsonl").read_text().splitlines()]


def test_a_streaming_backend_gets_the_next_chunk_before_the_answers_are_written_and_order_is_kept(tmp_path):
    log: list = []
    rows = run(tmp_path / "run", Streaming(log))
    assert log[:3] == [("taken", 0), ("taken", 1), ("answered", 0)]  # chunk 1 was handed over before 0's answers
    assert [r["text"] for r in rows] == [f"a{r['question_id']}" for r in rows]
    reference = run(tmp_path / "reference", Streaming([]), limit=14)
    assert [r["question_id"] for r in rows] == [r["question_id"] for r in reference] and len(rows) == 14
    assert len({r["question_id"] for r in rows}) == 14


def test_a_run_cut_short_resumes_with_only_the_missing_docs(tmp_path):
    with pytest.raises(RuntimeError, match="crash"):  # after two chunks' answers, the third and fourth taken
        run(tmp_path / "run", Streaming([], crash_after=2))
    assert len((tmp_path / "run" / "pope" / "predictions.jsonl").read_text().splitlines()) == 8
    log: list = []
    rows = run(tmp_path / "run", Streaming(log))
    assert len(rows) == 14 and len({r["question_id"] for r in rows}) == 14
    assert log.count(("answered", 0)) == 1 and ("answered", 2) not in log  # the six left: two chunks


def test_rows_on_one_image_share_one_decoded_image_with_the_same_fingerprint(tmp_path):
    options = RunOptions(tasks=("pope",), out=tmp_path, limit=24)
    task, docs = get_task("pope"), load_task_docs(options)["pope"]
    requests, errors = build_requests(task, docs, range(24), options.image_root)
    assert not errors
    by_pixels: dict = {}
    for request in requests:
        by_pixels.setdefault(image_fingerprint(request.images), set()).add(id(request.images[0]))
    assert len(by_pixels) < len(requests)  # some images carry several questions
    assert all(len(objects) == 1 for objects in by_pixels.values())
