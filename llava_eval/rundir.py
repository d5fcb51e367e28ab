"""The files of a run directory and how they are read back: JSON written atomically, predictions appended
durably, the per-doc items, config.json and results.json, and the data options that produced each task's
answers (`task_data_options`, the one rule every consumer - judge, compare, report, submit - follows).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from tasks.base import Task, TaskError
from tasks.registry import get_task

from .data import load_docs
from .runstate import load_prediction_rows

DATA_OPTIONS = ("data", "data_root", "limit")  # the options that decide which rows a task has
NO_SCOREABLE_ROWS = "no_scoreable_rows"  # metrics status of a task none of whose docs could be answered
INCOMPLETE = "incomplete"  # metrics status of a task with more unanswered docs than --allow-missing accepts


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return str(obj)


def read_predictions(path: Path) -> tuple[dict, dict]:
    """(doc id -> text, doc id -> error) from a predictions file; later lines win, a torn last line is
    ignored. Docs the model left unanswered (`missing` lines) are in neither."""
    texts, errors = {}, {}
    for doc_id, row in load_prediction_rows(path).items():
        if "error" in row:
            errors[doc_id] = row["error"]
        elif "text" in row:
            texts[doc_id] = row["text"]
    return texts, errors


def read_unanswered(path: Path) -> dict:
    """doc id -> reason, for the docs whose last line says the model gave no answer (a served request that
    failed after its retries); the next run asks for them again."""
    return {doc_id: row["missing"] for doc_id, row in load_prediction_rows(path).items()
            if "missing" in row and "text" not in row}


class Appender:
    """Append JSON lines durably: each batch is flushed and fsynced before the next starts."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", encoding="utf-8")

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def write_items(path: Path, task: Task, docs: list[dict], items: list) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for doc, item in zip(docs, items, strict=True):
            f.write(json.dumps({"question_id": item.doc_id, "prediction": item.prediction, "parsed": item.parsed,
                                "gold": task.gold_text(doc), "score": item.score}, ensure_ascii=False,
                               default=str) + "\n")
    os.replace(tmp, path)


def read_items(path: Path) -> list[dict]:
    if not path.is_file():
        raise TaskError(f"{path} not found (score the run first: llava-eval run into it again)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_json(path: Path) -> dict:
    """A JSON object this package wrote; a damaged file is one error naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaskError(f"{path}: not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(value, dict):
        raise TaskError(f"{path}: expected a JSON object")
    return value


def read_run_config(run_dir: Path) -> dict:
    """The config.json of a run directory (an error when `run_dir` is not one)."""
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise TaskError(f"{run_dir} is not a run directory (no config.json)")
    return read_json(config_file)


def task_data_options(run_dir: Path, name: str) -> dict:
    """The data options (data, data_root, limit) that produced a task's stored metrics and items: those its
    metrics.json records; for a task not scored yet (or by an older version), the run's first options."""
    entry_file = Path(run_dir) / name / "metrics.json"
    options = read_json(entry_file).get("options") if entry_file.is_file() else None
    if not isinstance(options, dict):
        options = read_run_config(Path(run_dir))  # its top level holds the first invocation's options
    return {"data": options.get("data") or "synthetic", "data_root": options.get("data_root"),
            "limit": options.get("limit")}


def run_docs(run_dir: Path, name: str) -> tuple[Task, list[dict]]:
    """A task of a run and its rows (without images), loaded with the data options that produced them."""
    task = get_task(name)
    options = task_data_options(run_dir, name)
    docs = load_docs(task, options["data"], data_root=options["data_root"], limit=options["limit"])
    return task, list(docs.without_images(task))


def read_results(run_dir: Path) -> dict:
    """Task name -> metrics entry of every finished task of a run (its results.json)."""
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise TaskError(f"{run_dir} has no results.json (no task of it has finished)")
    return read_json(results_file)


def finished_tasks(run_dir: Path) -> list[str]:
    return list(read_results(run_dir))
