"""Generate, then score: runs tasks into a run directory.

    <out>/config.json                 resolved settings and versions, written before any work
    <out>/<task>/predictions.jsonl    one line per doc in the original LLaVA answer-file format, appended
                                      (flushed and fsynced) as each batch finishes
    <out>/<task>/metrics.json         written when the task finishes
    <out>/results.json                all finished tasks

A rerun into the same directory skips docs already answered. Images that cannot be read become error
lines for their doc (id and reason), counted in the metrics; they never stop the run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from tasks.base import Task, TaskError
from tasks.registry import get_task

from .data import Docs, load_docs, resolve_image
from .request import Model

CHUNK = 64


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return str(obj)


def read_predictions(path: Path) -> tuple[dict, dict]:
    """(doc id -> text, doc id -> error) from a predictions file; later lines win."""
    texts, errors = {}, {}
    if not path.is_file():
        return texts, errors
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise TaskError(f"{path}:{number}: not valid JSON") from None
        if "error" in row:
            errors[row["question_id"]] = row["error"]
        else:
            texts[row["question_id"]] = row["text"]
            errors.pop(row["question_id"], None)
    return texts, errors


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


def build_requests(task: Task, docs: Docs, indices, data_root: Path | None):
    """Requests for the docs at `indices`; unreadable images become (doc id, reason) errors."""
    from llava_model.errors import ImageError
    from llava_model.preprocess import load_image

    requests, errors = [], []
    for index in indices:
        doc = docs[index]
        try:
            images = tuple(load_image(resolve_image(v, data_root)) for v in task.image_values(doc))
        except (ImageError, TaskError) as exc:
            errors.append((task.doc_id(doc, index), str(exc)))
            continue
        requests.append(task.request(doc, index, images))
    return requests, errors


def generate_task(task: Task, docs: Docs, model: Model, pred_file: Path, model_id: str,
                  data_root: Path | None, progress=None) -> None:
    done, _ = read_predictions(pred_file)
    light = docs.without_images(task)
    todo = [i for i in range(len(light)) if task.doc_id(light[i], i) not in done]
    out = Appender(pred_file)
    try:
        for start in range(0, len(todo), CHUNK):
            requests, errors = build_requests(task, docs, todo[start:start + CHUNK], data_root)
            texts = model.generate(requests) if requests else []
            rows = [{"question_id": r.doc_id, "prompt": r.messages[-1].text, "text": t, "model_id": model_id,
                     "task": task.name, "task_version": task.version}
                    for r, t in zip(requests, texts, strict=True)]
            rows += [{"question_id": d, "error": e, "task": task.name} for d, e in errors]
            out.write(rows)
            if progress:
                progress(len(rows))
    finally:
        out.close()


def score_task(task: Task, docs: Docs, pred_file: Path) -> dict:
    texts, errors = read_predictions(pred_file)
    metrics, _ = task.score(list(docs.without_images(task)), texts)
    metrics["n_errors"] = len(errors)
    if errors:
        metrics["errors"] = dict(list(errors.items())[:20])
    return metrics


def run_config(model_id: str, names: list[str], data: str, limit: int | None, batch_size: int) -> dict:
    from importlib.metadata import version

    return {
        "model": model_id, "tasks": {n: get_task(n).version for n in names}, "data": data, "limit": limit,
        "batch_size": batch_size, "llava_eval": version("llava-eval"), "python": platform.python_version(),
        "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run(model: Model, names: list[str], out_dir: Path, *, model_id: str, data: str = "synthetic",
        data_root: str | None = None, limit: int | None = None, batch_size: int = 8, echo=print) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", run_config(model_id, names, data, limit, batch_size))
    # Rows of the original LLaVA layout hold image paths relative to that folder.
    root = Path(data_root) if data_root else (Path(data[len("llava:"):]) if data.startswith("llava:") else None)
    results_file = out_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in names:
        task = get_task(name)
        docs = load_docs(task, data, data_root=data_root, limit=limit)
        task_dir = out_dir / name
        started = time.perf_counter()
        generate_task(task, docs, model, task_dir / "predictions.jsonl", model_id, root)
        metrics = score_task(task, docs, task_dir / "predictions.jsonl")
        entry = {"task": name, "version": task.version, "data": docs.source, "primary_metric": task.primary_metric,
                 "scored_locally": task.scored_locally, "metrics": metrics,
                 "seconds": round(time.perf_counter() - started, 2)}
        write_json(task_dir / "metrics.json", entry)
        results[name] = entry
        write_json(results_file, results)
        echo(format_row(entry))
    return results


def format_row(entry: dict) -> str:
    m = entry["metrics"]
    value = m.get(entry["primary_metric"])
    shown = "n/a (server/judge)" if not entry["scored_locally"] else (
        "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}")
    flags = []
    if m.get("n_missing"):
        flags.append(f"{m['n_missing']} missing")
    if m.get("n_errors"):
        flags.append(f"{m['n_errors']} image errors")
    return (f"{entry['task']:18} {entry['primary_metric']:14} {shown:>18}  n={m.get('n_docs', 0)}"
            + (f"  ({', '.join(flags)})" if flags else ""))
