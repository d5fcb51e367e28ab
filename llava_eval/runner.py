"""Generate, then score: answers a run's tasks into its run directory (rundir.RunDir) and scores the answers.

A rerun into the same directory resumes: docs with a stored prediction are skipped when its fingerprints
(model, generation settings, the task's generation version, prompt, image) still hold, and the run is refused
when one does not. A scorer fix (`Task.scoring_version`) is in no fingerprint: the rerun keeps every answer
and rescores. A last line torn by a crash is repaired. Images that cannot be read become error lines for
their doc (id and reason), counted in the metrics and retried on the next rerun; they never stop the run. A
task whose every image failed reports `no_scoreable_rows` instead of a metric. Answers a model could not get
(`Unanswered`: a served request that failed after its retries) become `missing` lines, never scored and asked
again on the next rerun; a task with more of them than `--allow-missing` accepts reports `incomplete`.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from llava_types import Backend, Model, Unanswered
from tasks.base import Task, TaskError
from tasks.registry import get_task

from .data import Docs, load_docs, resolve_image
from .options import RunOptions
from .rundir import DATA_OPTIONS, INCOMPLETE, NO_SCOREABLE_ROWS, RunDir
from .runstate import (
    check_fingerprints,
    digest,
    environment,
    image_fingerprint,
    load_prediction_rows,
    settings_fingerprint,
)
from .shard import SINGLE, Shard
from .summary import format_row

IMAGE_CHECKS = 32  # stored predictions per task whose images are re-read and compared on resume
# What a resume adds to the config's `resumes` list: who ran it, and the options that may differ.
RESUME_KEYS = ("started", "command", "git_commit", "llava_eval", "batch_size", *DATA_OPTIONS)


@dataclass(frozen=True)
class Answerer:
    """The model a run answers with, and what the run records of it."""

    model: Model
    model_id: str  # written into every answer line and the config
    fingerprint: str | None = None  # the model fingerprint; None: a digest of model_id stands in
    device: dict | None = None  # device, dtype and device name, for the config

    @property
    def fp(self) -> str:
        return self.fingerprint or digest(self.model_id)


def build_requests(task: Task, docs: Docs, indices, data_root: Path | None):
    """Requests for the docs at `indices`; unreadable images become (doc id, reason) errors. Rows that name
    the same image (the same file, or equal bytes) share one decoded image: it is read, decoded and later
    hashed once for all the questions on it."""
    from llava_model.errors import ImageError
    from llava_model.preprocess import load_image

    decoded: dict = {}

    def load(value):
        source = resolve_image(value, data_root)
        if not isinstance(source, str | bytes):
            return load_image(source)
        if source not in decoded:
            decoded[source] = load_image(source)
        return decoded[source]

    requests, errors = [], []
    for index in indices:
        doc = docs[index]
        try:
            images = tuple(load(v) for v in task.image_values(doc))
        except (ImageError, TaskError) as exc:
            errors.append((task.doc_id(doc, index), str(exc)))
            continue
        requests.append(task.request(doc, index, images))
    return requests, errors


def prompt_fp(task: Task, doc: dict) -> str:
    """The task's text for the row and its image preprocessing (the image bytes have their own fingerprint)."""
    return digest(task.prompt(doc), task.image_mode)


def task_fingerprints(task: Task, model_fp: str) -> dict:
    """What every answer of the task depends on: the model, the generation settings and the task's generation
    version (not its scoring version: rescoring needs no new answer)."""
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


def merge_rank_files(run: RunDir, name: str) -> int:
    """Append the answers of the task's rank files that its answer file lacks, in doc-id order of the rank
    files, then delete them; returns how many lines were added."""
    rank_files = run.rank_predictions(name)
    if not rank_files:
        return 0
    have = run.prediction_rows(name, repair=True)
    added = []
    for f in rank_files:
        for doc_id, row in load_prediction_rows(f, repair=True).items():
            if "text" in row and "text" not in have.get(doc_id, {}) or doc_id not in have:
                have[doc_id] = row
                added.append(row)
    out = run.appender(name)
    try:
        out.write(added)
    finally:
        out.close()
    for f in rank_files:
        f.unlink()
    return len(added)


