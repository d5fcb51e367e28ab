"""The evaluators behind the EvalAI servers, reproduced for vqav2_val and vizwiz_val: golden cases worked out by
hand from GT-Vision-Lab's vqaEval.py (VQAv2) and the VizWiz-VQA API's vqaEval.py (VizWiz), applied to the answer
LLaVA's converters upload (the EvalAI-normalised prediction). Each case notes the upload, whether the answers
get normalised, the matches and the leave-one-out mean; "m4c" is what LLaVA's TextVQA scorer would give.
"""

from __future__ import annotations

import pytest

from tasks.evalai import CONTRACTIONS, process_punctuation
from tasks.official_vqa_eval import VIZWIZ_CONTRACTIONS, vizwiz_accuracy, vqa_normalize, vqav2_accuracy
from tasks.registry import get_task


def vqav2_row(answers, qid=1):
    return {"question_id": qid, "question": "What is it?", "answer_type": "other",
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]}


# Leave-one-out over 10 annotators with k matching answers: (k * min(1, (k-1)/3) + (10-k) * min(1, k/3)) / 10,
# i.e. 0.3, 0.6, 0.9 for k = 1, 2, 3 and 1.0 from k = 4.
@pytest.mark.parametrize("text,answers,expected", [
    # Unanimous annotators: vqaEval normalises neither the answers nor the prediction (only strip).
    # upload "it 's" (EvalAI splits off "'s"); answers "it's" as stored -> 0 matches -> 0.0 (m4c: 1.0)
    ("It's", ["it's"] * 10, 0.0),
    # upload "dog 's" vs "dog's" -> 0.0 (m4c: 1.0)
    ("Dog's", ["dog's"] * 10, 0.0),
    # upload "t shirt" (a hyphen with no space beside it becomes a space) vs "t-shirt" -> 0.0 (m4c: 1.0)
    ("T-shirt", ["t-shirt"] * 10, 0.0),
    # upload "2" vs "two" (number words are mapped only when normalising) -> 0.0 (m4c: 1.0)
    ("Two", ["two"] * 10, 0.0),
    ("2", ["two"] * 10, 0.0),
    # upload "2" vs "2" -> 10 matches -> 1.0
    ("Two", ["2"] * 10, 1.0),
    # upload "dog" (EvalAI drops the article) vs "a dog" -> 0.0 (m4c: 1.0)
    ("A dog", ["a dog"] * 10, 0.0),
    # upload "yes" vs raw capitalised "Yes" -> 0.0 (m4c: 1.0)
    ("yes", ["Yes"] * 10, 0.0),
    # answers are stripped first: " yes\n" x10 -> "yes" x10, unanimous; upload "yes" -> 1.0
    ("Yes.", [" yes\n"] * 10, 1.0),
    # One dissenting annotator switches normalisation on for the question.
    # "Yes" x9 + "yes" -> all "yes" after lower-casing; upload "yes" -> 10 matches -> 1.0
    ("yes", ["Yes"] * 9 + ["yes"], 1.0),
    # "t-shirt" x9 + "shirt" -> "t shirt" x9; upload "t shirt" -> 9 matches -> 1.0
    ("T-shirt", ["t-shirt"] * 9 + ["shirt"], 1.0),
    # "dog's" keeps its apostrophe under vqaEval (no "'s" split) but the upload is "dog 's" -> 0.0 (m4c: 1.0)
    ("Dog's", ["dog's"] * 9 + ["dog"], 0.0),
    # "red,white" -> "red white" (vqaEval has no comma-deleting first step); upload "red white"; k = 4 -> 1.0
    # (m4c deletes the comma: "redwhite" -> 0.0)
    ("Red, white", ["red,white"] * 4 + ["red"] * 6, 1.0),
    # "two" x2 + "3" x8 -> "2" x2; upload "2"; k = 2 -> (2 * 1/3 + 8 * 2/3) / 10 = 0.6 (m4c: 0.6)
    ("2", ["two"] * 2 + ["3"] * 8, 0.6),
    # "the dog" x5 + "dog" x5 -> "dog" x10; upload "dog" -> 1.0
    ("A dog.", ["the dog"] * 5 + ["dog"] * 5, 1.0),
    # "1,000" -> "1000" (a digit-comma-digit makes every mark vanish); upload "1000"; k = 3 -> 0.9
    ("1,000", ["1,000"] * 3 + ["many"] * 7, 0.9),
])
def test_vqav2_val_golden(text, answers, expected):
    task = get_task("vqav2_val")
    doc = vqav2_row(answers)
    assert task.score_item(task.parse(text, doc), doc) == pytest.approx(expected)


