"""Served runs as processes against one scripted server: SIGKILLs in the middle of a run and a resume lose and
duplicate nothing (the answers equal an uninterrupted run's), and two runs at once against the same server agree.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from llava_eval.cli import main
from tests.llava_eval.served_server import serve

CLI = [sys.executable, "-c", "from llava_eval.cli import main; main()"]
LIMIT = "48"  # 12 chunks of 4 (--max-in-flight 1): room for kill points before the run ends


def arguments(url: str, out: Path) -> list[str]:
    return ["run", "--model", "served:llava-1.5-7b", "--model-base-url", url, "--tasks", "pope", "--limit", LIMIT,
            "--out", str(out), "--no-progress", "--max-in-flight", "1"]


def lines(out: Path) -> int:
    pred = out / "pope" / "predictions.jsonl"
    return len(pred.read_text().splitlines()) if pred.is_file() else 0


def outcome(out: Path) -> tuple[dict, dict]:
    rows = [json.loads(x) for x in (out / "pope" / "predictions.jsonl").read_text().splitlines()]
    ids = [r["question_id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate predictions"
    return {r["question_id"]: r["text"] for r in rows}, json.loads((out / "pope" / "metrics.json").read_text())[
        "metrics"]


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    rng = random.Random(7)
    with serve(delay=0.01) as server:
        reference = CliRunner().invoke(main, arguments(server.url, tmp_path / "reference"))
        assert reference.exit_code == 0, reference.output
        out, kills = tmp_path / "killed", 0
        while kills < 2:
            target = lines(out) + rng.randint(1, 8)
            proc = subprocess.Popen(CLI + arguments(server.url, out), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while lines(out) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.03))  # inside the next chunk: requests in flight, answers unwritten
            assert proc.poll() is None, "the run finished before the kill; raise LIMIT"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        assert 0 < lines(out) < int(LIMIT)
        done = subprocess.run(CLI + arguments(server.url, out), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert outcome(out) == outcome(tmp_path / "reference")


def test_two_runs_at_once_against_one_server_agree(tmp_path):
    with serve(delay=0.005) as server:
        procs = [subprocess.Popen(CLI + arguments(server.url, tmp_path / name)[:-1] + ["4"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
        results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert server.most_in_flight > 4  # the two runs' requests were in the server at the same time
    assert outcome(tmp_path / "a") == outcome(tmp_path / "b")


def test_a_served_run_does_not_import_torch(tmp_path):
    """A served run needs no deep-learning framework: its startup is not a second and a half of torch imports."""
    script = ("import sys; from llava_eval.cli import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))")
    with serve() as server:
        done = subprocess.run([sys.executable, "-c", script, *arguments(server.url, tmp_path / "run")[:-1], "4"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert len(outcome(tmp_path / "run")[0]) == int(LIMIT)
