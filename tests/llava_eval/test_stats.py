"""Bootstrap intervals and paired tests on known cases."""

from __future__ import annotations

import random

import numpy as np
import pytest

from llava_eval import stats
from tasks.base import Item
from tasks.registry import get_task


def _scored(name, n, answer_of):
    task = get_task(name)
    docs = task.synthetic_docs(n)
    preds = {task.doc_id(d, i): answer_of(i, d) for i, d in enumerate(docs)}
    _, items = task.score(docs, preds)
    return task, docs, items


def test_item_mean_fast_path_equals_the_generic_path(monkeypatch):
    task, docs, items = _scored("scienceqa_img", 60, lambda i, d: "A" if i % 3 else "B")
    point = stats._metric(task, docs, items)
    fast = stats._replicates(task, docs, items, 200, 3, point)
    monkeypatch.setattr(stats, "_is_item_mean", lambda *a: False)
    slow = stats._replicates(task, docs, items, 200, 3, point)
    assert np.allclose(fast, slow)


def test_interval_narrows_with_more_items_and_is_seeded():
    rng = random.Random(0)
    widths = []
    for n in (40, 400):
        task, docs, items = _scored("scienceqa_img", n, lambda i, d: rng.choice("AB"))
        ci = stats.bootstrap_ci(task, docs, items)
        assert ci == stats.bootstrap_ci(task, docs, items)
        widths.append(ci["high"] - ci["low"])
    assert widths[1] < widths[0] / 2


def test_mmbench_resamples_whole_circular_groups():
    task, docs, items = _scored("mmbench_en_dev", 80, lambda i, d: "A")
    units, _ = stats._units(task, docs)
    from tasks.mmbench import base_index

    assert all(len({base_index(docs[i]) for i in u}) == 1 for u in units)
    assert sum(len(u) for u in units) == len(docs) and any(len(u) > 1 for u in units)


def test_repeated_mme_pairs_stay_separate_pairs():
    task, docs, items = _scored("mme", 28, lambda i, d: "Yes")
    # Two copies of the same image pair, both half right: acc+ must be 0 for both, not pooled into one group.
    pair = [d for d in docs if d["question_id"] == docs[0]["question_id"] and d["category"] == docs[0]["category"]]
    assert len(pair) == 2
    copies = [{**d, "_copy": k} for k in (0, 1) for d in pair]
    its = [Item(i, "Yes", "yes", s) for i, s in enumerate([1.0, 0.0, 1.0, 0.0])]
    sub = task.aggregate(copies, its)["subtasks"][pair[0]["category"]]
    assert sub["acc_plus"] == 0.0 and sub["acc"] == 50.0


def test_stratified_draws_keep_every_category():
    task, docs, items = _scored("pope", 60, lambda i, d: "yes")
    units, strata = stats._units(task, docs)
    draws = stats._draws(strata, 50, 0)
    for draw in draws:
        assert {strata[u] for u in draw} == {"adversarial", "popular", "random"}


def test_paired_test_on_identical_runs_is_null():
    task, docs, items = _scored("scienceqa_img", 50, lambda i, d: "A")
    out = stats.paired_bootstrap(task, docs, items, items)
    assert out["diff"] == 0 and out["low"] == out["high"] == 0 and out["p_bootstrap"] == 1.0
    assert stats.mcnemar(items, items) == {"a_only_right": 0, "b_only_right": 0, "p_mcnemar": 1.0}


def test_paired_test_detects_a_real_difference():
    gold = get_task("scienceqa_img").synthetic_docs(300)
    task = get_task("scienceqa_img")
    letters = "ABCDE"
    right = {task.doc_id(d, i): letters[d["answer"]] for i, d in enumerate(gold)}
    wrong = {k: ("B" if v == "A" else "A") for k, v in right.items()}
    preds_a = {k: (right[k] if i % 2 else wrong[k]) for i, k in enumerate(right)}  # 50%
    preds_b = {k: (right[k] if i % 10 else wrong[k]) for i, k in enumerate(right)}  # 90%
    _, items_a = task.score(gold, preds_a)
    _, items_b = task.score(gold, preds_b)
    out = stats.paired_bootstrap(task, gold, items_a, items_b)
    assert out["diff"] == pytest.approx(40.0, abs=0.5) and out["low"] > 30 and out["p_bootstrap"] < 0.01
    mc = stats.mcnemar(items_a, items_b)
    assert mc["a_only_right"] == 0 and mc["b_only_right"] == 120 and mc["p_mcnemar"] < 1e-10


def test_mcnemar_matches_the_exact_binomial():
    a = [Item(i, "", "", s) for i, s in enumerate([1] * 1 + [0] * 8 + [1] * 5)]
    b = [Item(i, "", "", s) for i, s in enumerate([0] * 1 + [1] * 8 + [1] * 5)]
    out = stats.mcnemar(a, b)
    # two-sided exact binomial, 8 of 9 discordant pairs: 2 * (C(9,8) + C(9,9)) / 2^9
    assert out["p_mcnemar"] == pytest.approx(2 * (9 + 1) / 512)


def test_mcnemar_does_not_apply_to_partial_scores():
    a = [Item(0, "", "", 0.3), Item(1, "", "", 1.0)]
    assert stats.mcnemar(a, a) is None


def test_no_interval_without_scores():
    task = get_task("llava_bench")
    docs = task.synthetic_docs(5)
    metrics, items = task.score(docs, {})
    assert stats.bootstrap_ci(task, docs, items) is None


def test_compare_includes_a_test_split_whose_rows_carry_answers(tmp_path):
    """MMBench's test rows with their public answers are scored here, so two runs of them are compared too
    (the decision follows the rows, not a flag left on some task object)."""
    from click.testing import CliRunner

    from llava_eval.cli import main

    for out in ("a", "b"):
        result = CliRunner().invoke(main, ["run", "--model", "tiny", "--tasks", "mmbench_en_test", "--limit", "4",
                                           "--out", str(tmp_path / out), "--no-progress"])
        assert result.exit_code == 0, result.output
    rows = stats.compare_runs(tmp_path / "a", tmp_path / "b")
    assert [r["task"] for r in rows] == ["mmbench_en_test"] and rows[0]["diff"] == 0.0