def generate_task(task: Task, docs: Docs, answerer: Answerer, options: RunOptions, *, shard: Shard = SINGLE,
                  progress=None) -> int:
    """Answer this shard's docs of `task` that have no stored answer; returns how many were unanswered."""
    run = RunDir(options.out)
    expected = task_fingerprints(task, answerer.fp)
    if shard.main:
        merge_rank_files(run, task.name)  # answers of an interrupted data-parallel run
    shard.barrier()
    rows = run.prediction_rows(task.name, repair=shard.main)
    light = docs.without_images(task)
    _check_stored(task, docs, light, run.predictions(task.name), rows, expected, options.image_root)
    missing = [i for i in range(len(light)) if "text" not in rows.get(task.doc_id(light[i], i), {})]
    todo = shard.block(missing)
    if progress is not None:
        progress.reset(total=len(light))
        progress.update(len(light) - len(todo))
    out = run.appender(task.name, shard.rank if shard.world > 1 else None)
    step = answerer.model.chunk_size if isinstance(answerer.model, Backend) else options.batch_size
    chunks = [todo[start:start + step] for start in range(0, len(todo), step)]
    # The next chunk's images are read and decoded in a background thread while the model answers this one.
    prefetch = ThreadPoolExecutor(max_workers=1)
    built: deque = deque()  # (chunk, requests, errors) handed to the model, oldest first

    def request_chunks():
        pending = prefetch.submit(build_requests, task, docs, chunks[0], options.image_root) if chunks else None
        for number, chunk in enumerate(chunks):
            requests, errors = pending.result()
            if number + 1 < len(chunks):
                pending = prefetch.submit(build_requests, task, docs, chunks[number + 1], options.image_root)
            built.append((chunk, requests, errors))
            yield requests

    try:
        with closing(answer_chunks(answerer.model, request_chunks())) as answers:
            for texts in answers:
                chunk, requests, errors = built.popleft()
                out.write(answer_lines(task, light, answerer, expected, chunk, requests, texts, errors))
                if progress is not None:
                    progress.update(len(chunk))
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
        out.close()
    shard.barrier()
    if shard.main and shard.world > 1:
        merge_rank_files(run, task.name)
    return len(missing)


def answer_chunks(model: Model, request_chunks: Iterator[list]) -> Iterator[list]:
    """The model's answers to each chunk of requests, in order. A backend with `generate_stream` (served) gets
    the chunks as a stream and keeps working on the next while this one's answers are written; a crash then
    loses at most two chunks, asked again on the rerun."""
    stream = getattr(model, "generate_stream", None)
    if stream is not None:
        yield from stream(request_chunks)
        return
    for requests in request_chunks:
        yield model.generate(requests) if requests else []


def answer_lines(task: Task, light: Docs, answerer: Answerer, expected: dict, chunk: list, requests: list,
                 texts: list, errors: list) -> list[dict]:
    """The answer file's lines for one chunk: answers with their fingerprints, missing answers, image errors."""
    index_of = {task.doc_id(light[i], i): i for i in chunk}
    image_fps: dict = {}  # the questions on one image share its decoded object: hashed once
    lines = []
    for request, text in zip(requests, texts, strict=True):
        if isinstance(text, Unanswered):  # never an empty answer: asked again on the next run
            lines.append({"question_id": request.doc_id, "missing": text.reason, "task": task.name})
            continue
        images = tuple(id(image) for image in request.images)
        if images not in image_fps:
            image_fps[images] = image_fingerprint(request.images)
        fp = dict(expected, prompt=prompt_fp(task, light[index_of[request.doc_id]]), image=image_fps[images])
        lines.append({"question_id": request.doc_id, "prompt": request.messages[-1].text, "text": text,
                      "model_id": answerer.model_id, "task": task.name, "task_version": task.version, "fp": fp})
    return lines + [{"question_id": d, "error": e, "task": task.name} for d, e in errors]


