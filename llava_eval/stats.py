"""Uncertainty of every locally scored metric, and paired comparisons of two runs.

Intervals are percentile bootstraps (seeded, so a rerun prints the same interval) over the task's
resampling unit: one doc, or for MMBench all circular copies of a question and for MME the two
questions of an image, because those metrics score the group, not the row. Units are drawn within
strata where the metric combines splits (POPE's three categories, MME's subtasks), so every draw
holds every split. A draw that repeats a unit gets a fresh copy number (`_copy`), so the task's own
aggregate sees the repeats as distinct groups. When a task's primary metric is the mean item score,
the resampling runs vectorised in numpy; otherwise every draw calls the task's aggregate.
"""

from __future__ import annotations

import math

import numpy as np

N_BOOT = 1000
SEED = 0
COPY_KEY = "_copy"


def _units(task, docs: list[dict]) -> tuple[list[list[int]], list]:
    """Doc positions grouped by the task's resampling unit (first-seen order), and each unit's stratum."""
    groups: dict = {}
    strata: dict = {}
    for index, doc in enumerate(docs):
        key = task.bootstrap_unit(doc, index)
        groups.setdefault(key, []).append(index)
        strata.setdefault(key, task.bootstrap_stratum(doc))
    return list(groups.values()), [strata[k] for k in groups]


def _metric(task, docs, items) -> float:
    value = task.aggregate(docs, items).get(task.primary_metric)
    return math.nan if value is None else float(value)


def _is_item_mean(point: float, items) -> bool:
    """Whether the metric's value `point` is the mean item score x 100 (then resampling can run vectorised)."""
    scores = [it.score for it in items if it.score is not None]
    if not scores:
        return False
    return math.isclose(point, 100.0 * sum(scores) / len(scores), rel_tol=1e-9, abs_tol=1e-9)


