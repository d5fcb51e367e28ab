"""Served throughput: requests/s of the served backend against a local stub server with a fixed service time
and no limit of its own (one asyncio loop in a separate process), for several in-flight windows, and
the harness's own cost per request.

    python benchmarks/served_throughput.py [--service-ms 50,500] [--windows 1,8,64] [--seconds 6]

The stub answers every chat completion after `--service-ms`, so with W requests in flight its capacity is
W / service time; the ratio achieved / capacity shows whether the window saturates it. Requests are POPE-like
(`--per-image` questions on each synthetic-world image, 336 x 336 PNG data URLs), handed to the backend in its
own chunks as the runner does. Overhead: the client's CPU seconds per request (image preparation, PNG and
base64 encoding, JSON, HTTP client, window), this process's plus its image-encoding processes' (from 16 in
flight) - the stub runs in another process, not counted - and, at window 1, the
wall time per request beyond the service time. Last, per service time, the runner's generation loop at the
largest window (rows' images loaded and decoded, fingerprints, durable appends; scoring not included). Measured
numbers only; they go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time

REPLY = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "stub", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Yes"}, "finish_reason": "stop"}]}).encode()
STUB = "served-throughput-stub"  # the stub process's name: its CPU is not the client's


def stub(port_out, service: float) -> None:
    """An HTTP/1.1 chat-completions stub on one asyncio loop: each request is read whole (head and
    Content-Length body), answered `service` seconds later with the same precomputed reply; any number of
    connections, one request at a time on each, as a server without a batch limit. Its own CPU per request is
    a few tens of microseconds, so the client, not the stub, is what is measured (a thread-per-connection stub
    took about a third of a core at 1,000 requests/s on this 2-core machine)."""
    import asyncio

    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(REPLY), REPLY)

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                await asyncio.sleep(service)
                writer.write(response)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_out.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def workload(n: int, per_image: int):
    """n POPE-like requests, `per_image` questions on each distinct synthetic image; the questions on one image
    share one image object, as the runner hands them over (it decodes each image once per chunk)."""
    from synthetic.world import make_scene
    from tasks.registry import get_task

    task = get_task("pope")
    doc = task.synthetic_docs(1)[0]
    requests = []
    for i in range(n):
        if i % per_image == 0:
            image = make_scene(i // per_image).image()
        requests.append(task.request(dict(doc, question_id=f"q{i}", question=f"Is there a shape {i}?"), i, (image,)))
    return requests


def measure(url: str, requests, window: int) -> tuple[float, float, float]:
    """(requests/s, client CPU seconds per request, of which in this process) through the backend, chunk by
    chunk."""
    from llava_eval.backends.entry import BackendOptions
    from llava_eval.backends.served import ServedBackend

    backend = ServedBackend("stub", BackendOptions(base_url=url, max_in_flight=window, request_retries=0))
    backend.generate(requests[:window])  # connections opened, code paths warm
    backend.encoder._cache.clear()
    cpu, helpers, start = time.process_time(), helpers_cpu(), time.perf_counter()
    step = backend.chunk_size
    for begin in range(0, len(requests), step):
        answers = backend.generate(requests[begin:begin + step])
        assert all(a == "Yes" for a in answers), answers[:3]
    wall = time.perf_counter() - start
    main = time.process_time() - cpu
    cpu = main + helpers_cpu() - helpers
    backend.encoder.close()
    return len(requests) / wall, cpu / len(requests), main / len(requests)


def helpers_cpu() -> float:
    """CPU seconds so far of this process's children other than the stub: the image-encoding processes."""
    total = 0.0
    for child in multiprocessing.active_children():
        if child.name != STUB:
            with open(f"/proc/{child.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def through_runner(url: str, window: int, limit: int) -> tuple[float, float, float]:
    """(requests/s, client CPU ms per request, of which in this process) of the runner's generation loop
    (`generate_task`, what `llava-eval run` does before scoring) on synthetic POPE rows: image loading and
    decoding, fingerprints and durable appends included; the rows are loaded before the clock starts."""
    import tempfile
    from pathlib import Path

    from llava_eval.backends.entry import BackendOptions
    from llava_eval.backends.served import ServedBackend
    from llava_eval.options import RunOptions
    from llava_eval.runner import Answerer, generate_task, load_task_docs
    from tasks.registry import get_task

    backend = ServedBackend("stub", BackendOptions(base_url=url, max_in_flight=window, request_retries=0))
    with tempfile.TemporaryDirectory() as out:
        options = RunOptions(tasks=("pope",), out=Path(out), limit=limit)
        docs = load_task_docs(options)["pope"]
        cpu, helpers, start = time.process_time(), helpers_cpu(), time.perf_counter()
        generate_task(get_task("pope"), docs, Answerer(backend, "stub", backend.fingerprint()), options)
        wall = time.perf_counter() - start
        main = time.process_time() - cpu
        cpu = main + helpers_cpu() - helpers
    backend.encoder.close()
    return limit / wall, 1000 * cpu / limit, 1000 * main / limit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service-ms", default="50,500", help="stub service times to measure, comma-separated")
    parser.add_argument("--windows", default="1,8,64")
    parser.add_argument("--seconds", type=float, default=6.0, help="aimed length of each measurement at capacity")
    parser.add_argument("--per-image", type=int, default=6, help="questions per image (POPE: 17.8; GQA: 31.6)")
    parser.add_argument("--runner", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the runner's generation loop on synthetic POPE at the largest window")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    services = [float(ms) / 1000 for ms in args.service_ms.split(",")]
    most = int(max(w / s for w in windows for s in services) * args.seconds)
    requests = workload(most, args.per_image)
    from llava_eval.backends.exact_inputs import ImageEncoder

    payload = len(ImageEncoder().url(requests[0].images[0], "pad"))
    print(f"stub: fixed service time, unlimited concurrency; {args.per_image} questions per image; image data URL "
          f"{payload / 1024:.0f} KiB")
    print(f"{'service':>7} {'window':>6} {'requests':>8} {'req/s':>8} {'capacity':>9} {'ratio':>6} {'CPU ms/req':>10} "
          f"{'in-process':>10} {'wall ms/req':>11}")
    for service in services:
        ports = multiprocessing.Queue()
        server = multiprocessing.Process(target=stub, args=(ports, service), daemon=True, name=STUB)
        server.start()
        url = f"http://127.0.0.1:{ports.get(timeout=30)}/v1"
        for window in windows:
            capacity = window / service
            sample = requests[: max(4 * window, min(len(requests), int(capacity * args.seconds)))]
            rate, cpu, main = measure(url, sample, window)
            overhead = f"{1000 / rate - 1000 * service:>11.2f}" if window == 1 else f"{'':>11}"
            print(f"{1000 * service:>5.0f}ms {window:>6} {len(sample):>8} {rate:>8.1f} {capacity:>9.1f} "
                  f"{rate / capacity:>6.3f} {1000 * cpu:>10.2f} {1000 * main:>10.2f} {overhead}", flush=True)
        if args.runner:
            window = max(windows)
            limit = int(min(window / service, 1e9) * args.seconds)
            rate, cpu, main = through_runner(url, window, limit)
            print(f"{1000 * service:>5.0f}ms {window:>6} {limit:>8} {rate:>8.1f} {window / service:>9.1f} "
                  f"{rate * service / window:>6.3f} {cpu:>10.2f} {main:>10.2f}  (runner loop, synthetic POPE)",
                  flush=True)
        server.terminate()


if __name__ == "__main__":
    main()
