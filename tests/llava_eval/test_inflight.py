"""The in-flight window of served requests: a 429 halves it and holds every new request for the server's
Retry-After; successes grow it back to its limit; 5xx and timeouts back off exponentially per request; a
request that fails every try is Unanswered while the others are answered; a setup error stops everything; a
refused request is not retried; jobs start in the order given, and the served backend orders them by image."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from llava_eval.backends.entry import BackendOptions
from llava_eval.backends.inflight import Dispatcher, Refused, Retry, SetupError, Window
from llava_eval.backends.served import ServedBackend
from llava_types import USER, Message, Request, Unanswered


def test_a_429_halves_the_window_and_holds_new_requests_for_retry_after():
    window = Window(4)
    starts, lock = [], threading.Lock()

    def call(job):
        with lock:
            starts.append((job, time.monotonic(), window.active))
        if job == 0 and sum(1 for j, *_ in starts if j == 0) == 1:
            raise Retry("429 rate limited", retry_after=0.3, rate_limited=True)
        time.sleep(0.02)
        return job

    began = time.monotonic()
    assert Dispatcher(window, retries=2, backoff=0.01).run(list(range(12)), call) == list(range(12))
    limited = next(t for j, t, _ in starts if j == 0)
    assert [t for _, t, _ in starts if limited + 0.01 < t < limited + 0.29] == []  # all held while asked to wait
    after = [active for _, t, active in starts if t >= limited + 0.29]
    assert max(after[:2]) <= 2 and window.rate_limits == 1  # then the window was half its size
    assert time.monotonic() - began >= 0.3


def test_successes_grow_the_window_back_to_its_limit():
    window = Window(8)
    window.rate_limited(0.0)
    window.rate_limited(0.0)
    assert window.size == 2
    for _ in range(2 + 3 + 4 + 5 + 6 + 7):
        window.succeeded()
    assert window.size == 8
    window.succeeded()
    assert window.size == 8


def test_server_errors_back_off_exponentially_per_request_and_honour_retry_after():
    sleeps = []
    tries = {"a": 0, "b": 0}

    def call(job):
        tries[job] += 1
        if job == "a" and tries[job] <= 3:
            raise Retry("server error 500")
        if job == "b" and tries[job] == 1:
            raise Retry("server error 503", retry_after=0.123)
        return job.upper()

    assert Dispatcher(Window(1), retries=3, backoff=1.0, sleep=sleeps.append).run(["a", "b"], call) == ["A", "B"]
    a_waits, b_waits = sleeps[:3], sleeps[3:]
    assert [1 <= a_waits[0] <= 2, 2 <= a_waits[1] <= 4, 4 <= a_waits[2] <= 8] == [True] * 3  # doubling, with jitter
    assert b_waits == [0.123]


def test_a_request_that_fails_every_try_is_unanswered_and_the_others_are_answered():
    def call(job):
        if job == 2:
            raise Retry("no answer within 5 s")
        return str(job)

    out = Dispatcher(Window(3), retries=2, backoff=0.0).run(list(range(5)), call)
    assert out[:2] == ["0", "1"] and out[3:] == ["3", "4"]
    assert out[2] == Unanswered("no answer after 3 tries: no answer within 5 s")


def test_a_refused_request_is_not_retried_and_a_setup_error_stops_everything():
    calls = []

    def refuse(job):
        calls.append(job)
        raise Refused("HTTP 400 prompt too long")

    assert Dispatcher(Window(1), retries=5).run(["x"], refuse) == [Unanswered("refused by the server: HTTP 400 "
                                                                              "prompt too long")]
    assert calls == ["x"]

    def unauthorised(job):
        raise SetupError("rejected the key (401)")

    with pytest.raises(SetupError, match="401"):
        Dispatcher(Window(4), retries=5).run(list(range(20)), unauthorised)


def test_jobs_start_in_the_order_given():
    order = []
    Dispatcher(Window(1), retries=0).run(list(range(10)), order.append)
    assert order == list(range(10))


class Recorder:
    """An endpoint that answers with the request's text and records the order of the requests."""

    url = "http://127.0.0.1:1/v1"

    def __init__(self):
        self.order = []

    def post(self, path, body):
        text = body["messages"][0]["content"][-1]["text"]
        self.order.append(text)
        return {"choices": [{"message": {"content": f" {text} "}}]}


def test_the_served_backend_sends_an_images_questions_together_and_answers_in_request_order():
    red, blue = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "blue")
    images = [red, blue, red.copy(), blue, red]
    requests = [Request(i, (Message(USER, f"<image>\nq{i}"),), (im,)) for i, im in enumerate(images)]
    endpoint = Recorder()
    backend = ServedBackend("m", BackendOptions(base_url=endpoint.url, max_in_flight=1), endpoint=endpoint)
    assert backend.generate(requests) == [f"q{i}" for i in range(5)]  # stripped, as the original scripts do
    assert endpoint.order == ["\nq0", "\nq2", "\nq4", "\nq1", "\nq3"]
    assert backend.chunk_size == 8


def test_images_given_as_paths_or_bytes_are_read_and_grouped_like_pil_images(tmp_path):
    red = Image.new("RGB", (40, 40), "red")
    red.save(tmp_path / "red.png")
    sources = [red, str(tmp_path / "red.png"), (tmp_path / "red.png").read_bytes(), Image.new("RGB", (9, 9))]
    requests = [Request(i, (Message(USER, f"<image>\nq{i}"),), (src,)) for i, src in enumerate(sources)]
    endpoint = Recorder()
    backend = ServedBackend("m", BackendOptions(base_url=endpoint.url, max_in_flight=1), endpoint=endpoint)
    assert backend.generate(requests) == ["q0", "q1", "q2", "q3"]
    assert len(backend.encoder._cache) == 2  # the three reds are one image


def test_a_stream_starts_the_next_batch_while_a_batch_ends_and_yields_the_batches_in_order():
    events, lock = [], threading.Lock()

    def call(job):
        with lock:
            events.append(("start", job))
        time.sleep(0.3 if job == 3 else 0.01)  # the first batch's last request is slow
        with lock:
            events.append(("end", job))
        return job * 10

    batches = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    out = list(Dispatcher(Window(4), retries=0).stream(batches, call))
    assert out == [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90]]
    assert events.index(("start", 4)) < events.index(("end", 3))  # the window did not drain at the batch's end


def test_a_stream_takes_a_batch_only_when_there_is_room_for_it():
    taken = []

    def batches():
        for number in range(4):
            taken.append(number)
            yield [number]

    stream = Dispatcher(Window(2), retries=0).stream(batches(), lambda job: job)
    assert next(stream) == [0] and taken == [0, 1]  # one batch ahead of the one handed back
    assert list(stream) == [[1], [2], [3]]


def test_each_image_object_is_hashed_once_per_chunk():
    red, blue = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "blue")
    requests = [Request(i, (Message(USER, f"<image>\nq{i}"),), (im,)) for i, im in enumerate([red, blue, red, red])]
    backend = ServedBackend("m", BackendOptions(base_url=Recorder.url, max_in_flight=2), endpoint=Recorder())
    hashed = []
    key = backend.encoder.key
    backend.encoder.key = lambda image: hashed.append(image) or key(image)
    assert backend.generate(requests) == ["q0", "q1", "q2", "q3"]
    assert len(hashed) == 2