def score_task(task: Task, rows: list[dict], run: RunDir, allow_missing: float = 0.0) -> dict:
    """Metrics of the task's stored answers on `rows` (without images), with a bootstrap interval of the
    primary metric; the per-doc items are written to the run. A task none of whose docs has an answer (every
    image failed) gets no metric: scoring empty answers would print a number that measures nothing. Nor does a
    task whose unanswered docs (a served model's failed requests) exceed the `allow_missing` share; within it,
    they are left out."""
    from .scoring import answer_counts, score_answered
    from .stats import bootstrap_ci

    texts, errors = run.answers(task.name)
    ids = [task.doc_id(doc, i) for i, doc in enumerate(rows)]
    stored = run.unanswered(task.name)
    unanswered = {d: stored[d] for d in ids if d in stored}
    incomplete = len(unanswered) > allow_missing * len(rows)
    if incomplete or not any(d in texts for d in ids):
        run.drop_items(task.name)  # items of an earlier scoring no longer describe this task
        return {"status": INCOMPLETE if incomplete else NO_SCOREABLE_ROWS, "n_docs": len(rows),
                "n_missing": sum(d not in texts for d in ids), **_error_fields(errors),
                **_unanswered_fields(unanswered)}
    metrics, rows, items = score_answered(task, rows, texts, unanswered)
    metrics.update(_error_fields(errors), **_unanswered_fields(unanswered),
                   **answer_counts(texts[d] for d in ids if d in texts and d not in unanswered))
    value = metrics.get(task.primary_metric)
    ci = bootstrap_ci(task, rows, items, point=value if isinstance(value, int | float) else None)
    if ci is not None:
        metrics["ci95"] = ci
    chance = task.chance(rows) if task.scores_locally(rows) and not task.needs_judge else None
    if chance is not None:
        metrics["chance"] = chance  # the primary metric of a trivial answerer on the same rows
    run.write_items(task.name, task, rows, items)
    return metrics


def _error_fields(errors: dict) -> dict:
    return {"n_errors": len(errors), **({"errors": dict(list(errors.items())[:20])} if errors else {})}


def _unanswered_fields(unanswered: dict) -> dict:
    return {"n_unanswered": len(unanswered), "unanswered": dict(list(unanswered.items())[:20])} if unanswered else {}


def run_config(answerer: Answerer, options: RunOptions) -> dict:
    """The config a run starts with: model, task versions, data options, batch size and the environment."""
    return {"model": answerer.model_id, "model_fingerprint": answerer.fingerprint,
            "tasks": {n: get_task(n).version for n in options.tasks}, **options.data_options,
            "batch_size": options.batch_size, **environment(answerer.device)}


def load_task_docs(options: RunOptions) -> dict[str, Docs]:
    """Every task's rows, loaded and schema-checked up front: bad data stops a run before a model is loaded
    or anything is written."""
    return {name: load_docs(get_task(name), options.data, data_root=options.data_root, limit=options.limit)
            for name in options.tasks}


def run(model: Model, names: list[str], out_dir, *, model_id: str, model_fp: str | None = None, echo=print,
        **options) -> dict:
    """`evaluate` for scripts and tests: run `names` into `out_dir` with `model`; `options` are the other
    RunOptions fields (data, data_root, limit, batch_size, progress)."""
    return evaluate(Answerer(model, model_id, model_fp), RunOptions(tasks=tuple(names), out=Path(out_dir), **options),
                    echo=echo)


