"""What a stage's output folder already holds, so that a rerun of `llava-train` neither retrains a finished
stage nor resumes a checkpoint that another recipe wrote.

A stage folder holds `recipe.json` (the stage's recipe), Trainer `checkpoint-N` folders while it trains,
and, once finished, `final/` and `train_summary.json`. The summary is written last and records the run
(recipe, starting point, step cap): a rerun with the same run reuses `final/`; a rerun whose recipe differs
from the one the checkpoints were written under is refused instead of silently mixing the two.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from llava_types import UserError

SUMMARY_FILE = "train_summary.json"


class ResumeError(UserError):
    pass


def _as_stored(recipe) -> dict:
    """The recipe entry as JSON stores it (tuples become lists), so that it compares equal to a stored one."""
    return json.loads(json.dumps(asdict(recipe)))


def run_record(recipe, init_from: Path | None, max_steps: int | None) -> dict:
    """What makes two trainings of a stage the same run (as stored in the summary)."""
    return {"recipe": _as_stored(recipe), "init_from": str(init_from) if init_from else None, "max_steps": max_steps}


def checkpoints(out_dir: Path) -> list[Path]:
    found = [p for p in out_dir.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def finished_result(out_dir: Path, record: dict) -> Path | None:
    """The folder's `final/` when this very run already finished there, else None."""
    summary = out_dir / SUMMARY_FILE
    if not (out_dir / "final").is_dir() or not summary.is_file():
        return None
    try:
        previous = json.loads(summary.read_text()).get("run")
    except (json.JSONDecodeError, AttributeError):
        return None
    return out_dir / "final" if previous == record else None


def check_checkpoints_match(out_dir: Path, recipe) -> None:
    """Refuse to resume checkpoints written under a different recipe (a changed learning rate, data or
    schedule would otherwise continue someone else's optimizer state without a word)."""
    stored = out_dir / "recipe.json"
    if not checkpoints(out_dir) or not stored.is_file():
        return
    try:
        before = json.loads(stored.read_text())
    except json.JSONDecodeError:
        before = None
    if not isinstance(before, dict):
        raise ResumeError(f"{stored} is not a recipe entry; pass --no-resume or choose another --out")
    now = _as_stored(recipe)
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        raise ResumeError(f"{out_dir} holds checkpoints of a different recipe (changed: {', '.join(changed)}); "
                          "pass --no-resume to start that stage afresh or choose another --out")


def mark_started(out_dir: Path, recipe) -> None:
    """Before training: drop a finished run's summary (a crash from here on must not leave an older run's
    summary vouching for a half-written `final/`) and write `recipe.json`, replaced atomically (under torchrun
    every rank writes it, and another rank may be reading it)."""
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)
    tmp = out_dir / f".recipe.json.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(recipe), indent=2) + "\n")
    os.replace(tmp, out_dir / "recipe.json")


def write_summary(out_dir: Path, record: dict, **fields) -> None:
    """Written after `final/`, so its presence means the stage finished."""
    (out_dir / SUMMARY_FILE).write_text(json.dumps({"run": record, **fields}, indent=2) + "\n")
