"""POPE: the llava_pope_test.jsonl prompt bytes, eval_pope.py's first-sentence yes/no parsing (case-sensitive,
commas removed, space-split), per-category metrics with the *predicted* yes-ratio, the mean-F1 headline, and
the original layout (question file + coco_pope_<category>.json label files zipped in file order)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.pope import binary_metrics, parse_yes_no
from tasks.registry import get_task


def row(qid, answer="yes", category="adversarial", question="Is there a snowboard in the image?"):
    return {"question_id": qid, "question": question, "answer": answer, "category": category,
            "image": "val2014/COCO_val2014_000000310196.jpg"}


def test_prompt_golden():
    # Reference: line 1 of llava_pope_test.jsonl (question_id 1, adversarial).
    text = get_task("pope").request(row(1), 0, ("img",)).messages[0].text
    assert text == "<image>\nIs there a snowboard in the image?\nAnswer the question using a single word or phrase."


def test_prompt_keeps_source_typos():
    doc = row(7, question="Is there a dining table in the imange?")
    assert get_task("pope").prompt(doc) == ("Is there a dining table in the imange?\n"
                                            "Answer the question using a single word or phrase.")


@pytest.mark.parametrize("text,parsed", [
    ("Yes", "yes"), ("No", "no"), ("no", "no"), ("No.", "no"), ("no.", "no"),
    ("Yes, there is a dog.", "yes"), ("There is not a dog", "no"), ("There are no dogs in the image.", "no"),
    ("NO", "yes"),  # case-sensitive: only No / no / not count
    ("Not", "yes"), ("NOT", "yes"), ("nope", "yes"), ("None", "yes"),
    ("Yes. But no", "yes"),  # only the text before the first "." is read
    ("The image is sunny. There is no dog.", "yes"), (".No", "yes"), ("no. yes", "no"),
    ("No, there isn't", "no"),  # commas are deleted, then "No" is a token
    ("No,there is none", "yes"),  # "No,there" -> "Nothere": no token
    ("no\nthere is a dog", "yes"),  # split on single spaces only: "no\nthere" is one token
    ("no  dog", "no"), ("", "yes"), ("   ", "yes"),
    ("No。", "yes"), ("不", "yes"), ("Non, il n'y a pas", "yes"), ("Nein", "yes"), ("I do not think so", "no"),
])
def test_parse(text, parsed):
    assert parse_yes_no(text) == parsed


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    assert parse_yes_no(text) in ("yes", "no")


def test_score_item_and_missing_prediction():
    task = get_task("pope")
    assert task.score_item(task.parse("No.", row(1, "no")), row(1, "no")) == 1.0
    assert task.score_item(task.parse("NO", row(1, "no")), row(1, "no")) == 0.0
    metrics, items = task.score([row(1, "yes"), row(2, "no")], {1: "No"})
    # The missing answer of question 2 is scored as "" -> yes, wrong against its label no.
    assert [it.parsed for it in items] == ["no", "yes"] and metrics["n_missing"] == 1
    assert metrics["adversarial"]["accuracy"] == 0.0


def test_metrics_per_category_and_mean_f1():
    task = get_task("pope")
    docs, preds = [], {}
    # adversarial: TP 1, FN 1, FP 1, TN 1.
    for qid, label, pred in ((1, "yes", "Yes"), (2, "yes", "No"), (3, "no", "Yes"), (4, "no", "No")):
        docs.append(row(qid, label, "adversarial"))
        preds[qid] = pred
    # popular: TP 1, FP 2 -> precision 1/3, recall 1, F1 0.5, yes-ratio 100.
    for qid, label, pred in ((5, "yes", "Yes"), (6, "no", "Yes, there is."), (7, "no", "NO")):
        docs.append(row(qid, label, "popular"))
        preds[qid] = pred
    # random: all right.
    for qid, label, pred in ((8, "yes", "Yes"), (9, "no", "There is no snowboard.")):
        docs.append(row(qid, label, "random"))
        preds[qid] = pred
    m, _ = task.score(docs, preds)
    assert m["adversarial"] == {"accuracy": 50.0, "precision": 50.0, "recall": 50.0, "f1": 50.0,
                                "yes_ratio": 50.0, "n": 4}
    assert m["popular"]["accuracy"] == pytest.approx(100 / 3)
    assert m["popular"]["precision"] == pytest.approx(100 / 3)
    assert m["popular"]["recall"] == 100.0 and m["popular"]["f1"] == pytest.approx(50.0)
    assert m["popular"]["yes_ratio"] == 100.0  # the ratio of *predicted* yes, not of labels
    assert m["random"]["f1"] == 100.0 and m["random"]["yes_ratio"] == 50.0
    assert m["f1"] == pytest.approx(200 / 3)  # the paper's POPE number: mean F1 of the splits
    assert m["accuracy"] == pytest.approx((50 + 100 / 3 + 100) / 3)
    assert m["n_docs"] == 9 and m["n_missing"] == 0


def test_zero_division_gives_zero():
    # The original raises ZeroDivisionError when nothing is predicted yes; here precision and F1 are 0.
    m = binary_metrics(["no", "no"], ["yes", "no"])
    assert m == {"accuracy": 50.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.0, "n": 2}
    m = binary_metrics(["yes"], ["no"])  # no positive label: recall 0
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["yes_ratio"] == 100.0


def test_single_category_headline():
    m, _ = get_task("pope").score([row(1, "yes", "random")], {1: "Yes"})
    assert m["f1"] == 100.0 and set(m) >= {"random"} and "adversarial" not in m


def test_synthetic_docs_deterministic_schema_and_gold():
    task = get_task("pope")
    docs = task.synthetic_docs(10)
    assert len(docs) == 10 and docs == task.synthetic_docs(10) and docs != task.synthetic_docs(10, seed=1)
    check_schema(task, Docs(docs, "synthetic"))
    assert {d["category"] for d in docs} == {"adversarial", "popular", "random"}
    metrics, _ = task.score(docs, {d["question_id"]: task.gold_text(d) for d in docs})
    assert metrics["f1"] == 100.0 and metrics["accuracy"] == 100.0


def test_missing_column_fails_schema():
    doc = row(1)
    del doc["answer"]
    with pytest.raises(TaskError, match="'answer'"):
        check_schema(get_task("pope"), Docs([doc], "test"))


def _write_layout(root, labels):
    base = root / "pope"
    (base / "coco").mkdir(parents=True)
    questions = [(1, "COCO_val2014_000000310196.jpg", "snowboard", "adversarial"),
                 (2, "COCO_val2014_000000310196.jpg", "backpack", "adversarial"),
                 (10000001, "COCO_val2014_000000548882.jpg", "dining table", "random"),
                 (3, "COCO_val2014_000000310196.jpg", "person", "adversarial")]
    lines = [json.dumps({"question_id": q, "image": img, "category": cat,
                         "text": f"Is there a {obj} in the image?\nAnswer the question using a single word or phrase."})
             for q, img, obj, cat in questions]
    (base / "llava_pope_test.jsonl").write_text("\n".join(lines) + "\n")
    for category, values in labels.items():
        rows = [json.dumps({"question_id": i, "image": "x.jpg", "text": "Is there a thing in the image?",
                            "label": label}) for i, label in enumerate(values)]
        (base / "coco" / f"coco_pope_{category}.json").write_text("\n".join(rows) + "\n")


def test_llava_layout_zips_labels_in_file_order(tmp_path):
    _write_layout(tmp_path, {"adversarial": ["yes", "no", "yes"], "random": ["no"]})
    task = get_task("pope")
    docs = task.llava_layout_docs(tmp_path)
    check_schema(task, Docs(docs, "llava"))
    assert [(d["question_id"], d["answer"], d["category"]) for d in docs] == [
        (1, "yes", "adversarial"), (2, "no", "adversarial"), (10000001, "no", "random"), (3, "yes", "adversarial")]
    assert docs[2]["question"] == "Is there a dining table in the image?"
    assert docs[0]["image"] == "pope/val2014/COCO_val2014_000000310196.jpg"
    assert task.prompt(docs[0]) == ("Is there a snowboard in the image?\n"
                                    "Answer the question using a single word or phrase.")
    # The folder itself works too; image paths are then relative to it.
    assert task.llava_layout_docs(tmp_path / "pope")[0]["image"] == "val2014/COCO_val2014_000000310196.jpg"


def test_llava_layout_label_other_than_no_is_yes(tmp_path):
    # Reference: eval_pope.py maps label 'no' to 0 and anything else to 1.
    _write_layout(tmp_path, {"adversarial": ["Yes", "No", "no"], "random": ["yes"]})
    assert [d["answer"] for d in get_task("pope").llava_layout_docs(tmp_path)] == ["yes", "yes", "yes", "no"]


def test_llava_layout_errors(tmp_path):
    _write_layout(tmp_path, {"adversarial": ["yes", "no"], "random": ["no"]})
    with pytest.raises(TaskError, match="3 adversarial questions but 2 labels"):
        get_task("pope").llava_layout_docs(tmp_path)
    other = tmp_path / "other"
    _write_layout(other, {"adversarial": ["yes", "no", "yes"]})
    with pytest.raises(TaskError, match="coco_pope_random.json"):
        get_task("pope").llava_layout_docs(other)
    with pytest.raises(TaskError, match="llava_pope_test.jsonl"):
        get_task("pope").llava_layout_docs(tmp_path / "nowhere")
