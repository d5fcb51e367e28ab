"""The benchmark scripts keep running as the code under them changes: each runs once with the smallest
workload and prints its table (the figures themselves are measured by hand and recorded in docs/benchmarks.md;
nothing here times anything)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script, args, expected", [
    ("eval_throughput.py", ["--questions", "6", "--batch-size", "2", "--threads", "1"], "identical"),
    ("train_throughput.py", ["--samples", "16", "--batch-size", "8", "--steps", "1"], "padding fraction"),
    ("served_throughput.py", ["--service-ms", "20", "--windows", "2", "--seconds", "0.3"], "runner loop"),
    ("yes_no_probe.py", ["tiny-shapes", "--rows", "6"], "AUC"),
    ("lookup_learnability.py", ["--steps", "2", "--tokens", "4"], "accuracy"),
])
def test_benchmark_script_runs(script, args, expected):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout
    if expected == "identical":
        assert "False" not in done.stdout  # both engines answered alike
