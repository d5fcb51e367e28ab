"""MME: llava_mme.jsonl prompt bytes (MME's "Please answer yes or no." after one or two spaces replaced by the
short-answer line), the official calculation.py parsing and 100 * (acc + acc+) subtask scores, perception and
cognition totals, the original layout (llava_mme.jsonl + MME release answer files) and answer-file matching
by question_id + prompt (the question_id repeats)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.mme import COGNITION, PERCEPTION, llava_question, parse_yes_no
from tasks.registry import get_task

SHORT = "\nAnswer the question using a single word or phrase."


def row(qid, question, answer="Yes", category=None):
    return {"question_id": qid, "question": question, "answer": answer, "category": category or qid.split("/")[0],
            "image": {"bytes": b"x", "path": None}}


@pytest.mark.parametrize("question,expected", [
    # Reference: llava_mme.jsonl lines 965 and 1 and 3 (color/000000055072.jpg, code_reasoning/0020.png, 0014.png).
    ("Is there a brown giraffe in the image?  Please answer yes or no.",
     "<image>\nIs there a brown giraffe in the image?\nAnswer the question using a single word or phrase."),
    ("Is a python code shown in the picture? Please answer yes or no.",
     "<image>\nIs a python code shown in the picture?\nAnswer the question using a single word or phrase."),
    ("The image shows a python code. Is the output of the code '7'? Please answer yes or no.",
     "<image>\nThe image shows a python code. Is the output of the code '7'?\n"
     "Answer the question using a single word or phrase."),
])
def test_prompt_golden(question, expected):
    assert get_task("mme").request(row("color/000000055072.jpg", question), 0, ("img",)).messages[0].text == expected


def test_llava_question_rule():
    assert llava_question("Is this a cat? Please answer yes or no. ") == "Is this a cat?"
    assert llava_question("Is this a cat?") == "Is this a cat?"  # nothing to remove
    assert llava_question("Please answer yes or no. Is this a cat?") == "Please answer yes or no. Is this a cat?"


@pytest.mark.parametrize("text,parsed", [
    ("Yes", "yes"), ("No", "no"), ("YES", "yes"), ("no", "no"), ("yes.", "yes"), ("No.", "no"),
    ("No, it is not.", "no"), ("Yes, it is.", "yes"), ("Not sure", "no"), ("None", "no"), ("Nope", "no"),
    ("Church", "other"), ("Portrait", "other"), ("Cristoforo", "other"),  # real 13B answers, scored wrong
    ("I think yes", "other"), ("The answer is yes", "other"),  # only the first 4 characters are read
    ("Know", "no"), ("Snow", "no"), ("eyes", "yes"),  # substring quirks of the 4-character window
    ("Noyes", "no"), ("Yesno", "yes"), (" yes", "yes"), ("  yes", "other"),
    ("y", "other"), ("n", "other"),  # the official tool has no single-letter rule (lmms-eval has)
    ("", "other"), ("是", "other"), ("不是", "other"), ("Ｙｅｓ", "other"),
    ("İyes", "other"),  # "İ".lower() is two characters, so the window holds "i̇ye"
])
def test_parse(text, parsed):
    assert parse_yes_no(text) == parsed


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    assert parse_yes_no(text) in ("yes", "no", "other")


def test_aggregate_subtasks_and_totals():
    task = get_task("mme")
    docs = [row("existence/1.jpg", "Is there a dog?", "Yes"), row("existence/1.jpg", "Is there a cat?", "No"),
            row("existence/2.jpg", "Is there a car?", "Yes"), row("existence/2.jpg", "Is there a bus?", "No"),
            row("count/3.jpg", "Are there two dogs?", "Yes"), row("count/3.jpg", "Are there three dogs?", "No"),
            row("code_reasoning/0020.png", "Is a python code shown?", "Yes"),
            row("code_reasoning/0020.png", "Is a c++ code shown?", "No")]
    preds = {0: "Yes", 1: "No", 2: "Yes", 3: "Yes", 4: "No", 5: "No", 6: "Yes", 7: "no"}
    m, items = task.score(docs, preds)
    # existence: acc 3/4, acc+ 1/2 -> 125; count: acc 1/2, acc+ 0 -> 50; code_reasoning: 200.
    assert m["subtasks"]["existence"] == {"score": 125.0, "acc": 75.0, "acc_plus": 50.0, "n": 4, "n_images": 2}
    assert m["subtasks"]["count"]["score"] == 50.0 and m["subtasks"]["code_reasoning"]["score"] == 200.0
    assert m["perception"] == 175.0 and m["cognition"] == 200.0
    assert m["n_perception_subtasks"] == 2 and m["n_cognition_subtasks"] == 1
    assert m["n_other"] == 0 and m["n_docs"] == 8 and m["n_missing"] == 0


def test_missing_and_other_predictions_are_wrong():
    task = get_task("mme")
    docs = [row("OCR/1.jpg", "Is the word 'cat'?", "Yes"), row("OCR/1.jpg", "Is the word 'dog'?", "No")]
    m, items = task.score(docs, {0: "Church"})
    assert [it.parsed for it in items] == ["other", "other"]
    assert m["perception"] == 0.0 and m["n_other"] == 2 and m["n_missing"] == 1
    assert m["cognition"] != m["cognition"]  # NaN: no cognition subtask in the data


def test_subtask_names_and_unknown_category():
    assert len(PERCEPTION) == 10 and len(COGNITION) == 4
    m, _ = get_task("mme").score([row("artwork/images/1.jpg", "Q? Please answer yes or no.", "No",
                                      category="paintings")], {0: "No"})
    assert m["unknown_subtasks"] == ["paintings"] and m["subtasks"]["paintings"]["score"] == 200.0


def test_synthetic_docs_deterministic_schema_and_gold():
    task = get_task("mme")
    docs = task.synthetic_docs(48)
    assert len(docs) == 48 and docs == task.synthetic_docs(48) and docs != task.synthetic_docs(48, seed=1)
    assert len(task.synthetic_docs(5)) == 5
    check_schema(task, Docs(docs, "synthetic"))
    assert any("?  Please answer yes or no." in d["question"] for d in docs)
    metrics, _ = task.score(docs, {i: task.gold_text(d) for i, d in enumerate(docs)})
    assert metrics["perception"] == 2000.0 and metrics["cognition"] == 800.0  # every subtask at its 200 maximum
    assert all(s["score"] == 200.0 for s in metrics["subtasks"].values())


def test_doc_id_is_row_index():
    task = get_task("mme")
    docs = task.synthetic_docs(2)
    assert docs[0]["question_id"] == docs[1]["question_id"]
    assert [task.request(d, i, ()).doc_id for i, d in enumerate(docs)] == [0, 1]


def test_missing_column_fails_schema():
    doc = row("count/1.jpg", "Q?")
    del doc["category"]
    with pytest.raises(TaskError, match="'category'"):
        check_schema(get_task("mme"), Docs([doc], "test"))


def _write_layout(root):
    base = root / "MME"
    release = base / "MME_Benchmark_release_version"
    (release / "color").mkdir(parents=True)
    (release / "color" / "000000055072.txt").write_text(
        "Is there a brown giraffe in the image?  Please answer yes or no.\tYes\n"
        "Is there a black giraffe in the image? Please answer yes or no.\tNo\n")
    (release / "artwork" / "images").mkdir(parents=True)
    (release / "artwork" / "questions_answers_YN").mkdir()
    (release / "artwork" / "questions_answers_YN" / "14777.txt").write_text(
        "Is this artwork created by maris, jacob? Please answer yes or no.\tYes\n"
        "Is this artwork created by wtewael, joachim antonisz? Please answer yes or no.\tNo\n")
    questions = [("color/000000055072.jpg", "Is there a brown giraffe in the image?"),
                 ("color/000000055072.jpg", "Is there a black giraffe in the image?"),
                 ("artwork/images/14777.jpg", "Is this artwork created by maris, jacob?"),
                 ("artwork/images/14777.jpg", "Is this artwork created by wtewael, joachim antonisz?")]
    lines = [json.dumps({"question_id": q, "image": q, "text": text + SHORT, "category": q.split("/")[0]})
             for q, text in questions]
    (base / "llava_mme.jsonl").write_text("\n".join(lines) + "\n")
    return base


def test_llava_layout(tmp_path):
    base = _write_layout(tmp_path)
    task = get_task("mme")
    docs = task.llava_layout_docs(tmp_path)
    check_schema(task, Docs(docs, "llava"))
    assert [(d["question"], d["answer"]) for d in docs] == [
        ("Is there a brown giraffe in the image?  Please answer yes or no.", "Yes"),
        ("Is there a black giraffe in the image? Please answer yes or no.", "No"),
        ("Is this artwork created by maris, jacob? Please answer yes or no.", "Yes"),
        ("Is this artwork created by wtewael, joachim antonisz? Please answer yes or no.", "No")]
    assert docs[2]["image"] == "MME/MME_Benchmark_release_version/artwork/images/14777.jpg"
    assert docs[2]["category"] == "artwork"
    # The prompts rebuilt from the rows are the question file's text, byte for byte.
    texts = [json.loads(line)["text"] for line in (base / "llava_mme.jsonl").read_text().splitlines()]
    assert [task.prompt(d) for d in docs] == texts


def test_llava_layout_missing_answer(tmp_path):
    base = _write_layout(tmp_path)
    answers = base / "MME_Benchmark_release_version" / "color" / "000000055072.txt"
    answers.write_text("Other? Please answer yes or no.\tNo\n")
    with pytest.raises(TaskError, match="no answer for 'Is there a brown giraffe in the image\\?'"):
        get_task("mme").llava_layout_docs(tmp_path)


def test_match_original_answer_lines(tmp_path):
    _write_layout(tmp_path)
    task = get_task("mme")
    docs = task.llava_layout_docs(tmp_path)
    # Reference: model_vqa_loader.py answer lines: question_id = image path, prompt = the question-file text.
    lines = [{"question_id": d["question_id"], "prompt": task.prompt(d), "text": t}
             for d, t in zip(docs, ["Yes", "No", "No", "No"], strict=True)]
    assert task.match_answer_lines(lines[::-1], docs) == {0: "Yes", 1: "No", 2: "No", 3: "No"}
    no_prompt = [{k: v for k, v in line.items() if k != "prompt"} for line in lines]
    assert task.match_answer_lines(no_prompt, docs) == {0: "Yes", 1: "No", 2: "No", 3: "No"}
    assert task.match_answer_lines([{"question_id": 0, "text": "Yes"}], docs) is None  # keyed by row index
    with pytest.raises(TaskError, match="matches no row"):
        task.match_answer_lines([{"question_id": "color/1.jpg", "prompt": "Q?", "text": "Yes"}], docs)
    with pytest.raises(TaskError, match="repeats"):
        task.match_answer_lines([lines[0], lines[0]], docs)
    metrics, _ = task.score(docs, task.match_answer_lines(lines, docs))
    assert metrics["subtasks"]["color"]["score"] == 200.0 and metrics["subtasks"]["artwork"]["score"] == 50.0
