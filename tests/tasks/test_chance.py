"""Chance levels (`Task.chance`): the primary metric a trivial answerer gets on the rows evaluated, scored by the
task's own parser, scorer and aggregate. Each case is a handful of handmade rows whose chance is worked out by
hand: a constant answer for yes/no (POPE, MME) and VQA-style tasks (the most common gold answer), the expected
score of a uniformly random option letter for multiple choice (MMBench: CircularEval over the copies)."""

from __future__ import annotations

import pytest

from tasks.registry import get_task


def chance(name, docs):
    return get_task(name).chance(docs)


def pope_row(qid, answer, category="random"):
    return {"question_id": qid, "question": "Is there a red circle?", "answer": answer, "category": category}


def test_pope_chance_is_always_yes_scored_as_f1():
    # Always "yes" on 2 yes / 2 no: precision 1/2, recall 1, F1 2/3; always "no" has F1 0.
    docs = [pope_row(i, a) for i, a in enumerate(["yes", "no", "yes", "no"])]
    assert chance("pope", docs) == {"value": pytest.approx(200 / 3), "answerer": 'always "Yes"'}


def test_pope_chance_follows_the_rows_share_of_yes():
    # 3 yes / 1 no: precision 3/4, recall 1, F1 6/7; per split, then averaged like the metric.
    docs = [pope_row(i, a) for i, a in enumerate(["yes", "yes", "yes", "no"])]
    docs += [pope_row(10 + i, a, "popular") for i, a in enumerate(["yes", "no"])]
    assert chance("pope", docs)["value"] == pytest.approx(100 * (6 / 7 + 2 / 3) / 2)


def mme_pair(category, image, answers=("Yes", "No")):
    return [{"question_id": f"{category}/{image}.png", "question": f"{q} Please answer yes or no.", "answer": a,
             "category": category} for q, a in zip(("Is there a circle?", "Is there a square?"), answers, strict=True)]


def test_mme_chance_on_yes_no_pairs_is_a_fair_coin():
    # A constant answer: acc 50, acc+ 0 (never both right) = 50 per subtask. A coin: acc 50, acc+ 25 = 75.
    docs = mme_pair("existence", 1) + mme_pair("existence", 2) + mme_pair("count", 1)
    assert chance("mme", docs) == {"value": pytest.approx(150.0),
                                   "answerer": 'a fair coin, "Yes" or "No" (expected score)'}
    assert get_task("mme").constant_chance(docs, ["Yes"])["value"] == pytest.approx(100.0)


def test_mme_chance_on_rows_that_are_all_yes_is_always_yes():
    # Always "Yes": acc 100 + acc+ 100 per subtask beats the coin's 75; cognition subtasks are not perception.
    docs = mme_pair("existence", 1, ("Yes", "Yes")) + mme_pair("code_reasoning", 1, ("Yes", "Yes"))
    assert chance("mme", docs) == {"value": pytest.approx(200.0), "answerer": 'always "Yes"'}


def test_scienceqa_chance_is_one_over_the_options_of_each_row():
    docs = [{"question": "Q?", "choices": ["a", "b"], "answer": 1},
            {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 0}]
    assert chance("scienceqa_img", docs) == {"value": pytest.approx(100 * (1 / 2 + 1 / 4) / 2),
                                             "answerer": "a uniformly random option letter (expected score)"}


def seed_row(qid, answer, data_type="image"):
    return {"question_id": qid, "question": "Q?", "choice_a": "a", "choice_b": "b", "choice_c": "c",
            "choice_d": "d", "answer": answer, "data_type": data_type, "question_type_id": 1}


def test_seed_chance_is_a_quarter_on_the_rows_the_task_keeps():
    docs = [seed_row("1", "A"), seed_row("2", "D"), seed_row("3", "B", "video")]
    assert chance("seed_image", docs)["value"] == pytest.approx(25.0)


def mmbench_row(index, answer, n_options):
    options = dict(zip("ABCD", ["w", "x", "y", "z"][:n_options], strict=False))
    return {"index": index, "question": "Q?", "answer": answer, **{k: options.get(k) for k in "ABCD"}}


def test_mmbench_chance_is_the_chance_that_every_circular_copy_is_right():
    # Question 1: 2 options, 2 copies: (1/2)^2. Question 2: 4 options, 4 copies: (1/4)^4.
    docs = [mmbench_row(1, "A", 2), mmbench_row(1_000_001, "B", 2)]
    docs += [mmbench_row(2 + k * 1_000_000, "ABCD"[k], 4) for k in range(4)]
    assert chance("mmbench_en_dev", docs)["value"] == pytest.approx(100 * (1 / 4 + 1 / 256) / 2)


def vqav2_row(qid, answer):
    return {"question_id": qid, "question": "Q?", "answers": [{"answer": answer, "answer_id": i} for i in range(10)],
            "multiple_choice_answer": answer, "answer_type": "other"}


def test_vqa_chance_is_the_most_common_gold_answer_as_a_constant():
    docs = [vqav2_row(1, "2"), vqav2_row(2, "red"), vqav2_row(3, "2")]
    assert chance("vqav2_val", docs) == {"value": pytest.approx(200 / 3),
                                         "answerer": 'always "2" (the most common answer)'}


def test_gqa_chance_is_the_most_common_gold_answer_as_a_constant():
    docs = [{"id": str(i), "question": "Q?", "answer": a} for i, a in enumerate(["no", "yes", "no", "left"])]
    assert chance("gqa", docs)["value"] == pytest.approx(50.0)


def test_rows_without_gold_answers_have_no_chance_level():
    docs = [{"question_id": 1, "question": "Q?", "answers": [], "answer_type": "other"}]
    assert chance("vqav2_testdev", docs) is None


def test_a_task_without_a_trivial_answerer_declares_none():
    assert get_task("llava_bench").chance([{"question_id": 0}]) is None
