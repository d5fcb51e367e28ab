"""Generate, then score: runs tasks into a run directory.

    <out>/config.json                 settings, versions, fingerprints and command line, written once every
                                      task's rows have loaded and extended on every resume
    <out>/.lock                       held while a run writes here: a second run into the folder is refused
    <out>/<task>/predictions.jsonl    one line per doc in the original LLaVA answer-file format plus `fp`
                                      (fingerprints), appended (flushed and fsynced) as each batch finishes
    <out>/<task>/items.jsonl          per-doc prediction, parsed answer, gold and score
    <out>/<task>/metrics.json         written the moment the task finishes, with a bootstrap interval and the
                                      data options that produced it; a judge's numbers are kept (see _carry_judged)
    <out>/results.json                all finished tasks

A rerun into the same directory resumes: docs with a stored prediction are skipped when its fingerprints
(model, generation settings, task version, prompt, image) still hold, and the run is refused when one does
not. A last line torn by a crash is repaired. Images that cannot be read become error lines for their doc
(id and reason), counted in the metrics and retried on the next rerun; they never stop the run. A task whose
every image failed reports `no_scoreable_rows` instead of a metric. Answers a model could not get (`Unanswered`:
a served request that failed after its retries) become `missing` lines, never scored and asked again on the
next rerun; a task with more of them than `allow_missing` accepts reports `incomplete`. Reading the files back:
rundir.py.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from llava_types import Backend, Model, Unanswered
from tasks.base import Task, TaskError
from tasks.registry import get_task

from .data import Docs, image_root, load_docs, resolve_image
from .rundir import (
    DATA_OPTIONS,
    INCOMPLETE,
    NO_SCOREABLE_ROWS,
    Appender,
    read_json,
    read_predictions,
    read_unanswered,
    task_data_options,
    write_items,
    write_json,
)
from .runstate import (
    RunLock,
    check_fingerprints,
    digest,
    environment,
    image_fingerprint,
    load_prediction_rows,
    settings_fingerprint,
)

IMAGE_CHECKS = 32  # stored predictions per task whose images are re-read and compared on resume


@dataclass(frozen=True)
class Shard:
    """This process's share of a data-parallel run (torchrun): rank r answers the r-th contiguous block of
    the unanswered docs (deterministic: every rank computes the same list after a barrier) and appends them
    to its own `predictions.rank<r>.jsonl`; rank 0 merges the rank files into `predictions.jsonl`, scores and
    writes the metrics. One process: rank 0 of 1."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def shard_from_env() -> Shard:
    """The shard of a process started by torchrun (WORLD_SIZE > 1): joins the process group (NCCL on GPUs,
    gloo on CPU); otherwise the single shard."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size())


def merge_rank_files(pred_file: Path) -> int:
    """Append the answers of `predictions.rank*.jsonl` that `predictions.jsonl` lacks, in doc-id order of the
    rank files, then delete them; returns how many lines were added."""
    rank_files = sorted(pred_file.parent.glob("predictions.rank*.jsonl"))
    if not rank_files:
        return 0
    have = load_prediction_rows(pred_file, repair=True)
    added = []
    for f in rank_files:
        for doc_id, row in load_prediction_rows(f, repair=True).items():
            if "text" in row and "text" not in have.get(doc_id, {}) or doc_id not in have:
                have[doc_id] = row
                added.append(row)
    out = Appender(pred_file)
    try:
        out.write(added)
    finally:
        out.close()
    for f in rank_files:
        f.unlink()
    return len(added)


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


def prompt_fp(task: Task, doc: dict) -> str:
    """The task's text for the row and its image preprocessing (the image bytes have their own fingerprint)."""
    return digest(task.prompt(doc), task.image_mode)


def task_fingerprints(task: Task, model_fp: str) -> dict:
    from llava_types import GenerationSettings

    return {"model": model_fp, "settings": settings_fingerprint(GenerationSettings(max_new_tokens=task.max_new_tokens)),
            "task_version": task.version}


def _check_stored(task: Task, docs: Docs, light: Docs, pred_file: Path, rows: dict, expected: dict,
                  data_root: Path | None) -> None:
    """Refuse stored answers made under other settings, another prompt, or (checked on a sample) another image."""
    answered = {k: v for k, v in rows.items() if "text" in v}
    index_of = {task.doc_id(light[i], i): i for i in range(len(light))}
    per_doc = {d: {"prompt": prompt_fp(task, light[i])} for d, i in index_of.items() if d in answered}
    sample = sorted(per_doc, key=str)
    random.Random(0).shuffle(sample)
    for doc_id in sample[:IMAGE_CHECKS]:
        requests, _ = build_requests(task, docs, [index_of[doc_id]], data_root)
        if requests:
            per_doc[doc_id]["image"] = image_fingerprint(requests[0].images)
    check_fingerprints(pred_file, answered, expected, per_doc)


