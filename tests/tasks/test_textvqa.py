"""TextVQA: the llava_textvqa_val_v051_ocr.jsonl prompt bytes (capitalised question, the OCR line, the empty
OCR case), eval_textvqa.py's question recovery from prompts, VQA accuracy with normalised ground truth, the
original layout joined to TextVQA_0.5.1_val.json, and original answer files keyed by image id."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.registry import get_task
from tasks.textvqa import question_from_prompt

SHORT = "\nAnswer the question using a single word or phrase."
DAKOTA = ["dakota", "dakota digital", "dakota", "dakota", "dakota digital", "dakota", "dakota", "dakota",
          "dakota digital", "Dakota"]


def row(qid=34602, image_id="003a8ae2ef43b901", question="what is the brand of this camera?",
        tokens=("DAKOTA", "DIGITAL", "Single-Use", "Camera", "Pire", "digitat"), answers=DAKOTA):
    return {"question_id": qid, "image_id": image_id, "question": question, "ocr_tokens": list(tokens),
            "answers": list(answers), "image": {"bytes": b"jpg", "path": None}}


def test_prompt_golden():
    task = get_task("textvqa_val")
    # Reference: first line of llava_textvqa_val_v051_ocr.jsonl (image 003a8ae2ef43b901).
    assert task.request(row(), 0, ("img",)).messages[0].text == (
        "<image>\nWhat is the brand of this camera?\nReference OCR token: DAKOTA, DIGITAL, Single-Use, Camera, "
        "Pire, digitat\nAnswer the question using a single word or phrase.")
    # An image without OCR tokens leaves the label with nothing after it (115 of the 5,000 questions).
    empty = row(question="whats the lowest number yard line that you can see?", tokens=())
    assert task.request(empty, 0, ("img",)).messages[0].text == (
        "<image>\nWhats the lowest number yard line that you can see?\nReference OCR token: \n"
        "Answer the question using a single word or phrase.")
    assert task.prompt(row(question="/?what needs to be taken away?", tokens=("A",))).startswith("/?what needs")


@pytest.mark.parametrize("text,score", [
    ("Dakota", 1.0), ("DAKOTA.", 1.0), ("Dakota digital", 0.9), ("dakota, digital", 0.9), ("The Dakota", 1.0),
    ("Kodak", 0.0), ("", 0.0), ("达科他", 0.0),
])
def test_scoring_golden(text, score):
    task = get_task("textvqa_val")
    doc = row()
    assert task.score_item(task.parse(text, doc), doc) == pytest.approx(score)


def test_aggregate():
    task = get_task("textvqa_val")
    docs = [row(1), row(2), row(3, answers=["stop"] * 10)]
    metrics, _ = task.score(docs, {1: "Dakota digital", 3: "STOP!"})
    assert metrics["accuracy"] == pytest.approx(100 * (0.9 + 0 + 1) / 3)
    assert metrics["n_missing"] == 1 and metrics["n_docs"] == 3


@pytest.mark.parametrize("prompt,question", [
    ("What is the brand of this camera?\nReference OCR token: DAKOTA, DIGITAL\n" + SHORT[1:],
     "what is the brand of this camera?"),
    ("<image>\nWhat is it?\nReference OCR token: \n" + SHORT[1:], "what is it?"),
    ("Reference OCR token: A, B\nWhat does it SAY?\n" + SHORT[1:], "what does it say?"),
    ("Who made it?\n" + SHORT[1:], "who made it?"),
    ("OCR tokens: A B Question: What is\nwritten? Short answer:", "what is\nwritten?"),
])
def test_question_from_prompt(prompt, question):
    assert question_from_prompt(prompt) == question


def test_question_from_prompt_rejects_other_layouts():
    with pytest.raises(TaskError, match="cannot recover"):
        question_from_prompt("one line only")
    with pytest.raises(TaskError, match="no question"):
        question_from_prompt("OCR tokens: A B")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    task = get_task("textvqa_val")
    assert 0.0 <= task.score_item(task.parse(text, row()), row()) <= 1.0


def test_synthetic_docs():
    task = get_task("textvqa_val")
    docs = task.synthetic_docs(12, seed=2)
    assert docs == task.synthetic_docs(12, seed=2) and len(docs) == 12
    assert len({d["question_id"] for d in docs}) == 12
    check_schema(task, Docs(docs, "synthetic"))
    with_text = [d for d in docs if d["ocr_tokens"]]
    assert len(with_text) >= 9 and all("written" in d["question"] for d in with_text)
    assert all(len(d["answers"]) == 10 and len(d["image_id"]) == 16 for d in docs)
    metrics, _ = task.score(docs, {task.doc_id(d, i): task.gold_text(d) for i, d in enumerate(docs)})
    assert metrics["accuracy"] == 100.0


def test_missing_column_fails_schema():
    doc = row()
    del doc["ocr_tokens"]
    with pytest.raises(TaskError, match="'ocr_tokens'"):
        check_schema(get_task("textvqa_val"), Docs([doc], "test"))


def _layout(tmp_path):
    bench = tmp_path / "textvqa"
    bench.mkdir()
    lines = [{"question_id": "003a8ae2ef43b901", "image": "003a8ae2ef43b901.jpg", "category": "default",
              "text": "What is the brand of this camera?\nReference OCR token: DAKOTA, DIGITAL, Single-Use" + SHORT},
             {"question_id": "003a8ae2ef43b901", "image": "003a8ae2ef43b901.jpg", "category": "default",
              "text": "What is written on the box?\nReference OCR token: " + SHORT}]
    (bench / "llava_textvqa_val_v051_ocr.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    data = [{"question_id": 34603, "image_id": "003a8ae2ef43b901", "question": "what is written on the box?",
             "answers": ["nothing"] * 10},
            {"question_id": 34602, "image_id": "003a8ae2ef43b901", "question": "what is the brand of this camera?",
             "answers": DAKOTA}]
    (bench / "TextVQA_0.5.1_val.json").write_text(json.dumps({"dataset_name": "textvqa", "data": data}))
    return lines


def test_llava_layout(tmp_path):
    lines = _layout(tmp_path)
    task = get_task("textvqa_val")
    rows = task.llava_layout_docs(tmp_path)
    assert rows[0] == {"question_id": 34602, "image_id": "003a8ae2ef43b901",
                       "question": "What is the brand of this camera?",
                       "ocr_tokens": ["DAKOTA", "DIGITAL", "Single-Use"], "answers": DAKOTA,
                       "image": "textvqa/train_images/003a8ae2ef43b901.jpg"}
    assert rows[1]["question_id"] == 34603 and rows[1]["ocr_tokens"] == []
    check_schema(task, Docs(rows, "llava"))
    assert [task.prompt(r) for r in rows] == [x["text"] for x in lines]
    # An original answer file: question_id is the image id (repeated); the prompt tells the questions apart.
    answers = [{"question_id": "003a8ae2ef43b901", "prompt": lines[1]["text"], "text": "Nothing"},
               {"question_id": "003a8ae2ef43b901", "prompt": lines[0]["text"], "text": "Dakota digital"}]
    assert task.match_answer_lines(answers, rows) == {34603: "Nothing", 34602: "Dakota digital"}
    assert task.match_answer_lines([{"question_id": 34602, "text": "x"}], rows) is None
    with pytest.raises(TaskError, match="matches no row"):
        task.match_answer_lines([{"question_id": "ffff", "prompt": lines[0]["text"], "text": "x"}], rows)


def test_llava_layout_errors(tmp_path):
    with pytest.raises(TaskError, match="TextVQA_0.5.1_val.json"):
        get_task("textvqa_val").llava_layout_docs(tmp_path)
    _layout(tmp_path)
    path = tmp_path / "textvqa" / "TextVQA_0.5.1_val.json"
    path.write_text(json.dumps({"data": []}))
    with pytest.raises(TaskError, match="no annotation"):
        get_task("textvqa_val").llava_layout_docs(tmp_path)


def test_task_settings():
    task = get_task("textvqa_val")
    assert task.hub.path == "lmms-lab/textvqa" and task.hub.split == "validation" and task.row_count == 5000
    assert task.max_new_tokens == 128 and task.image_mode is None and task.scored_locally
