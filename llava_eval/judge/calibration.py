"""How far a substitute judge is from the protocol's own: agreement between two sets of verdicts on the same
answers (headline offset with a paired bootstrap interval, per-category offsets, per-answer correlation, exact
agreement), and the calibration file that `llava-eval judge calibrate` writes and a judge config names
(`calibrations:`) so that every number that judge produces carries its offset.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from llava_types import UserError

CALIBRATION = "calibration.json"
KIND = "llava-eval judge calibration"
N_BOOT, SEED = 1000, 0


class CalibrationError(UserError):
    """A calibration file a judge config names is missing or not one."""


def agreement(task, docs: list[dict], reference: list[list], ours: list[list], n_boot: int = N_BOOT,
              seed: int = SEED) -> dict:
    """Our verdicts against the reference ones on the same docs (verdicts[i][r]: doc i, judging run r; the two
    sides may have different run counts). The headline is the task's primary metric from its own `aggregate`;
    offsets are ours minus the reference; the interval resamples docs (paired, seeded)."""
    protocol, metric = task.judge, task.primary_metric

    def headline(picked, verdicts) -> float:
        value = protocol.aggregate([docs[i] for i in picked], [verdicts[i] for i in picked]).get(metric)
        return math.nan if value is None else float(value)

    everything = list(range(len(docs)))
    draws = np.random.default_rng(seed).integers(0, len(docs), size=(n_boot, len(docs)))
    offsets = np.array([headline(d, ours) - headline(d, reference) for d in draws])
    low, high = np.nanpercentile(offsets, [2.5, 97.5]).tolist()
    top = {"metric": metric, "n": len(docs)} | _offset(headline(everything, ours), headline(everything, reference))
    groups: dict[str, list[int]] = {}
    for i, doc in enumerate(docs):
        for group in protocol.released.groups(doc):
            groups.setdefault(group, []).append(i)
    return {"headline": top | {"ci95": [round(low, 3), round(high, 3)], "n_boot": n_boot},
            "categories": {g: {"n": len(picked)} | _offset(headline(picked, ours), headline(picked, reference))
                           for g, picked in sorted(groups.items())},
            "per_answer": _per_answer(protocol.released.item_score, reference, ours)}


def _offset(ours: float, reference: float) -> dict:
    return {"ours": round(ours, 3), "reference": round(reference, 3), "offset": round(ours - reference, 3)}


def _per_answer(item_score, reference: list[list], ours: list[list]) -> dict:
    """Pearson r of the per-answer scores (mean over each side's runs), their mean absolute difference, and the
    share of verdicts that are equal run by run (over the runs both sides have)."""
    x = np.array([np.mean([item_score(v) for v in runs]) for runs in reference])
    y = np.array([np.mean([item_score(v) for v in runs]) for runs in ours])
    pearson = float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else None
    pairs = [(a, b) for ref, our in zip(reference, ours, strict=True) for a, b in zip(ref, our, strict=False)]
    return {"pearson": None if pearson is None else round(pearson, 4),
            "mean_abs_item_difference": round(float(np.abs(x - y).mean()), 4) if len(x) else None,
            "exact_agreement": round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None,
            "n_verdict_pairs": len(pairs)}


def read_calibration(path: Path) -> dict:
    """A calibration file, checked: what it calibrates (task, judge model) and its headline offset."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"judge calibration not found: {path} (write one with `llava-eval judge "
                               "calibrate`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"judge calibration {path}: not readable JSON ({exc})") from None
    headline = value.get("headline") if isinstance(value, dict) else None
    if not (isinstance(value, dict) and value.get("kind") == KIND and isinstance(value.get("task"), str)
            and isinstance(value.get("judge_model"), str) and isinstance(headline, dict)
            and _number(headline.get("offset")) and isinstance(headline.get("ci95"), list)):
        raise CalibrationError(f"judge calibration {path}: not a calibration file of `llava-eval judge calibrate` "
                               "(kind, task, judge_model and headline offset expected)")
    return value


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def find_calibration(paths, task: str, model: str) -> dict | None:
    """What judged metrics record of the first named calibration of `model` judging `task`, or None."""
    for path in paths:
        value = read_calibration(Path(path))
        if value["task"] == task and value["judge_model"] == model:
            headline = value["headline"]
            return {"file": str(path), "reference_model": value.get("reference", {}).get("model"),
                    "metric": headline.get("metric"), "offset": headline["offset"], "ci95": headline["ci95"],
                    "n": headline.get("n")}
    return None