def generate_task(task: Task, docs: Docs, model: Model, pred_file: Path, model_id: str,
                  data_root: Path | None, model_fp: str | None = None, batch_size: int = 8, progress=None,
                  shard: Shard = Shard()) -> int:
    """Answer this shard's docs of `task` that have no stored answer; returns how many were generated."""
    expected = task_fingerprints(task, model_fp or digest(model_id))
    if shard.main:
        merge_rank_files(pred_file)  # answers of an interrupted data-parallel run
    shard.barrier()
    rows = load_prediction_rows(pred_file, repair=shard.main)
    light = docs.without_images(task)
    _check_stored(task, docs, light, pred_file, rows, expected, data_root)
    missing = [i for i in range(len(light)) if "text" not in rows.get(task.doc_id(light[i], i), {})]
    # Contiguous blocks, so the questions on one image mostly stay in one process (one vision pass, one prefill).
    per = -(-len(missing) // shard.world)
    todo = missing[shard.rank * per:(shard.rank + 1) * per]
    if shard.world > 1:
        pred_file = pred_file.with_name(f"predictions.rank{shard.rank}.jsonl")
    if progress is not None:
        progress.reset(total=len(light))
        progress.update(len(light) - len(todo))
    out = Appender(pred_file)
    step = model.chunk_size if isinstance(model, Backend) else batch_size
    chunks = [todo[start:start + step] for start in range(0, len(todo), step)]
    # The next chunk's images are read and decoded in a background thread while the model answers this one.
    prefetch = ThreadPoolExecutor(max_workers=1)
    pending = prefetch.submit(build_requests, task, docs, chunks[0], data_root) if chunks else None
    try:
        for number, chunk in enumerate(chunks):
            requests, errors = pending.result()
            if number + 1 < len(chunks):
                pending = prefetch.submit(build_requests, task, docs, chunks[number + 1], data_root)
            texts = model.generate(requests) if requests else []
            index_of = {task.doc_id(light[i], i): i for i in chunk}
            lines = []
            for request, text in zip(requests, texts, strict=True):
                if isinstance(text, Unanswered):  # never an empty answer: asked again on the next run
                    lines.append({"question_id": request.doc_id, "missing": text.reason, "task": task.name})
                    continue
                fp = dict(expected, prompt=prompt_fp(task, light[index_of[request.doc_id]]),
                          image=image_fingerprint(request.images))
                lines.append({"question_id": request.doc_id, "prompt": request.messages[-1].text, "text": text,
                              "model_id": model_id, "task": task.name, "task_version": task.version, "fp": fp})
            lines += [{"question_id": d, "error": e, "task": task.name} for d, e in errors]
            out.write(lines)
            if progress is not None:
                progress.update(len(chunk))
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
        out.close()
    shard.barrier()
    if shard.main and shard.world > 1:
        merge_rank_files(pred_file.with_name("predictions.jsonl"))
    return len(missing)


def score_task(task: Task, docs: Docs, pred_file: Path, items_file: Path | None = None,
               allow_missing: float = 0.0) -> dict:
    """Metrics of the stored predictions, with a bootstrap interval of the primary metric; the per-doc items
    go to `items_file` when given. A task none of whose docs has an answer (every image failed) gets no metric:
    scoring empty answers would print a number that measures nothing. Nor does a task whose unanswered docs
    (a served model's failed requests) exceed the `allow_missing` share; within it, they are left out."""
    from .scoring import score_answered
    from .stats import bootstrap_ci

    texts, errors = read_predictions(pred_file)
    light = list(docs.without_images(task))
    ids = [task.doc_id(doc, i) for i, doc in enumerate(light)]
    stored = read_unanswered(pred_file)
    unanswered = {d: stored[d] for d in ids if d in stored}
    incomplete = len(unanswered) > allow_missing * len(light)
    if incomplete or not any(d in texts for d in ids):
        if items_file is not None:
            items_file.unlink(missing_ok=True)  # items of an earlier scoring no longer describe this task
        return {"status": INCOMPLETE if incomplete else NO_SCOREABLE_ROWS, "n_docs": len(light),
                "n_missing": sum(d not in texts for d in ids), **_error_fields(errors),
                **_unanswered_fields(unanswered)}
    metrics, light, items = score_answered(task, light, texts, unanswered)
    metrics.update(_error_fields(errors), **_unanswered_fields(unanswered))
    value = metrics.get(task.primary_metric)
    ci = bootstrap_ci(task, light, items, point=value if isinstance(value, int | float) else None)
    if ci is not None:
        metrics["ci95"] = ci
    if items_file is not None:
        write_items(items_file, task, light, items)
    return metrics


def _error_fields(errors: dict) -> dict:
    return {"n_errors": len(errors), **({"errors": dict(list(errors.items())[:20])} if errors else {})}


def _unanswered_fields(unanswered: dict) -> dict:
    return {"n_unanswered": len(unanswered), "unanswered": dict(list(unanswered.items())[:20])} if unanswered else {}


def run_config(model_id: str, names: list[str], data: str, limit: int | None, batch_size: int,
               model_fp: str | None = None, env: dict | None = None, data_root: str | None = None) -> dict:
    return {"model": model_id, "model_fingerprint": model_fp, "tasks": {n: get_task(n).version for n in names},
            "data": data, "data_root": data_root, "limit": limit, "batch_size": batch_size, **(env or environment())}


def _update_config(path: Path, fresh: dict) -> None:
    """First run: write `fresh`. Resume: keep the first record, add the new tasks and a `resumes` entry with
    this invocation's options."""
    if not path.is_file():
        write_json(path, fresh)
        return
    config = json.loads(path.read_text())
    config["tasks"] = {**config.get("tasks", {}), **fresh["tasks"]}
    config.setdefault("resumes", []).append({k: fresh.get(k) for k in ("started", "command", "git_commit", "llava_eval",
                                                                       "batch_size", *DATA_OPTIONS)})
    write_json(path, config)


def load_task_docs(names: list[str], data: str = "synthetic", data_root: str | None = None,
                   limit: int | None = None) -> dict[str, Docs]:
    """Every task's rows, loaded and schema-checked up front: bad data stops a run before a model is loaded
    or anything is written."""
    return {name: load_docs(get_task(name), data, data_root=data_root, limit=limit) for name in names}


@dataclass(frozen=True)
class Invocation:
    """What one `run` call answers with, and the data options it was given (recorded with every task)."""

    model: Model
    model_id: str
    model_fp: str | None
    batch_size: int
    options: dict
    shard: Shard = Shard()
    allow_missing: float = 0.0  # share of a task's docs that may stay unanswered and the task still be scored

    @property
    def image_root(self) -> Path | None:
        return image_root(self.options["data"], self.options["data_root"])


def run(model: Model, names: list[str], out_dir: Path, *, model_id: str, data: str = "synthetic",
        data_root: str | None = None, limit: int | None = None, batch_size: int = 8, echo=print,
        model_fp: str | None = None, env: dict | None = None, progress: bool | None = None,
        shard: Shard = Shard(), docs: dict[str, Docs] | None = None, allow_missing: float = 0.0) -> dict:
    """Run `names` into `out_dir` (resuming what is there); `progress` None shows bars on a terminal only;
    `docs` are the tasks' rows when already loaded (load_task_docs). Under torchrun every rank calls this
    with its `shard`; rank 0 alone locks, scores and writes metrics."""
    import contextlib

    docs = load_task_docs(names, data, data_root, limit) if docs is None else docs
    job = Invocation(model, model_id, model_fp, batch_size, {"data": data, "data_root": data_root, "limit": limit},
                     shard, allow_missing)
    out_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(out_dir) if shard.main else contextlib.nullcontext():
        if not shard.main:
            return _run_worker(job, names, docs, out_dir)
        config_file = out_dir / "config.json"
        first = not config_file.is_file()
        _update_config(config_file, run_config(model_id, names, data, limit, batch_size, model_fp, env, data_root)
                       | {"world_size": shard.world})
        shard.barrier()
        try:
            return _run_tasks(job, names, docs, out_dir, echo, progress)
        except Exception:  # not KeyboardInterrupt: an interrupted first call is resumed with --resume
            if first and not any(f.stat().st_size for f in out_dir.glob("*/predictions*.jsonl")):
                config_file.unlink()  # a first call that answered nothing leaves no record of options that did not run
            raise


def _run_tasks(job: Invocation, names: list[str], docs: dict, out_dir: Path, echo, progress) -> dict:
    from tqdm.auto import tqdm

    results_file = out_dir / "results.json"
    results = read_json(results_file) if results_file.is_file() else {}
    disable = None if progress is None else not progress
    suite = tqdm(total=len(names), desc="suite", unit="task", position=0, disable=disable, leave=False)
    bar = tqdm(total=0, unit="q", position=1, disable=disable, leave=False, dynamic_ncols=True)
    try:
        for name in names:
            bar.set_description(name)
            results[name] = _run_task(job, get_task(name), docs[name], out_dir, bar)
            write_json(results_file, results)
            suite.update(1)
            (tqdm.write if not suite.disable else echo)(format_row(results[name]))
    finally:
        bar.close()
        suite.close()
    return results


def _run_task(job: Invocation, task: Task, docs: Docs, out_dir: Path, bar) -> dict:
    """Generate and score one task; its entry is written to `<task>/metrics.json` the moment it is done."""
    task_dir = out_dir / task.name
    task_dir.mkdir(exist_ok=True)
    pred_file = task_dir / "predictions.jsonl"
    judged = _judged_entry(out_dir, task.name)
    covered = (task_data_options(out_dir, task.name), _answered(pred_file)) if judged else None
    started = time.perf_counter()
    generated = generate_task(task, docs, job.model, pred_file, job.model_id, job.image_root, model_fp=job.model_fp,
                              batch_size=job.batch_size, progress=bar, shard=job.shard)
    metrics = score_task(task, docs, pred_file, task_dir / "items.jsonl", job.allow_missing)
    entry = {"task": task.name, "version": task.version, "data": docs.source, "options": job.options,
             "primary_metric": task.primary_metric, "scored_locally": task.scored_locally, "metrics": metrics,
             "generated": generated, "seconds": round(time.perf_counter() - started, 2)}
    if judged:
        entry = _carry_judged(entry, judged, unchanged=covered == (job.options, _answered(pred_file)))
    write_json(task_dir / "metrics.json", entry)
    return entry


def _judged_entry(out_dir: Path, name: str) -> dict | None:
    """The task's stored entry when a judge scored it (now, or before its answers changed); None otherwise."""
    entry_file = out_dir / name / "metrics.json"
    entry = read_json(entry_file) if entry_file.is_file() else {}
    return entry if entry.get("judged") or entry.get("judged_stale") else None


def _answered(pred_file: Path) -> set:
    return set(read_predictions(pred_file)[0])


def _carry_judged(entry: dict, judged: dict, unchanged: bool) -> dict:
    """A judged task keeps the judge's numbers while they cover exactly its answers (same data options, no new
    answer); otherwise they are kept aside, marked stale, until `llava-eval judge` scores the task again."""
    if judged.get("judged") and unchanged:
        return judged
    stale = judged["metrics"] if judged.get("judged") else judged.get("stale_judged_metrics")
    return entry | {"judged_stale": True, "stale_judged_metrics": stale}


def _run_worker(job: Invocation, names: list[str], docs: dict, out_dir: Path) -> dict:
    """A rank other than 0: answer its share of every task, in step with rank 0 (which holds the lock)."""
    job.shard.barrier()  # rank 0 has locked the directory and written config.json
    for name in names:
        (out_dir / name).mkdir(exist_ok=True)
        generate_task(get_task(name), docs[name], job.model, out_dir / name / "predictions.jsonl", job.model_id,
                      job.image_root, model_fp=job.model_fp, batch_size=job.batch_size, shard=job.shard)
    return {}


def format_row(entry: dict) -> str:
    m = entry["metrics"]
    flags = [] if m.get("status") in (NO_SCOREABLE_ROWS, INCOMPLETE) else [f"{m[key]} {label}" for key, label in (
        ("n_missing", "missing"), ("n_errors", "image errors"), ("n_unanswered", "unanswered")) if m.get(key)]
    return (f"{entry['task']:18} {entry['primary_metric']:14} {_shown(entry):>34}  n={m.get('n_docs', 0)}"
            + (f"  ({', '.join(flags)})" if flags else ""))


def _shown(entry: dict) -> str:
    m = entry["metrics"]
    if m.get("status") == NO_SCOREABLE_ROWS:
        return f"no scoreable rows ({m.get('n_errors', 0)} image errors)"
    if m.get("status") == INCOMPLETE:
        return f"no score ({m['n_unanswered']} unanswered)"
    if entry.get("judged_stale"):
        return "needs re-judging (answers changed)"
    if not entry["scored_locally"] and not entry.get("judged"):
        return "n/a (server/judge)"
    value = m.get(entry["primary_metric"])
    if not isinstance(value, int | float) or math.isnan(value):
        return "no score (judging incomplete)" if entry.get("judged") else "nan"
    ci = m.get("ci95")
    return f"{value:.2f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "") + (
        " (judged)" if entry.get("judged") else "")