@pytest.mark.parametrize("text,answers,expected", [
    # The VizWiz evaluator always normalises the prediction and never the answers (compared as stored).
    # upload "yes" vs "Yes" -> 0.0 (m4c: 1.0)
    ("Yes", ["Yes"] * 10, 0.0),
    # upload "t shirt" vs "t-shirt" even with a dissenting annotator -> 0.0 (m4c: 1.0)
    ("T-shirt", ["t-shirt"] * 9 + ["shirt"], 0.0),
    # upload "dog 's" vs "dog's" -> 0.0 (m4c: 1.0)
    ("Dog's", ["dog's"] * 10, 0.0),
    # upload "2" vs "two" -> 0.0 (m4c: 1.0); vs "2" -> 1.0
    ("Two", ["two"] * 10, 0.0),
    ("Two", ["2"] * 10, 1.0),
    # answers are not even stripped: " yes" never equals "yes" -> 0.0 (m4c: 1.0)
    ("yes", [" yes"] * 10, 0.0),
    # upload "unanswerable" -> 10 matches -> 1.0
    ("Unanswerable.", ["unanswerable"] * 10, 1.0),
    # upload "soup", k = 2 -> 0.6; "chicken soup", k = 5 -> 1.0; "unanswerable", k = 3 -> 0.9
    ("Soup", ["soup"] * 2 + ["chicken soup"] * 5 + ["unanswerable"] * 3, 0.6),
    ("Chicken soup", ["soup"] * 2 + ["chicken soup"] * 5 + ["unanswerable"] * 3, 1.0),
    ("Unanswerable", ["soup"] * 2 + ["chicken soup"] * 5 + ["unanswerable"] * 3, 0.9),
])
def test_vizwiz_val_golden(text, answers, expected):
    task = get_task("vizwiz_val")
    doc = {"question_id": "VizWiz_val_00000000", "question": "What is it?", "answers": answers, "category": "other"}
    assert task.score_item(task.parse(text, doc), doc) == pytest.approx(expected)


def test_vqav2_overall_is_the_mean_of_unrounded_question_scores():
    # vqaEval.py: overall = round(100 * sum(acc) / n, 2) over the unrounded per-question accuracies; the rounding
    # is the server's display, the mean is kept whole here. (1/3 + 1.0 + 0.0) / 3 * 100 = 44.444...
    task = get_task("vqav2_val")
    docs = [vqav2_row(["red"] * 2 + ["blue"] * 8, 1), vqav2_row(["red"] * 10, 2), vqav2_row(["Red"] * 10, 3)]
    metrics, items = task.score(docs, {1: "red", 2: "Red", 3: "red"})
    assert [it.score for it in items] == pytest.approx([0.6, 1.0, 0.0])
    assert metrics["accuracy"] == pytest.approx(100 * 1.6 / 3)


