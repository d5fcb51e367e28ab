"""Reading answer files for `llava-eval score`: the original LLaVA answer-file format (one JSON object
per line with `question_id` and `text`), checked against the task's doc ids; scoring a run's answers
when some docs were left unanswered (`score_answered`); and counting the empty and runaway answers a task
got (`answer_counts`).

Reference: haotian-liu/LLaVA `llava/eval/model_vqa_loader.py` (answer lines `question_id, prompt, text,
answer_id, model_id, metadata`).
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.base import Task, TaskError, iter_jsonl

# A runaway answer, which a greedy decoder that never meets EOS writes up to the token cap: one stretch of 1-40
# characters 4 or more times back to back, over 16 characters or more ("TriangleOOOOOOOOOOOOOOOO", "Triangle
# Triangle Triangle Triangle "). Short answers of the benchmarks never look like this.
REPEATED = re.compile(r"(.{1,40}?)\1{3,}", re.DOTALL)
RUNAWAY_CHARS = 16


def read_answer_file(path: Path, task: Task, docs) -> dict:
    """doc id -> raw text. Malformed lines, duplicate ids and ids that are not in the data are errors
    naming the line or id; docs without an answer are left out (the task counts them as missing)."""
    if not path.is_file():
        raise TaskError(f"predictions file not found: {path}")
    # Lines must be UTF-8 JSON objects with a question_id (str or int, as LLaVA writes them) and a text.
    rows = list(iter_jsonl(path, fields={"question_id": (str, int), "text": str}))
    # Original files whose question_id is not the doc id (MME: the image path, twice; ScienceQA: every
    # test problem, text-only ones included) are matched by the task itself.
    matched = task.match_answer_lines([row for _, row in rows], list(docs))
    if matched is not None:
        return matched
    by_key = {str(task.doc_id(doc, i)): task.doc_id(doc, i) for i, doc in enumerate(docs)}
    answers: dict = {}
    unknown = []
    for number, row in rows:
        key = str(row["question_id"])
        if key not in by_key:
            unknown.append(key)
            continue
        doc_id = by_key[key]
        if doc_id in answers:
            raise TaskError(f"{path}:{number}: duplicate prediction for question_id {row['question_id']!r}")
        answers[doc_id] = row["text"]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise TaskError(f"{path}: {len(unknown)} question_id(s) not in the data for {task.name}: {shown}")
    return answers


def score_answered(task: Task, docs: list[dict], texts: dict, unanswered: dict) -> tuple[dict, list[dict], list]:
    """(metrics, docs, items) over the docs the model answered or whose image failed (scored empty, as the
    original scripts do), leaving out the `unanswered` ones (a served model's failed requests): a request that
    got no answer says nothing about the model, so it is never scored as an empty answer. Doc ids are taken on
    the full list, so tasks whose ids are row positions keep them."""
    metrics, items = task.score(docs, texts)
    if not unanswered or task.needs_judge:
        return metrics, docs, items
    keep = [i for i, item in enumerate(items) if item.doc_id not in unanswered]
    docs, items = [docs[i] for i in keep], [items[i] for i in keep]
    metrics = task.aggregate(docs, items)
    metrics.update(n_docs=len(docs) + len(unanswered), n_scored=len(docs),
                   n_missing=sum(it.prediction is None for it in items))
    return metrics, docs, items


def answer_counts(texts) -> dict:
    """How many of the answers `texts` are empty (nothing but white space; scored as the original scripts score
    an empty answer, e.g. "yes" on POPE) and how many are degenerate (a runaway repetition, `is_degenerate`)."""
    texts = list(texts)
    return {"n_empty": sum(not text.strip() for text in texts),
            "n_degenerate": sum(is_degenerate(text) for text in texts)}


def is_degenerate(text: str) -> bool:
    """Whether the answer holds a runaway repetition (REPEATED over RUNAWAY_CHARS characters or more)."""
    return any(len(m.group(0)) >= RUNAWAY_CHARS for m in REPEATED.finditer(text))
