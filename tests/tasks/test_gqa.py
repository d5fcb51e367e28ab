"""GQA: the llava_gqa_testdev_balanced.jsonl prompt bytes (question unchanged), convert_gqa_for_eval.py's
rstrip('.').lower() and eval.py's exact match, binary/open and per-type accuracy, the image join the hub
needs, the original layout and the testdev_balanced_predictions.json file."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.gqa import JoinedRows, convert
from tasks.registry import get_task


def row(qid="201307251", question="Is it overcast?", answer="no", structural="verify", semantic="attr", image=True):
    doc = {"id": qid, "imageId": "n161313", "question": question, "answer": answer,
           "fullAnswer": "No, it is clear.", "isBalanced": True,
           "types": {"structural": structural, "semantic": semantic, "detailed": "weatherVerify"}}
    if image:
        doc["image"] = {"bytes": b"jpg", "path": None}
    return doc


def test_prompt_golden():
    task = get_task("gqa")
    # Reference: llava_gqa_testdev_balanced.jsonl, first line and one that keeps inner capitals.
    assert task.request(row(), 0, ("img",)).messages[0].text == (
        "<image>\nIs it overcast?\nAnswer the question using a single word or phrase.")
    doc = row(question="Is there a silver laptop or DVD player?")
    assert task.request(doc, 0, ("img",)).messages[0].text == (
        "<image>\nIs there a silver laptop or DVD player?\nAnswer the question using a single word or phrase.")


@pytest.mark.parametrize("text,answer,parsed,score", [
    ("No", "no", "no", 1.0), ("No.", "no", "no", 1.0), ("no...", "no", "no", 1.0), ("NO", "no", "no", 1.0),
    ("No!", "no", "no!", 0.0), (" no", "no", " no", 0.0), ("No. ", "no", "no. ", 0.0), ("Nope", "no", "nope", 0.0),
    ("Woman", "woman", "woman", 1.0), ("The woman", "woman", "the woman", 0.0), ("Women", "woman", "women", 0.0),
    ("T-shirt", "t-shirt", "t-shirt", 1.0), ("2", "2", "2", 1.0), ("Two", "2", "two", 0.0),
    ("", "no", "", 0.0), ("Café", "café", "café", 1.0), ("是", "yes", "是", 0.0),
])
def test_scoring_golden(text, answer, parsed, score):
    task = get_task("gqa")
    doc = row(answer=answer)
    assert task.parse(text, doc) == parsed == convert(text)
    assert task.score_item(parsed, doc) == score


def test_unbalanced_rows_do_not_count():
    task = get_task("gqa")
    assert task.score_item("no", {**row(), "isBalanced": False}) is None


def test_aggregate_binary_open_and_types():
    task = get_task("gqa")
    docs = [row("1"), row("2", answer="yes", structural="logical"),
            row("3", "Who is wearing the dress?", "woman", "query", "rel"),
            row("4", "What color is the car?", "red", "query", "attr")]
    metrics, _ = task.score(docs, {"1": "No", "2": "No", "3": "Woman."})  # "4" missing
    assert metrics["accuracy"] == 50.0 and metrics["n_missing"] == 1
    assert metrics["binary"] == 50.0 and metrics["open"] == 50.0
    assert metrics["accuracy_per_structural"] == {"logical": 0.0, "query": 50.0, "verify": 100.0}
    assert metrics["accuracy_per_semantic"] == {"attr": pytest.approx(100 / 3), "rel": 100.0}


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    task = get_task("gqa")
    assert task.score_item(task.parse(text, row()), row()) in (0.0, 1.0)


def test_synthetic_docs():
    task = get_task("gqa")
    docs = task.synthetic_docs(10, seed=5)
    assert docs == task.synthetic_docs(10, seed=5) and len(docs) == 10
    assert len({d["id"] for d in docs}) == 10 and all(isinstance(d["id"], str) for d in docs)
    check_schema(task, Docs(docs, "synthetic"))
    assert all(d["answer"] == d["answer"].lower() for d in docs)
    assert {d["types"]["structural"] for d in docs} == {"verify", "query"}
    metrics, _ = task.score(docs, {d["id"]: task.gold_text(d) for d in docs})
    assert metrics["accuracy"] == 100.0 and metrics["binary"] == 100.0 and metrics["open"] == 100.0


def test_missing_column_fails_schema():
    doc = row()
    del doc["answer"]
    with pytest.raises(TaskError, match="'answer'"):
        check_schema(get_task("gqa"), Docs([doc], "test"))


def test_hub_rows_need_the_image_join():
    task = get_task("gqa")
    instructions = [row("1", image=False), {**row("2", image=False), "imageId": "n2"}]
    with pytest.raises(TaskError, match="n161313.*testdev_balanced_images"):
        task.image_values(instructions[0])
    calls = []

    def load_config(config, split):
        calls.append((config, split))
        return [{"id": "n161313", "image": {"bytes": b"A", "path": None}}, {"id": "n9", "image": {"bytes": b"B"}}]

    joined = task.prepare_hub(instructions, load_config)
    assert isinstance(joined, JoinedRows) and calls == [("testdev_balanced_images", "testdev")]
    docs = Docs(joined, "hub")
    assert len(docs) == 2 and task.image_values(docs[0]) == [{"bytes": b"A", "path": None}]
    assert "image" not in instructions[0]  # the instruction rows are left untouched
    check_schema(task, docs)
    with pytest.raises(TaskError, match="n2"):
        task.image_values(docs[1])


def test_llava_layout(tmp_path):
    data = tmp_path / "gqa" / "data"
    data.mkdir(parents=True)
    lines = [{"question_id": "201307251", "image": "n161313.jpg", "category": "default",
              "text": "Is it overcast?\nAnswer the question using a single word or phrase."},
             {"question_id": "201640614", "image": "n235859.jpg", "category": "default",
              "text": "Who is wearing the dress?\nAnswer the question using a single word or phrase."}]
    (tmp_path / "gqa" / "llava_gqa_testdev_balanced.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    gold = {"201640614": {"imageId": "n235859", "question": "Who is wearing the dress?", "answer": "woman",
                          "fullAnswer": "The woman is wearing a dress.", "isBalanced": True,
                          "types": {"structural": "query", "semantic": "rel", "detailed": "relS"}},
            "201307251": {"imageId": "n161313", "question": "Is it overcast?", "answer": "no",
                          "fullAnswer": "No, it is clear.", "isBalanced": True,
                          "types": {"structural": "verify", "semantic": "attr", "detailed": "weatherVerify"}}}
    (data / "testdev_balanced_questions.json").write_text(json.dumps(gold))
    task = get_task("gqa")
    rows = task.llava_layout_docs(tmp_path)
    assert [r["id"] for r in rows] == ["201307251", "201640614"]
    assert rows[1] == {"id": "201640614", "imageId": "n235859", "question": "Who is wearing the dress?",
                       "answer": "woman", "fullAnswer": "The woman is wearing a dress.", "isBalanced": True,
                       "types": gold["201640614"]["types"], "image": "gqa/data/images/n235859.jpg"}
    check_schema(task, Docs(rows, "llava"))
    assert [task.prompt(r) for r in rows] == [x["text"] for x in lines]
    del gold["201640614"]
    (data / "testdev_balanced_questions.json").write_text(json.dumps(gold))
    with pytest.raises(TaskError, match="201640614"):
        task.llava_layout_docs(tmp_path)
    with pytest.raises(TaskError, match="testdev_balanced_questions.json"):
        task.llava_layout_docs(tmp_path / "gqa" / "data")


def test_submission():
    task = get_task("gqa")
    docs = [row("201307251"), row("201640614", "Who is wearing the dress?", "woman", "query", "rel")]
    suffix, content = task.submission(docs, {"201307251": "No.", "201640614": "Woman"})
    assert suffix == ".json"
    # Reference: convert_gqa_for_eval.py, json.dump defaults, answer-file order, string question ids.
    assert content.decode() == ('[{"questionId": "201307251", "prediction": "no"}, '
                                '{"questionId": "201640614", "prediction": "woman"}]')
    assert json.loads(task.submission(docs[:1], {"201307251": "雨"})[1]) == [{"questionId": "201307251",
                                                                              "prediction": "雨"}]
    with pytest.raises(TaskError, match="1 question"):
        task.submission(docs, {"201307251": "No"})


def test_task_settings():
    task = get_task("gqa")
    assert (task.hub.path, task.hub.config, task.hub.split) == ("lmms-lab/GQA", "testdev_balanced_instructions",
                                                                "testdev")
    assert task.row_count == 12_578 and task.max_new_tokens == 128 and task.image_mode is None
    assert task.scored_locally and task.primary_metric == "accuracy"
