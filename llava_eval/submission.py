"""`llava-eval submit`: the evaluation-server file of a task, built from the answers a run stored and the rows
that produced them (or a local copy of the split given with --data).
"""

from __future__ import annotations

from pathlib import Path

from tasks.base import TaskError
from tasks.registry import get_task

from .errors import check_output
from .rundir import RunDir


def write_submission(run_dir, name: str, out_file, data: str | None = None, extra_items=()) -> str:
    """Write the server file of task `name` of the run to `out_file`; returns the line that says so."""
    check_output(out_file, "--out")
    run = RunDir(run_dir)
    task = get_task(name)
    if not run.predictions(name).is_file():
        raise TaskError(f"no predictions for {name} in {run}")
    _, docs = run.task_docs(name, data)
    texts, _ = run.answers(name)
    suffix, content = task.submission(list(docs.without_images(task)), texts, _extra(extra_items))
    Path(out_file).write_bytes(content)
    return f"wrote {out_file} ({suffix}, {len(texts)} answers)"


def _extra(items) -> dict:
    """--extra KEY=VALUE items as a mapping."""
    extra = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise TaskError(f"--extra takes KEY=VALUE, got {item!r}")
        extra[key] = value
    return extra
