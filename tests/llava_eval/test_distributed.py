"""Data-parallel evaluation: two CPU processes under torchrun (gloo) give the same predictions and metrics as
one process, and leave no rank files behind."""

from __future__ import annotations

import json
import subprocess
import sys

TASKS = ["pope", "mme"]


def _run(args, out):
    cmd = [*args, "run", "--tasks", ",".join(TASKS), "--limit", "30", "--batch-size", "4", "--out", str(out),
           "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _outcome(out):
    result = {}
    for task in TASKS:
        rows = [json.loads(x) for x in (out / task / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == len({r["question_id"] for r in rows}) == 30
        metrics = json.loads((out / task / "metrics.json").read_text())["metrics"]
        result[task] = ({r["question_id"]: r["text"] for r in rows}, metrics)
        assert not list((out / task).glob("predictions.rank*.jsonl"))
    return result


def test_two_processes_equal_one(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                "llava_eval"]
    two = _run(torchrun, tmp_path / "dp")
    _run([sys.executable, "-m", "llava_eval"], tmp_path / "sp")
    assert _outcome(tmp_path / "dp") == _outcome(tmp_path / "sp")
    assert "2 processes" in two.stdout and two.stdout.count("pope ") == 1  # rank 0 alone reports
    config = json.loads((tmp_path / "dp" / "config.json").read_text())
    assert config["world_size"] == 2


def test_leftover_rank_files_are_merged_on_resume(tmp_path):
    out = tmp_path / "run"
    _run([sys.executable, "-m", "llava_eval"], out)
    pred = out / "pope" / "predictions.jsonl"
    lines = pred.read_text().splitlines()
    pred.write_text("\n".join(lines[:10]) + "\n")  # as if the run died with answers only in a rank file
    (out / "pope" / "predictions.rank1.jsonl").write_text("\n".join(lines[10:20]) + "\n")
    done = _run([sys.executable, "-m", "llava_eval"], out)
    assert _outcome(out)["pope"][0] == {json.loads(x)["question_id"]: json.loads(x)["text"] for x in lines}
    assert "pope" in done.stdout
    assert json.loads((out / "pope" / "metrics.json").read_text())["generated"] == 10  # 20 kept, 10 redone
