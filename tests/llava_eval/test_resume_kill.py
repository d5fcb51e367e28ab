"""Reliability of `llava-eval run` as a process: SIGKILL at random points then resume gives exactly the
uninterrupted result; a torn last line is repaired; a second run into a busy directory is refused, while
runs into different directories go on side by side."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TASKS = "pope,mme"
LIMIT = "160"  # 5 chunks of 32 per task: enough headroom for five kill points before the run ends
CLI = [sys.executable, "-c", "from llava_eval.cli import main; main()"]


def _command(out: Path) -> list[str]:
    return [*CLI, "run", "--model", "tiny-shapes", "--tasks", TASKS, "--limit", LIMIT, "--batch-size", "4",
            "--out", str(out), "--no-progress"]


def _finish(out: Path, extra=()) -> subprocess.CompletedProcess:
    return subprocess.run(_command(out) + list(extra), capture_output=True, text=True, timeout=300)


def _lines(out: Path) -> int:
    return sum(len((out / t / "predictions.jsonl").read_text().splitlines())
               for t in TASKS.split(",") if (out / t / "predictions.jsonl").is_file())


def _outcome(out: Path) -> dict:
    result = {}
    for task in TASKS.split(","):
        rows = [json.loads(x) for x in (out / task / "predictions.jsonl").read_text().splitlines()]
        ids = [r["question_id"] for r in rows]
        assert len(ids) == len(set(ids)), f"{task}: duplicate predictions"
        metrics = json.loads((out / task / "metrics.json").read_text())
        result[task] = ({r["question_id"]: r["text"] for r in rows}, metrics["metrics"])
    return result


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    done = _finish(out)
    assert done.returncode == 0, done.stderr
    return _outcome(out)


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "run"
    rng = random.Random(1234)
    kills = 0
    while kills < 5:
        # Kill points are drawn in progress, not in time (so a busy machine cannot make the run outpace them):
        # after 1-12 new lines, plus a random fraction of a batch's time.
        target = _lines(out) + rng.randint(1, 12)
        proc = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _lines(out) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break  # finished before the kill: every later kill point would find nothing left to do
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if kills == 3:  # a crash in the middle of a write: a partial last line
            with (out / "pope" / "predictions.jsonl").open("a") as f:
                f.write('{"question_id": "pope-0-9999", "te')
    assert kills == 5, "the run finished before five kills; raise LIMIT"
    done = _finish(out)
    assert done.returncode == 0, done.stderr
    assert _outcome(out) == reference


def test_second_run_into_a_busy_directory_is_refused(tmp_path):
    from llava_eval.rundir import RunLock

    out = tmp_path / "run"
    with RunLock(out):  # the lock a live run holds, taken here by the test process
        second = _finish(out)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1] == (
        f"error: run directory {out} is in use by pid {os.getpid()}; wait for it to finish or choose another --out")
    assert not (out / "pope").exists()


def test_runs_into_different_directories_do_not_interfere(tmp_path, reference):
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen(_command(o), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for o in outs]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert _outcome(outs[0]) == _outcome(outs[1]) == reference


def test_sigint_stops_cleanly_and_leaves_a_resumable_run(tmp_path, reference):
    out = tmp_path / "run"
    proc = subprocess.Popen(_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _lines(out) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1]
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert not os.path.exists(out / "pope" / "metrics.json") or _lines(out) > 0
    done = _finish(out, ["--resume"])
    assert done.returncode == 0, done.stderr
    assert _outcome(out) == reference