def evaluate(answerer: Answerer, options: RunOptions, *, echo=print, shard: Shard = SINGLE,
             docs: dict[str, Docs] | None = None) -> dict:
    """Run `options.tasks` into `options.out` (resuming what is there); returns every finished task's entry.
    `docs` are the tasks' rows when already loaded (load_task_docs). Under torchrun every rank calls this with
    its `shard`; rank 0 alone locks, scores and writes metrics."""
    docs = load_task_docs(options) if docs is None else docs
    run = RunDir(options.out)
    options.out.mkdir(parents=True, exist_ok=True)
    if not shard.main:
        return _run_worker(answerer, options, docs, shard)
    with run.lock():
        first = run.record_invocation(run_config(answerer, options) | {"world_size": shard.world}, RESUME_KEYS)
        shard.barrier()
        try:
            return _run_tasks(answerer, options, docs, echo, shard)
        except Exception:  # not KeyboardInterrupt: an interrupted first call is resumed with --resume
            # A first call that answered nothing leaves no record of options that never ran.
            if first and not run.has_answers():
                run.forget_invocation()
            raise


def _run_tasks(answerer: Answerer, options: RunOptions, docs: dict, echo, shard: Shard) -> dict:
    from tqdm.auto import tqdm

    run = RunDir(options.out)
    results = run.results()
    disable = None if options.progress is None else not options.progress
    # One bar (questions of the current task, its place in the suite in the description): nested bars move the
    # cursor up with ESC[A, which leaves stray lines on terminals that wrap or do not honour it.
    bar = tqdm(total=0, unit="q", disable=disable, leave=False, dynamic_ncols=True)
    try:
        for number, name in enumerate(options.tasks, 1):
            bar.set_description(f"{name} ({number}/{len(options.tasks)})" if len(options.tasks) > 1 else name)
            results = run.record(name, _run_task(answerer, options, get_task(name), docs[name], bar, shard))
            (tqdm.write if not bar.disable else echo)(format_row(results[name]))
    finally:
        bar.close()
    return results


def _run_task(answerer: Answerer, options: RunOptions, task: Task, docs: Docs, bar, shard: Shard) -> dict:
    """Generate and score one task; returns its metrics entry (which the caller records at once)."""
    run = RunDir(options.out)
    run.task_dir(task.name).mkdir(exist_ok=True)
    judged = _judged_entry(run, task.name)
    covered = (run.task_data_options(task.name), _answered(run, task.name)) if judged else None
    started = time.perf_counter()
    generated = generate_task(task, docs, answerer, options, shard=shard, progress=bar)
    rows = list(docs.without_images(task))
    metrics = score_task(task, rows, run, options.judge.allow_missing)
    entry = {"task": task.name, "version": task.version, "scoring_version": task.scoring_version,
             "data": docs.source, "options": options.data_options, "primary_metric": task.primary_metric,
             "scored_locally": task.scores_locally(rows), "metrics": metrics, "generated": generated,
             "seconds": round(time.perf_counter() - started, 2)}
    if metrics.get("n_unanswered"):
        entry["allow_missing"] = options.judge.allow_missing  # what rescoring accepts too
    if judged:
        entry = _carry_judged(entry, judged, unchanged=covered == (options.data_options, _answered(run, task.name)))
    return entry


def _judged_entry(run: RunDir, name: str) -> dict | None:
    """The task's stored entry when a judge scored it (now, or before its answers changed); None otherwise."""
    entry = run.entry(name) or {}
    return entry if entry.get("judged") or entry.get("judged_stale") else None


def _answered(run: RunDir, name: str) -> set:
    return set(run.answers(name)[0])


def _carry_judged(entry: dict, judged: dict, unchanged: bool) -> dict:
    """A judged task keeps the judge's numbers while they cover exactly its answers (same data options, no new
    answer); otherwise they are kept aside, marked stale, until `llava-eval judge` scores the task again."""
    if judged.get("judged") and unchanged:
        return judged
    stale = judged["metrics"] if judged.get("judged") else judged.get("stale_judged_metrics")
    return entry | {"judged_stale": True, "stale_judged_metrics": stale}


def _run_worker(answerer: Answerer, options: RunOptions, docs: dict, shard: Shard) -> dict:
    """A rank other than 0: answer its share of every task, in step with rank 0 (which holds the lock)."""
    shard.barrier()  # rank 0 has locked the directory and written the config
    for name in options.tasks:
        generate_task(get_task(name), docs[name], answerer, options, shard=shard)
    return {}
