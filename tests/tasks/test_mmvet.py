"""MM-Vet: the bare-question prompt, the grader message of mm-vet_evaluator.py byte for byte, its grade parser
(split on one space, [0, 1]), the capability / combination aggregation with several runs and the evaluator's
numpy rounding, the convert_mmvet_for_eval.py results JSON, synthetic rows and the original layout."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.mmvet import (
    GRADER_PROMPT,
    aggregate_grades,
    capabilities,
    combination_name,
    grade_messages,
    parse_grade,
    reference_answer,
    submission_key,
)
from tasks.registry import get_task


def doc(qid="v1_0", answer="-1<AND>-5", capability="ocr,math", question="What is x in the equation?"):
    return {"question_id": qid, "question": question, "answer": answer, "capability": capability,
            "image": {"bytes": b"\x89PNG", "path": None}}


def test_prompt_golden():
    # Reference: llava-mm-vet.jsonl question 0; model_vqa.py sends `<image>\n` + text, no suffix, no CoT prefix.
    request = get_task("mmvet").request(doc(), 0, ("img",))
    assert request.messages[0].text == "<image>\nWhat is x in the equation?"
    assert request.settings.max_new_tokens == 1024 and request.image_mode == "crop"
    assert get_task("mmvet").request(doc(), 0, ()).messages[0].text == "What is x in the equation?"


def test_grader_prompt_bytes():
    # sha256 of the `prompt` constant of yuweihao/MM-Vet mm-vet_evaluator.py (identical at 97de1c0 and acde843).
    assert hashlib.sha256(GRADER_PROMPT.encode()).hexdigest() == (
        "d1b3e0a5b4e72c888b77164489d705bba4dd149934fff564dfba6443d81afe3f")
    assert GRADER_PROMPT.startswith("Compare the ground truth and prediction from AI models, to give a correctness "
                                    "score for the prediction. <AND> in the ground truth means it is totally right")
    assert ("Just complete the last space of the correctness score.\n\nQuestion | Ground truth | Prediction | "
            "Correctness\n--- | --- | --- | ---\nWhat is x in the equation? | -1 <AND> -5 | x = 3 | 0.0\n"
            ) in GRADER_PROMPT
    assert GRADER_PROMPT.endswith("and their actual physical characteristics. | 1.0\n")
    assert GRADER_PROMPT.count("\n") == 11  # instruction, blank line, header, rule, 7 rows


def test_grade_messages_golden():
    messages = grade_messages(doc(), "x = -1 or x = -5")
    assert len(messages) == 1 and messages[0]["role"] == "user"
    assert messages[0]["content"] == GRADER_PROMPT + (
        "\nWhat is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | ")
    retry = grade_messages(doc(answer="Tokyo<OR>東京"), "東京です", retry=True)[0]["content"]
    assert retry == GRADER_PROMPT + ("\nWhat is x in the equation? | Tokyo <OR> 東京 | 東京です | "
                                     "\nPredict the correctness of the answer (digit): ")
    assert grade_messages(doc(), "")[0]["content"].endswith(" | -1 <AND> -5 |  | ")


@pytest.mark.parametrize("text,grade", [
    ("0.5", 0.5), ("1.0", 1.0), ("0.0", 0.0), ("1", 1.0), ("0", 0.0),
    ("0.5\n", 0.5), ("\n0.8", 0.8),              # strip() after the split
    ("0.7 because", 0.7),
    (" 0.5", None),                              # split(" ")[0] is empty
    ("0.5\n0.6", None),
    ("1.1", None), ("-0.1", None), ("10", None),  # outside [0, 1]
    ("0.5.", None), ("Correctness: 0.5", None), ("", None), ("正确", None),
    ("１.０", 1.0),                               # float() reads full-width digits, as in the original
    ("nan", None), ("inf", None),
])
def test_parse_grade(text, grade):
    assert parse_grade(text) == grade


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_grade_never_raises(text):
    grade = parse_grade(text)
    assert grade is None or 0.0 <= grade <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.text(), st.text())
def test_capabilities_and_gold_never_raise(caps, truth):
    combination_name(capabilities({"capability": caps}))
    reference_answer(truth)


def test_capabilities_and_combination_names():
    assert capabilities(doc(capability="rec, ocr,")) == {"rec", "ocr"}
    assert capabilities(doc(capability=["math", "ocr"])) == {"math", "ocr"}
    assert capabilities({"capability": None}) == frozenset()
    assert combination_name(frozenset({"gen", "spat", "rec", "ocr"})) == "rec_ocr_gen_spat"
    assert combination_name(frozenset({"math", "zeta", "alpha"})) == "math_alpha_zeta"


def five_docs():
    return [doc("v1_0", capability="rec"), doc("v1_1", capability="rec,ocr"), doc("v1_2", capability="ocr,rec"),
            doc("v1_3", capability="ocr,spat,math"), doc("v1_4", capability="rec,know,gen")]


def test_aggregate_hand_computed():
    out = aggregate_grades(five_docs(), [1.0, 0.5, 0.0, 0.8, None])
    # total 2.3 / 5; rec (1 + .5 + 0 + 0) / 4; ocr (.5 + 0 + .8) / 3; the ungraded row counts 0.
    assert out["total"] == pytest.approx(46.0) and out["std"] == 0.0 and out["runs"] == [pytest.approx(46.0)]
    assert list(out["capabilities"]) == ["rec", "ocr", "know", "gen", "spat", "math"]
    assert out["capabilities"] == pytest.approx({"rec": 37.5, "ocr": 130 / 3, "know": 0.0, "gen": 0.0,
                                                 "spat": 80.0, "math": 80.0})
    assert list(out["combinations"]) == ["rec_ocr", "rec", "ocr_spat_math", "rec_know_gen"]
    assert out["combinations"] == pytest.approx({"rec_ocr": 25.0, "rec": 100.0, "ocr_spat_math": 80.0,
                                                 "rec_know_gen": 0.0})
    assert out["capability_counts"] == {"rec": 4, "ocr": 3, "know": 1, "gen": 1, "spat": 1, "math": 1}
    assert out["combination_counts"] == {"rec_ocr": 2, "rec": 1, "ocr_spat_math": 1, "rec_know_gen": 1}
    assert (out["n_graded"], out["n_ungraded"], out["n_runs"]) == (4, 1, 1)
    rounded = aggregate_grades(five_docs(), [1.0, 0.5, 0.0, 0.8, None], decimal_places=1)
    assert rounded["capabilities"]["ocr"] == 43.3 and rounded["total"] == 46.0


def test_aggregate_three_runs():
    docs = [doc("v1_0", capability="rec"), doc("v1_1", capability="ocr")]
    out = aggregate_grades(docs, [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], decimal_places=1)
    # run totals 50, 0, 100 -> mean 50, population std sqrt(5000 / 3) = 40.82 -> 40.8.
    assert out["runs"] == [50.0, 0.0, 100.0] and out["total"] == 50.0 and out["std"] == 40.8
    assert out["capabilities"] == {"rec": 66.7, "ocr": 33.3} and out["n_runs"] == 3
    assert aggregate_grades(docs, [[1.0, 0.0, 1.0], None])["runs"] == [50.0, 0.0, 50.0]
    with pytest.raises(TaskError, match="3 run"):
        aggregate_grades(docs, [[1.0, 0.0, 1.0], [1.0]])
    with pytest.raises(TaskError):
        aggregate_grades(docs, [1.0])
    assert math.isnan(aggregate_grades([], [])["total"])


def test_score_needs_judge():
    task = get_task("mmvet")
    docs = five_docs()
    metrics, items = task.score(docs, {"v1_0": "x = -1", "v1_3": "", "v1_4": "答案"})
    assert metrics == {"status": "needs_judge", "n_docs": 5, "n_missing": 2, "n_answered": 3}
    assert [it.prediction for it in items] == ["x = -1", None, None, "", "答案"]
    assert all(it.score is None for it in items) and not task.scored_locally and task.needs_judge


def test_judge_protocol():
    """Reference: mm-vet_evaluator.py: the first ask at temperature 0.0 without the suffix, then re-asks with the
    retry suffix at 0.0, 0.5, 1.0, 1.5 (the temperature is raised after each re-ask; the sixth call's reply is
    discarded), max_tokens 3; the dated gpt-4-0613 by default (docs/deviations.md)."""
    protocol = get_task("mmvet").judge
    assert (protocol.model, protocol.max_tokens, protocol.attempts) == ("gpt-4-0613", 3, 5)
    assert protocol.temperatures == (0.0, 0.0, 0.5, 1.0, 1.5)
    assert protocol.messages(doc(), "x = 3", 0) == grade_messages(doc(), "x = 3")
    assert protocol.messages(doc(), "x = 3", 1) == grade_messages(doc(), "x = 3", retry=True)
    assert protocol.messages(doc(), "x = 3", 2) == grade_messages(doc(), "x = 3", retry=True)
    assert protocol.parse("0.5\n") == 0.5 and protocol.parse(" 0.5") is None
    docs = five_docs()
    grades = [[1.0, 0.5], [0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [0.0, 1.0]]
    assert protocol.aggregate(docs, grades) == aggregate_grades(docs, grades)


def test_submission_json():
    task = get_task("mmvet")
    docs = [doc("v1_0"), doc("v1_10"), doc("v1_2")]
    suffix, content = task.submission(docs, {"v1_0": "x = -1 or x = -5", "v1_10": "東京", "v1_2": 'say "hi"'})
    # Reference: convert_mmvet_for_eval.py json.dump(indent=2): question order, ASCII escapes, no final newline.
    assert suffix == ".json"
    assert content == (b'{\n  "v1_0": "x = -1 or x = -5",\n  "v1_10": "\\u6771\\u4eac",\n'
                       b'  "v1_2": "say \\"hi\\""\n}')
    assert json.loads(content) == {"v1_0": "x = -1 or x = -5", "v1_10": "東京", "v1_2": 'say "hi"'}
    # LLaVA's own question file uses integer ids: the key is "v1_" + id.
    _, llava = task.submission([doc(0), doc(217)], {0: "a", 217: "b"})
    assert list(json.loads(llava)) == ["v1_0", "v1_217"]
    assert [submission_key(k) for k in (0, "5", "v1_7")] == ["v1_0", "v1_5", "v1_7"]
    with pytest.raises(TaskError, match="1 question"):
        task.submission(docs, {"v1_0": "a", "v1_2": "b"})
    with pytest.raises(TaskError, match="'v1_0'"):
        task.submission([doc(0), doc("v1_0")], {0: "a", "v1_0": "b"})


def test_reference_answer():
    assert reference_answer("-1<AND>-5") == "-1 and -5"
    assert reference_answer("2<OR>two") == "2"
    assert reference_answer("Tokyo") == "Tokyo" and reference_answer("") == ""


def test_synthetic_docs():
    task = get_task("mmvet")
    docs = task.synthetic_docs(10, seed=2)
    assert docs == task.synthetic_docs(10, seed=2) and len(docs) == 10
    assert len({d["question_id"] for d in docs}) == 10
    check_schema(task, Docs(docs, "synthetic"))
    golds = {task.doc_id(d, i): task.gold_text(d) for i, d in enumerate(docs)}
    metrics, _ = task.score(docs, golds)
    assert metrics == {"status": "needs_judge", "n_docs": 10, "n_missing": 0, "n_answered": 10}
    for d in docs:
        gold = task.gold_text(d)
        alternatives = d["answer"].split("<OR>")
        assert gold in alternatives or all(part in gold for part in d["answer"].split("<AND>"))
        assert capabilities(d) <= {"rec", "ocr", "spat", "math"}
    assert any("<AND>" in d["answer"] for d in docs) and any("<OR>" in d["answer"] for d in docs)
    # A grader that marks every gold answer right gives the maximum.
    out = aggregate_grades(docs, [1.0] * len(docs))
    assert out["total"] == 100.0 and set(out["capabilities"].values()) == {100.0}
    json.loads(task.submission(docs, golds)[1])


def test_missing_column_fails_schema():
    row = doc()
    del row["capability"]
    with pytest.raises(TaskError, match="'capability'"):
        check_schema(get_task("mmvet"), Docs([row], "test"))


def test_llava_layout(tmp_path):
    bench = tmp_path / "mm-vet"
    bench.mkdir()
    (bench / "llava-mm-vet.jsonl").write_text(
        '{"image": "v1_0.png", "text": "What is x in the equation?", "category": "conv", "question_id": 0}\n'
        '{"image": "v1_1.png", "text": "What is d in the last equation?", "category": "conv", "question_id": 1}\n')
    task = get_task("mmvet")
    with pytest.raises(TaskError, match="mm-vet.json not found"):
        task.llava_layout_docs(tmp_path)
    meta = {"v1_0": {"imagename": "v1_0.png", "capability": ["ocr", "math"], "question": "What is x in the equation?",
                     "answer": "-1<AND>-5"},
            "v1_1": {"imagename": "v1_1.png", "capability": ["ocr", "math"],
                     "question": "What is d in the last equation?", "answer": "1.25<OR>5/4"}}
    (bench / "mm-vet.json").write_text(json.dumps(meta))
    rows = task.llava_layout_docs(tmp_path)
    assert rows == [
        {"question_id": 0, "question": "What is x in the equation?", "answer": "-1<AND>-5", "capability": "ocr,math",
         "image": "mm-vet/images/v1_0.png"},
        {"question_id": 1, "question": "What is d in the last equation?", "answer": "1.25<OR>5/4",
         "capability": "ocr,math", "image": "mm-vet/images/v1_1.png"}]
    check_schema(task, Docs(rows, "llava"))
    assert task.llava_layout_docs(bench)[1]["image"] == "images/v1_1.png"
    del meta["v1_1"]
    (bench / "mm-vet.json").write_text(json.dumps(meta))
    with pytest.raises(TaskError, match="'v1_1'"):
        task.llava_layout_docs(tmp_path)
