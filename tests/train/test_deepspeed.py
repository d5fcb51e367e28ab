"""Two processes with DeepSpeed ZeRO-2 on CPU (torchrun, gloo) complete a few steps of stage 2 and of the
tiny-shapes recipe's curriculum passes after it (each continues the previous pass's result, which every
rank must read only once rank 0 has written it), and save a checkpoint that the harness loads. DeepSpeed builds its CPU communication op on first use (about a
minute on a fresh machine, cached afterwards)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_zero2_two_cpu_processes(tmp_path):
    out = tmp_path / "ds"
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "train.cli",
           "tiny-shapes", "--stage", "2", "--out", str(out), "--max-steps", "3", "--deepspeed", "zero2",
           "--set", "data_path=synthetic:stage2:16", "--set", "per_device_batch_size=2",
           "--set", "global_batch_size=4", "--set", "save_steps=3"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for folder in ("stage2", "stage2-existence", "stage2-finish"):
        summary = json.loads((out / folder / "train_summary.json").read_text())
        assert summary["global_step"] == 3, folder
    from llava_model.checkpoint import load_bundle

    bundle = load_bundle(str(out / "stage2-finish" / "final"), device="cpu")
    assert bundle.template.name == "vicuna_v1"
