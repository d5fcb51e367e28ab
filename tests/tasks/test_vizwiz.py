"""VizWiz-VQA: the llava_test.jsonl prompt bytes (question.capitalize(), trailing spaces kept, the
'Unanswerable' instruction), VQA accuracy as the VizWiz-VQA evaluator scores the EvalAI-normalised upload
(golden cases in test_official_vqa_eval.py) with unanswerable questions, per-category accuracy, the original
layout and answer-file ids, and the EvalAI upload of convert_vizwiz_for_submission.py (checked against the
first lines of LLaVA-1.5-13B's official upload)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.registry import get_task
from tasks.vizwiz import image_file

SUFFIX = ("\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n"
          "Answer the question using a single word or phrase.")
UNANSWERABLE = ["unanswerable"] * 10


def row(qid="VizWiz_val_00000000", question="What is this?", answers=UNANSWERABLE, category="unanswerable"):
    return {"question_id": qid, "question": question, "answers": list(answers), "category": category,
            "image": {"bytes": b"jpg", "path": None}}


@pytest.mark.parametrize("question,expected", [
    # Reference: llava_test.jsonl lines 0 and 7 (VizWiz_test_00000000 / 07).
    ("What is this? And what color is it?", "What is this? and what color is it?"),
    ("What is this? ", "What is this? "),
    ("This is an ongoing problem for me. I need to find out which setting it's set to",
     "This is an ongoing problem for me. i need to find out which setting it's set to"),
    ("what brand is this TV?", "What brand is this tv?"),
])
def test_prompt_golden(question, expected):
    for name in ("vizwiz_val", "vizwiz_test"):
        text = get_task(name).request(row(question=question), 0, ("img",)).messages[0].text
        assert text == "<image>\n" + expected + SUFFIX
    line0 = ("<image>\nWhat is this? and what color is it?\nWhen the provided information is insufficient, "
             "respond with 'Unanswerable'.\nAnswer the question using a single word or phrase.")
    assert get_task("vizwiz_test").request(row(question="What is this? and what color is it?"), 0,
                                           ("img",)).messages[0].text == line0


@pytest.mark.parametrize("text,answers,score", [
    ("Unanswerable", UNANSWERABLE, 1.0), ("unanswerable.", UNANSWERABLE, 1.0), ("UNANSWERABLE", UNANSWERABLE, 1.0),
    ("I don't know", UNANSWERABLE, 0.0), ("", UNANSWERABLE, 0.0),
    ("Soup", ["soup"] * 2 + ["chicken soup"] * 5 + ["unanswerable"] * 3, 0.6),
    ("Chicken soup.", ["soup"] * 2 + ["chicken soup"] * 5 + ["unanswerable"] * 3, 1.0),
    ("Unanswerable", ["soup"] * 2 + ["chicken soup"] * 5 + ["unanswerable"] * 3, 0.9),
    ("Ten dollars", ["10 dollars"] * 4 + ["ten dollar bill"] * 6, 1.0),
    ("汤", ["soup"] * 10, 0.0),
])
def test_scoring_golden(text, answers, score):
    task = get_task("vizwiz_val")
    doc = row(answers=answers)
    assert task.score_item(task.parse(text, doc), doc) == pytest.approx(score)


def test_aggregate_categories_and_missing():
    task = get_task("vizwiz_val")
    docs = [row("a"), row("b"), row("c", "What color?", ["red"] * 10, "other"),
            row("d", "Is it on?", ["yes"] * 10, "yes/no")]
    metrics, _ = task.score(docs, {"a": "Unanswerable", "b": "Red", "c": "Red"})
    assert metrics["accuracy"] == 50.0 and metrics["n_missing"] == 1
    assert metrics["categories"] == {"other": 100.0, "unanswerable": 50.0, "yes/no": 0.0}


def test_malformed_answers_name_the_row():
    with pytest.raises(TaskError, match="row 'a': 'answers' should be a list"):
        get_task("vizwiz_val").score([row("a", answers=[None] * 10)], {"a": "yes"})


def test_test_rows_have_no_score():
    task = get_task("vizwiz_test")
    doc = row("VizWiz_test_00000000", answers=[])
    check_schema(task, Docs([{k: v for k, v in doc.items() if k != "answers"}], "test"))
    metrics, items = task.score([doc], {"VizWiz_test_00000000": "Black"})
    assert items[0].score is None and metrics["n_docs"] == 1
    assert not task.scored_locally and task.hub.split == "test" and task.row_count == 8000


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    task = get_task("vizwiz_val")
    assert 0.0 <= task.score_item(task.parse(text, row()), row()) <= 1.0


@pytest.mark.parametrize("name", ["vizwiz_val", "vizwiz_test"])
def test_synthetic_docs(name):
    task = get_task(name)
    docs = task.synthetic_docs(10, seed=1)
    assert docs == task.synthetic_docs(10, seed=1) and len(docs) == 10
    assert len({d["question_id"] for d in docs}) == 10
    assert all(d["question_id"].startswith(f"VizWiz_{name.split('_')[1]}_") for d in docs)
    check_schema(task, Docs(docs, "synthetic"))
    unanswerable = [d for d in docs if d["category"] == "unanswerable"]
    assert len(unanswerable) == 2 and all(d["answers"] == UNANSWERABLE for d in unanswerable)
    metrics, _ = task.score(docs, {task.doc_id(d, i): task.gold_text(d) for i, d in enumerate(docs)})
    assert metrics["accuracy"] == 100.0


def test_missing_column_fails_schema():
    doc = row()
    del doc["answers"]
    with pytest.raises(TaskError, match="'answers'"):
        check_schema(get_task("vizwiz_val"), Docs([doc], "test"))


def test_image_file_rule():
    assert image_file({"question_id": "VizWiz_test_00000007"}) == "VizWiz_test_00000007.jpg"
    assert image_file({"question_id": "VizWiz_test_00000007.jpg"}) == "VizWiz_test_00000007.jpg"
    assert image_file({"question_id": 7}) == "VizWiz_test_00000007.jpg"


def test_llava_layout_and_answer_file(tmp_path):
    bench = tmp_path / "vizwiz"
    bench.mkdir()
    questions = ["What is this? and what color is it?", "What is this?", "What is this? "]
    (bench / "llava_test.jsonl").write_text("".join(
        json.dumps({"question_id": i, "image": f"VizWiz_test_{i:08d}.jpg", "text": q + SUFFIX, "category": "default"})
        + "\n" for i, q in enumerate(questions)))
    task = get_task("vizwiz_test")
    rows = task.llava_layout_docs(tmp_path)
    assert [r["question_id"] for r in rows] == ["VizWiz_test_00000000", "VizWiz_test_00000001", "VizWiz_test_00000002"]
    assert rows[2] == {"question_id": "VizWiz_test_00000002", "question": "What is this? ", "answers": [],
                       "image": "vizwiz/test/VizWiz_test_00000002.jpg"}
    check_schema(task, Docs(rows, "llava"))
    assert [task.prompt(r) for r in rows] == [q + SUFFIX for q in questions]
    lines = [{"question_id": 1, "text": "Unanswerable"}, {"question_id": 0, "text": "Black"},
             {"question_id": 2, "text": "Laptop"}]
    assert task.match_answer_lines(lines, rows) == {"VizWiz_test_00000001": "Unanswerable",
                                                    "VizWiz_test_00000000": "Black", "VizWiz_test_00000002": "Laptop"}
    assert task.match_answer_lines([{"question_id": "VizWiz_test_00000000", "text": "x"}], rows) is None
    with pytest.raises(TaskError, match="matches no row"):
        task.match_answer_lines([{"question_id": 9, "text": "x"}], rows)


def test_val_layout(tmp_path):
    annotations = tmp_path / "vizwiz" / "Annotations"
    annotations.mkdir(parents=True)
    (annotations / "val.json").write_text(json.dumps([{
        "image": "VizWiz_val_00000000.jpg", "question": "Ok. There is another picture I hope it is a better one.",
        "answers": [{"answer": "unanswerable", "answer_confidence": "yes"}] * 10, "answer_type": "unanswerable",
        "answerable": 0}]))
    rows = get_task("vizwiz_val").llava_layout_docs(tmp_path)
    assert rows == [{"question_id": "VizWiz_val_00000000",
                     "question": "Ok. There is another picture I hope it is a better one.",
                     "answers": UNANSWERABLE, "category": "unanswerable",
                     "image": "vizwiz/val/VizWiz_val_00000000.jpg"}]
    with pytest.raises(TaskError, match="val.json"):
        get_task("vizwiz_val").llava_layout_docs(tmp_path / "elsewhere")


def test_submission_matches_official_upload():
    task = get_task("vizwiz_test")
    texts = ["Black", "Unanswerable", "No", "Laptop", "Half and half", "Unanswerable",
             "Put your big girl panties on and deal with it"]
    docs = [row(f"VizWiz_test_{i:08d}", answers=[]) for i in range(len(texts))]
    suffix, content = task.submission(docs, {d["question_id"]: t for d, t in zip(docs, texts, strict=True)})
    assert suffix == ".json"
    # Reference: the first 7 entries of eval.zip vizwiz/answers_upload/llava-v1.5-13b.json, byte for byte.
    assert content.decode() == (
        '[{"image": "VizWiz_test_00000000.jpg", "answer": "black"}, {"image": "VizWiz_test_00000001.jpg", '
        '"answer": "unanswerable"}, {"image": "VizWiz_test_00000002.jpg", "answer": "no"}, {"image": '
        '"VizWiz_test_00000003.jpg", "answer": "laptop"}, {"image": "VizWiz_test_00000004.jpg", "answer": '
        '"half and half"}, {"image": "VizWiz_test_00000005.jpg", "answer": "unanswerable"}, {"image": '
        '"VizWiz_test_00000006.jpg", "answer": "put your big girl panties on and deal with it"}]')
    assert [list(x) for x in json.loads(content)] == [["image", "answer"]] * 7
    assert json.loads(task.submission(docs[:1], {docs[0]["question_id"]: "热汤"})[1]) == [
        {"image": "VizWiz_test_00000000.jpg", "answer": "热汤"}]
    with pytest.raises(TaskError, match="1 question"):
        task.submission(docs[:2], {docs[0]["question_id"]: "x"})
