"""VQAv2: the short-answer prompt bytes, VQA accuracy of the EvalAI-normalised upload as the official vqaEval.py
scores it (golden cases in test_official_vqa_eval.py), per answer type, malformed answers, test-dev rows without
answers, the original question-file layout and the EvalAI upload over the full
test2015 question list (convert_vqav2_for_submission.py)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.registry import get_task

BUS = ["red"] * 6 + ["red and white"] * 3 + ["maroon"]


def row(qid=262148000, question="What color is the bus?", answers=BUS, answer_type="other"):
    return {"question_id": qid, "question": question, "image_id": qid // 1000, "answer_type": answer_type,
            "question_type": "what color is the", "multiple_choice_answer": answers[0] if answers else None,
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
            "image": {"bytes": b"png", "path": None}}


@pytest.mark.parametrize("name", ["vqav2_val", "vqav2_testdev"])
def test_prompt_golden(name):
    doc = row(question="Where is he looking?")
    text = get_task(name).request(doc, 0, ("img",)).messages[0].text
    assert text == "<image>\nWhere is he looking?\nAnswer the question using a single word or phrase."


@pytest.mark.parametrize("text,parsed,score", [
    ("Red", "red", 1.0), ("Red.", "red", 1.0), ("The red", "red", 1.0), ("Red and white", "red and white", 0.9),
    ("red, white", "red white", 0.0), ("Maroon", "maroon", 0.3), ("", "", 0.0), ("红色", "红色", 0.0),
    ("RED!", "red", 1.0), ("Red\n", "red", 1.0),
])
def test_scoring_golden(text, parsed, score):
    task = get_task("vqav2_val")
    doc = row()
    assert task.parse(text, doc) == parsed
    assert task.score_item(task.parse(text, doc), doc) == pytest.approx(score)


def test_counting_answers():
    task = get_task("vqav2_val")
    doc = row(question="How many dogs are there?", answers=["2"] * 4 + ["two"] * 2 + ["3"] * 3 + ["1"])
    assert task.score_item(task.parse("Two", doc), doc) == 1.0
    assert task.score_item(task.parse("3", doc), doc) == pytest.approx(0.9)
    assert task.score_item(task.parse("three dogs", doc), doc) == 0.0


def test_aggregate_per_answer_type_and_missing():
    task = get_task("vqav2_val")
    docs = [row(1), row(2), row(3, "Is it raining?", ["no"] * 10, "yes/no"), row(4, "How many?", ["2"] * 10, "number")]
    metrics, items = task.score(docs, {1: "Red", 2: "Maroon", 3: "No."})  # 4 missing
    assert metrics["accuracy"] == pytest.approx(100 * (1.0 + 0.3 + 1.0 + 0.0) / 4)
    assert metrics["answer_types"] == {"number": 0.0, "other": pytest.approx(65.0), "yes/no": 100.0}
    assert metrics["n_missing"] == 1 and metrics["n_docs"] == 4
    assert items[3].prediction is None and items[3].parsed == ""


@pytest.mark.parametrize("answers", [5, "red", [None], [{"text": "red"}], [{"answer": 3}]])
def test_malformed_answers_name_the_row(answers):
    with pytest.raises(TaskError, match="row 7: 'answers' should be a list"):
        get_task("vqav2_val").score([{**row(7), "answers": answers}], {7: "red"})


def test_testdev_rows_have_no_score():
    task = get_task("vqav2_testdev")
    docs = [row(1, answers=[]), {**row(2), "answers": None}]
    check_schema(task, Docs([{k: v for k, v in docs[0].items() if k != "answers"}], "test"))
    metrics, items = task.score(docs, {1: "yes"})
    assert [it.score for it in items] == [None, None] and math.isnan(metrics["accuracy"])
    assert not task.scored_locally and task.hub.split == "testdev" and task.row_count == 107_394


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    task = get_task("vqav2_val")
    assert 0.0 <= task.score_item(task.parse(text, row()), row()) <= 1.0


@pytest.mark.parametrize("name", ["vqav2_val", "vqav2_testdev"])
def test_synthetic_docs(name):
    task = get_task(name)
    docs = task.synthetic_docs(11, seed=3)
    assert docs == task.synthetic_docs(11, seed=3) and len(docs) == 11
    assert len({d["question_id"] for d in docs}) == 11
    check_schema(task, Docs(docs, "synthetic"))
    assert all(len(d["answers"]) == 10 for d in docs)
    assert {d["answer_type"] for d in docs} == {"yes/no", "number", "other"}
    metrics, _ = task.score(docs, {task.doc_id(d, i): task.gold_text(d) for i, d in enumerate(docs)})
    assert metrics["accuracy"] == 100.0
    assert docs != task.synthetic_docs(11, seed=4)


def test_gold_prefers_consensus_answer():
    task = get_task("vqav2_val")
    assert task.gold_text(row(answers=["two"] + ["2"] * 9)) == "two"  # consensus scores as well as "2"
    doc = row(answers=["blue"] * 2 + ["red"] * 8)
    assert task.gold_text(doc) == "red"  # consensus "blue" scores less


def test_missing_column_fails_schema():
    doc = row()
    del doc["question"]
    with pytest.raises(TaskError, match="'question'"):
        check_schema(get_task("vqav2_val"), Docs([doc], "test"))
    with pytest.raises(TaskError, match="no image"):
        get_task("vqav2_val").image_values({**row(), "image": None})


def test_llava_layout(tmp_path):
    bench = tmp_path / "vqav2"
    bench.mkdir()
    lines = [{"question_id": 262144005, "image": "COCO_test2015_000000262144.jpg",
              "text": "Is the ball flying towards the batter?\nAnswer the question using a single word or phrase.",
              "category": "default"},
             {"question_id": 262144000, "image": "COCO_test2015_000000262144.jpg",
              "text": "What is the man holding?\nAnswer the question using a single word or phrase."}]
    (bench / "llava_vqav2_mscoco_test-dev2015.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    task = get_task("vqav2_testdev")
    rows = task.llava_layout_docs(tmp_path)
    assert rows == [{"question_id": 262144005, "question": "Is the ball flying towards the batter?", "answers": [],
                     "image": "vqav2/test2015/COCO_test2015_000000262144.jpg"},
                    {"question_id": 262144000, "question": "What is the man holding?", "answers": [],
                     "image": "vqav2/test2015/COCO_test2015_000000262144.jpg"}]
    check_schema(task, Docs(rows, "llava"))
    assert task.prompt(rows[0]) == lines[0]["text"]
    with pytest.raises(TaskError, match="not found"):
        task.llava_layout_docs(tmp_path / "vqav2" / "missing")
    with pytest.raises(TaskError, match="cannot read"):
        get_task("vqav2_val").llava_layout_docs(tmp_path)


def test_submission_full_test2015_list(tmp_path):
    task = get_task("vqav2_testdev")
    docs = [row(262144005, answers=[]), row(262144000, answers=[]), row(262144001, answers=[])]
    preds = {262144005: "Yes", 262144000: "A baseball bat.", 262144001: "Two"}
    test2015 = [262144000, 262144001, 262144002, 262144005, 262144010]
    suffix, content = task.submission(docs, preds, {"test2015_question_ids": test2015})
    assert suffix == ".json"
    # Reference: convert_vqav2_for_submission.py: json.dump defaults, test2015 order, "" without a prediction.
    assert content.decode() == (
        '[{"question_id": 262144000, "answer": "baseball bat"}, {"question_id": 262144001, "answer": "2"}, '
        '{"question_id": 262144002, "answer": ""}, {"question_id": 262144005, "answer": "yes"}, '
        '{"question_id": 262144010, "answer": ""}]')
    parsed = json.loads(content)
    assert [list(x) for x in parsed] == [["question_id", "answer"]] * 5
    assert all(type(x["question_id"]) is int and isinstance(x["answer"], str) for x in parsed)
    # the same list from LLaVA's llava_vqav2_mscoco_test2015.jsonl
    qfile = tmp_path / "llava_vqav2_mscoco_test2015.jsonl"
    qfile.write_text("".join(json.dumps({"question_id": q, "text": "?"}) + "\n" for q in test2015))
    assert task.submission(docs, preds, {"test2015_questions": str(qfile)})[1] == content
    # a prediction missing for a test-dev row is "" (the original does the same)
    partial = json.loads(task.submission(docs, {262144005: "no"}, {"test2015_question_ids": test2015})[1])
    assert [x["answer"] for x in partial] == ["", "", "", "no", ""]


def test_submission_needs_the_test2015_list():
    task = get_task("vqav2_testdev")
    docs = [row(7, answers=[]), row(5, answers=[])]
    with pytest.raises(TaskError, match="every test2015 question"):
        task.submission(docs, {7: "yes"})
    _, content = task.submission(docs, {7: "yes"}, {"allow_partial": True})
    assert json.loads(content) == [{"question_id": 7, "answer": "yes"}, {"question_id": 5, "answer": ""}]
    with pytest.raises(TaskError, match="not in the test2015 list"):
        task.submission(docs, {7: "yes"}, {"test2015_question_ids": [7, 8]})
    with pytest.raises(TaskError, match="not an integer"):
        task.submission(docs, {"abc": "yes"}, {"allow_partial": True})


def test_task_settings():
    for name, split in (("vqav2_val", "validation"), ("vqav2_testdev", "testdev")):
        task = get_task(name)
        assert task.hub.path == "lmms-lab/VQAv2" and task.hub.split == split
        assert task.max_new_tokens == 128 and task.image_mode is None and task.primary_metric == "accuracy"
    assert get_task("vqav2_val").scored_locally