@pytest.mark.parametrize("raw,expected", [
    ("dog's", "dog's"), ("What's up?", "what's up"), ("T-Shirt", "t shirt"), ("red,white", "red white"),
    # a digit-comma-digit anywhere deletes every mark, even the spaced "/"
    ("1,000", "1000"), ("1,000 / x", "1000 x"), ("1,000/x", "1000x"), ("x - y", "x y"), ("Two dogs.", "2 dogs"),
    ("a.m.", "am"), ("3.5", "3.5"), ("The cat", "cat"), ("dont", "don't"), ("none", "0"),
    # vqaEval's digit-comma rule needs exactly one comma: "1,,000" keeps its commas as spaces (m4c: "1000")
    ("1,,000", "1 000"),
])
def test_vqa_normalize(raw, expected):
    assert vqa_normalize(raw) == expected


def test_digit_comma_rules_differ():
    # m4c's COMMA_STRIP takes a run of commas between digits; vqaEval's commaStrip exactly one.
    assert process_punctuation("1,,000") == "1000" and vqa_normalize("1,,000") == "1 000"


def test_vqav2_leaves_out_equal_annotation_dicts_together():
    # vqaEval.py holds out every answer dict equal to the current one (`item != gtAnsDatum`). Three identical
    # "yes" dicts (same answer_id) + 7 distinct "no": a "yes" annotator sees 0 other "yes" -> 0; a "no"
    # annotator sees 3 -> 1; (3 * 0 + 7 * 1) / 10 = 0.7. With distinct ids: (3 * 2/3 + 7 * 1) / 10 = 0.9.
    same = [{"answer": "yes", "answer_id": 1}] * 3 + [{"answer": "no", "answer_id": i} for i in range(2, 9)]
    assert vqav2_accuracy("yes", same) == pytest.approx(0.7)
    distinct = [{"answer": a["answer"], "answer_id": i} for i, a in enumerate(same)]
    assert vqav2_accuracy("yes", distinct) == pytest.approx(0.9)
    assert vqav2_accuracy("yes", [a["answer"] for a in same]) == pytest.approx(0.9)  # strings: one per annotator


def test_prediction_normalised_only_when_annotators_disagree():
    # Unanimous: the prediction is only stripped ("The dog" != "the dog"); split: both sides normalised.
    assert vqav2_accuracy("  the dog\n", ["the dog"] * 10) == 1.0
    assert vqav2_accuracy("The dog", ["the dog"] * 10) == 0.0
    assert vqav2_accuracy("The dog", ["the dog"] * 9 + ["cat"]) == 1.0
    assert vizwiz_accuracy("The dog", ["dog"] * 10) == 1.0 and vizwiz_accuracy("dog", ["the dog"] * 10) == 0.0
    assert vqav2_accuracy("yes", []) == 0.0 and vizwiz_accuracy("yes", []) == 0.0


def test_vizwiz_contractions_table():
    # The VizWiz API kept vqaEval.py's pre-2016 table: typographic apostrophes (U+2019) except a few entries.
    assert len(VIZWIZ_CONTRACTIONS) == len(CONTRACTIONS) == 120
    assert VIZWIZ_CONTRACTIONS["dont"] == "don\u2019t" and VIZWIZ_CONTRACTIONS["aint"] == "ain't"
    assert VIZWIZ_CONTRACTIONS["he\u2019dve"] == "he\u2019d\u2019ve" and VIZWIZ_CONTRACTIONS["weve"] == "we've"
    assert VIZWIZ_CONTRACTIONS["couldn'tve"] == "couldn\u2019t\u2019ve" and "hadn'tve" in VIZWIZ_CONTRACTIONS
    assert VIZWIZ_CONTRACTIONS["twas"] == "\u2019twas" and VIZWIZ_CONTRACTIONS["somebody\u2019d"] == "somebodyd"
    # so a raw "dont" matches only an annotator's "don’t" (LLaVA's upload has already made it "don't")
    assert vizwiz_accuracy("dont", ["don\u2019t"] * 10) == 1.0 and vizwiz_accuracy("dont", ["don't"] * 10) == 0.0
    assert vizwiz_accuracy("don't", ["don't"] * 10) == 1.0