def _draws(strata: list, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_units] unit indices: each stratum's units are drawn with replacement from that stratum
    (a metric that sums or averages per-split scores keeps every split in every draw)."""
    rng = np.random.default_rng(seed)
    members: dict = {}
    for unit, stratum in enumerate(strata):
        members.setdefault(stratum, []).append(unit)
    parts = [np.asarray(m)[rng.integers(0, len(m), size=(n_boot, len(m)))] for m in members.values()]
    return np.concatenate(parts, axis=1)


def _resampled(task, docs, items, units, draw) -> tuple[list, list]:
    rdocs, ritems = [], []
    for copy, u in enumerate(draw):
        for i in units[u]:
            rdocs.append({**docs[i], COPY_KEY: copy})
            ritems.append(items[i])
    return rdocs, ritems


def _replicates(task, docs, items, n_boot: int, seed: int, point: float) -> np.ndarray:
    """The primary metric on `n_boot` resamples of the units (`point`: its value on all of them)."""
    units, strata = _units(task, docs)
    draws = _draws(strata, n_boot, seed)
    if _is_item_mean(point, items) and all(len(u) == 1 for u in units):
        scores = np.array([np.nan if it.score is None else it.score for it in items], dtype=float)
        picked = scores[draws]
        return 100.0 * np.nanmean(picked, axis=1)
    return np.array([_metric(task, *_resampled(task, docs, items, units, d)) for d in draws])


def bootstrap_ci(task, docs: list[dict], items: list, n_boot: int = N_BOOT, seed: int = SEED,
                 point: float | None = None) -> dict | None:
    """95% percentile interval of the task's primary metric (`point`: its value when already computed);
    None when there is nothing to resample."""
    if not docs or task.needs_judge or not task.scores_locally(docs):
        return None
    point = _metric(task, docs, items) if point is None else float(point)
    if math.isnan(point):
        return None
    reps = _replicates(task, docs, items, n_boot, seed, point)
    reps = reps[~np.isnan(reps)]
    if reps.size == 0:
        return None
    low, high = np.percentile(reps, [2.5, 97.5])
    return {"metric": task.primary_metric, "low": float(low), "high": float(high), "n_boot": n_boot, "seed": seed,
            "unit": task.bootstrap_unit_name, "point_in_interval": bool(low <= point <= high)}


def paired_bootstrap(task, docs: list[dict], items_a: list, items_b: list, n_boot: int = N_BOOT,
                     seed: int = SEED) -> dict:
    """Difference B - A of the primary metric on the same docs, with a 95% interval and a two-sided
    bootstrap p-value (twice the share of resampled differences on the other side of zero). Both runs
    are resampled with the same draws, which is what makes the test paired."""
    units, strata = _units(task, docs)
    draws = _draws(strata, n_boot, seed)
    a, b = _metric(task, docs, items_a), _metric(task, docs, items_b)
    fast = _is_item_mean(a, items_a) and _is_item_mean(b, items_b) and all(len(u) == 1 for u in units)
    if fast:
        sa = np.array([np.nan if it.score is None else it.score for it in items_a], dtype=float)
        sb = np.array([np.nan if it.score is None else it.score for it in items_b], dtype=float)
        diffs = 100.0 * (np.nanmean(sb[draws], axis=1) - np.nanmean(sa[draws], axis=1))
    else:
        diffs = np.array([_metric(task, *_resampled(task, docs, items_b, units, d))
                          - _metric(task, *_resampled(task, docs, items_a, units, d)) for d in draws])
    diffs = diffs[~np.isnan(diffs)]
    diff = b - a
    if diffs.size == 0 or math.isnan(diff):
        return {"a": a, "b": b, "diff": diff, "low": math.nan, "high": math.nan, "p_bootstrap": math.nan}
    low, high = np.percentile(diffs, [2.5, 97.5])
    # Share of the bootstrap distribution, re-centred on zero, at least as far out as the observed difference.
    centred = diffs - diffs.mean()
    p = float(np.mean(np.abs(centred) >= abs(diff)))
    return {"a": a, "b": b, "diff": diff, "low": float(low), "high": float(high), "p_bootstrap": p}


def mcnemar(items_a: list, items_b: list) -> dict | None:
    """Exact McNemar test on right/wrong items (scores 0 or 1 in both runs); None when any score is
    partial (VQA's 0.3 steps), where the test does not apply."""
    from scipy.stats import binomtest

    pairs = [(x.score, y.score) for x, y in zip(items_a, items_b, strict=True)
             if x.score is not None and y.score is not None]
    if not pairs or any(s not in (0, 1, 0.0, 1.0) for p in pairs for s in p):
        return None
    only_a = sum(1 for x, y in pairs if x == 1 and y == 0)
    only_b = sum(1 for x, y in pairs if x == 0 and y == 1)
    n = only_a + only_b
    p = 1.0 if n == 0 else binomtest(only_b, n, 0.5).pvalue
    return {"a_only_right": only_a, "b_only_right": only_b, "p_mcnemar": float(p)}


def significance_label(p: float, alpha: float = 0.05) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "significant" if p < alpha else "not significant"



def compare_runs(run_a, run_b, names: list[str] | None = None, n_boot: int = N_BOOT, seed: int = SEED) -> list[dict]:
    """Per task finished in both runs: the primary metric of each on the docs both answered, the
    difference with its paired-bootstrap interval and p-value, and McNemar where scores are right/wrong."""

    from tasks.base import TaskError

    from .rundir import RunDir

    run_a, run_b = RunDir(run_a), RunDir(run_b)
    in_b = set(run_b.finished_tasks())
    shared = [t for t in run_a.finished_tasks() if t in in_b]
    if names:
        missing = [n for n in names if n not in shared]
        if missing:
            raise TaskError(f"not finished in both runs: {', '.join(missing)}")
        shared = names
    rows = []
    for name in shared:
        task, docs = run_a.run_docs(name)
        if not task.scores_locally(docs) or task.needs_judge:
            continue
        texts_a, _ = run_a.answers(name)
        texts_b, _ = run_b.answers(name)
        if task.doc_id_column is None:  # ids are row positions: a subset would renumber them
            both = docs
        else:
            both = [d for i, d in enumerate(docs) if task.doc_id(d, i) in texts_a and task.doc_id(d, i) in texts_b]
        if not both:
            continue
        _, items_a = task.score(both, texts_a)
        _, items_b = task.score(both, texts_b)
        row = {"task": name, "metric": task.primary_metric, "n_shared": len(both)}
        row.update(paired_bootstrap(task, both, items_a, items_b, n_boot, seed))
        row.update(mcnemar(items_a, items_b) or {})
        # McNemar tests the share of right answers: it decides only where that share is the metric (not for
        # POPE's F1 or MMBench's circular accuracy, where the paired bootstrap of the metric itself does).
        item_mean = _is_item_mean(row["a"], items_a) and _is_item_mean(row["b"], items_b)
        p = row["p_mcnemar"] if item_mean and "p_mcnemar" in row else row["p_bootstrap"]
        row["test"] = "mcnemar" if item_mean and "p_mcnemar" in row else "paired bootstrap"
        row["verdict"] = significance_label(p)
        rows.append(row)
    return rows
