"""LLaVA-Bench (In-the-Wild): the raw-question prompt, the GPT-4 review message of eval_gpt_review_bench.py
byte for byte, its score parser with the single-space quirks, summarize_gpt_review.py's relative scores
(3-decimal means first, (-1, -1) kept), the needs-judge scoring stub, synthetic rows and the original layout."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.llava_bench import average_runs, parse_review_scores, review_messages, summarize
from tasks.registry import get_task

RULE = ("We would like to request your feedback on the performance of two AI assistants in response to the user "
        "question displayed above. The user asks the question on observing an image. For your reference, the "
        "visual content in the image is represented with a few sentences describing the image. \nPlease rate the "
        "helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall "
        "score on a scale of 1 to 10, where a higher score indicates better overall performance.\nPlease first "
        "output a single line containing only two values indicating the scores for Assistant 1 and 2, "
        "respectively. The two scores are separated by a space.\nIn the subsequent line, please provide a "
        "comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in "
        "which the responses were presented does not affect your judgment.")


def doc(qid=0, category="conv", caption="An aerial view of Diamond Head in the Hawaiian Islands."):
    return {"question_id": qid, "question": "What is the name of this famous sight in the photo?",
            "gpt_answer": "The famous sight in the photo is Diamond Head.", "caption": caption,
            "category": category, "image_id": "001", "image": {"bytes": b"\x89PNG", "path": None}}


def test_prompt_golden():
    # Reference: questions.jsonl question 0; model_vqa.py sends `<image>\n` + text, no suffix.
    request = get_task("llava_bench").request(doc(), 0, ("img",))
    assert request.messages[0].text == "<image>\nWhat is the name of this famous sight in the photo?"
    assert request.settings.max_new_tokens == 1024 and request.image_mode == "crop"


def test_review_messages_golden():
    messages = review_messages(doc(category="detail", caption=["First caption.", "Second caption."]),
                               "It is Diamond Head, a volcanic crater.\n\nIn Hawaii.")
    assert messages[0] == {"role": "system",
                           "content": "You are a helpful and precise assistant for checking the quality of the answer."}
    assert messages[1]["role"] == "user" and len(messages) == 2
    assert messages[1]["content"] == (
        "[Context]\nFirst caption.\nSecond caption.\n\n"
        "[Question]\nWhat is the name of this famous sight in the photo?\n\n"
        "[Assistant 1]\nThe famous sight in the photo is Diamond Head.\n\n[End of Assistant 1]\n\n"
        "[Assistant 2]\nIt is Diamond Head, a volcanic crater.\n\nIn Hawaii.\n\n[End of Assistant 2]\n\n"
        "[System]\n" + RULE + "\n\n")


def test_review_messages_string_caption_and_categories():
    for category in ("conv", "detail", "complex"):  # rule.json: three identical rules
        content = review_messages(doc(category=category), "")[1]["content"]
        assert content.startswith("[Context]\nAn aerial view of Diamond Head in the Hawaiian Islands.\n\n[Question]\n")
        assert "[Assistant 2]\n\n\n[End of Assistant 2]" in content and content.endswith(RULE + "\n\n")
    with pytest.raises(TaskError, match="unknown category 'chat'"):
        review_messages(doc(category="chat"), "x")


@pytest.mark.parametrize("text,pair", [
    ("7 9\nAssistant 1 provided a correct answer.", (7.0, 9.0)),
    ("9 7.5", (9.0, 7.5)),
    ("8,6\nexplanation", (8.0, 6.0)),        # comma -> space
    ("8, 6\nexplanation", None),              # comma + space -> two spaces -> three fields
    ("8  6", None),
    ("7 9 ", None),                           # trailing space is a third (empty) field
    ("Scores: 7 9", None),
    ("\n7 9", None),                          # the first line is empty
    ("9 7\r\nexplanation", (9.0, 7.0)),      # float() strips the \r
    ("7\t9", None),                           # one field: tabs are not separators
    ("１０ ８", (10.0, 8.0)),                  # float() reads full-width digits, as in the original
    ("十 八", None),
    ("", None),
    ("7", None),
])
def test_parse_review_scores(text, pair):
    assert parse_review_scores(text) == pair


def test_parse_review_scores_nan_like_original():
    ref, model = parse_review_scores("nan 8")  # float("nan") parses in the original too
    assert math.isnan(ref) and model == 8.0


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    result = parse_review_scores(text)
    assert result is None or len(result) == 2


def test_summarize_hand_computed():
    pairs = {"conv": [(8, 6), (9, 7)], "detail": [(9, 5), (7, 4), (8, 6)], "complex": [(10, 10), None]}
    out = summarize(pairs)
    # conv: means 8.5 / 6.5 -> 76.47 -> 76.5; detail 8.0 / 5.0 -> 62.5; complex keeps (-1, -1): 4.5 / 4.5.
    assert out["conv"] == {"relative": 76.5, "reference": 85.0, "model": 65.0, "n": 2}
    assert out["detail"] == {"relative": 62.5, "reference": 80.0, "model": 50.0, "n": 3}
    assert out["complex"] == {"relative": 100.0, "reference": 45.0, "model": 45.0, "n": 2}
    # all: 50/7 = 7.142857 -> 7.143, 37/7 = 5.285714 -> 5.286; 5.286 / 7.143 = 74.0025 -> 74.0.
    assert out["all"] == {"relative": 74.0, "reference": 71.4, "model": 52.9, "n": 7}
    assert out["n_unparsed"] == 1 and list(out) == ["complex", "conv", "detail", "all", "n_unparsed"]
    dropped = summarize(pairs, drop_unparsed=True)
    # all without the failure: 51/6 = 8.5, 38/6 = 6.3333 -> 6.333; 6.333 / 8.5 = 74.506 -> 74.5.
    assert dropped["complex"]["n"] == 1 and dropped["complex"]["relative"] == 100.0
    assert dropped["all"] == {"relative": 74.5, "reference": 85.0, "model": 63.3, "n": 6}
    assert dropped["n_unparsed"] == 1


def test_summarize_rounds_means_to_three_decimals_first():
    # 0.3334 -> 0.333 and 0.3336 -> 0.334: 0.334 / 0.333 = 100.30 (unrounded means would give 100.06 -> 100.1).
    assert summarize({"c": [(0.3334, 0.3336)]})["c"] == {"relative": 100.3, "reference": 3.3, "model": 3.3, "n": 1}
    assert math.isnan(summarize({"c": [(1, 1), (-1, 3)]})["c"]["relative"])  # zero reference mean


# Reference: eval.zip reviews/llava-v1.5-7b-eval1.jsonl (GPT-4-0314 reviews of the official 7B answers);
# summarize_gpt_review.py prints all 64.7, complex 77.6, conv 59.3, detail 47.7.
REVIEWS_7B_EVAL1 = {
    "conv": "7,9 9,2 9,2 10,10 8,6 9,8.5 9,2 9,9 9,2 9,2 10,10 9,4 9,2 9,6 7,4 9,1 10,10",
    "detail": "8,6 9,2 9,6 8,7 9,5 9,4 8,5 9,4 9,2 9,3 9,2 9,2 9,3 9,6 9,6",
    "complex": "8,6 9,8 8,7.5 8,9 9,8.5 9,7 8,9 9,7.5 9,7.5 8,7.5 9,7.5 9,8 8,6 8,6 9,6.5 5,7 9,6 9,2 9,3 9,4 "
               "9,6 9,6 9,7 9,6 8,7 9,7 9,9 8,4",
}


def test_summarize_reproduces_official_7b_review():
    pairs = {c: [parse_review_scores(p) for p in s.split()] for c, s in REVIEWS_7B_EVAL1.items()}
    out = summarize(pairs)
    assert {k: out[k]["relative"] for k in ("all", "complex", "conv", "detail")} == {
        "all": 64.7, "complex": 77.6, "conv": 59.3, "detail": 47.7}
    assert (out["all"]["reference"], out["all"]["model"], out["all"]["n"]) == (87.0, 56.3, 60)
    # Reference: protocol 3.10, the reported number is the mean of three runs.
    assert average_runs([64.7, 65.3, 66.3]) == 65.4 and average_runs([72.8, 72.7, 72.1]) == 72.5


def test_score_needs_judge():
    task = get_task("llava_bench")
    docs = [doc(0), doc(1, "detail"), doc(2, "complex")]
    metrics, items = task.score(docs, {0: "Diamond Head.", 2: ""})
    assert metrics == {"status": "needs_judge", "n_docs": 3, "n_missing": 1, "n_answered": 2}
    assert [it.prediction for it in items] == ["Diamond Head.", None, ""]
    assert all(it.score is None for it in items)
    assert not task.scored_locally and task.needs_judge and task.primary_metric not in metrics
    with pytest.raises(TaskError):
        task.submission(docs, {})


def test_summarize_reviews_by_category():
    task = get_task("llava_bench")
    docs = [doc(0), doc(1, "detail"), doc(2, "conv"), doc(3, "complex")]
    reviews = {0: "8 6\nok", 1: "9 9\nok", 2: "garbled"}  # 3 not reviewed
    out = task.summarize_reviews(docs, reviews)
    # conv: (8, 6) and the unparsed review as (-1, -1): 3.5 / 2.5 -> 2.5 / 3.5 = 71.4.
    assert out["conv"] == {"relative": 71.4, "reference": 35.0, "model": 25.0, "n": 2}
    assert out["detail"]["relative"] == 100.0 and "complex" not in out and out["n_unparsed"] == 1
    assert task.review_messages(docs[0], "a") == review_messages(docs[0], "a")


def test_judge_protocol():
    """Reference: eval_gpt_review_bench.py: gpt-4-0314 (protocol 3.10), temperature 0.2, max_tokens 1024, the same
    review request on every attempt; up to 3 attempts when a review does not parse (docs/deviations.md)."""
    protocol = get_task("llava_bench").judge
    assert (protocol.model, protocol.max_tokens, protocol.temperatures) == ("gpt-4-0314", 1024, (0.2, 0.2, 0.2))
    assert protocol.attempts == 3
    assert all(protocol.messages(doc(), "a", attempt) == review_messages(doc(), "a") for attempt in range(3))
    assert protocol.parse("8 6.5\nBoth fine.") == [8.0, 6.5] and protocol.parse("8, 6\n") is None
    # verdicts[i][r]: two runs over a conv and a detail question; each run summarised, then the runs averaged
    metrics = protocol.aggregate([doc(0), doc(1, "detail")], [[[8, 6], [8, 8]], [[10, 5], [10, 10]]])
    assert metrics["runs_relative"] == [61.1, 100.0] and metrics["relative_score"] == round((61.1 + 100.0) / 2, 1)
    assert metrics["categories"] == {"conv": 87.5, "detail": 75.0} and len(metrics["per_run"]) == 2


def test_synthetic_docs():
    task = get_task("llava_bench")
    docs = task.synthetic_docs(7, seed=3)
    assert docs == task.synthetic_docs(7, seed=3) and len(docs) == 7
    assert len({d["question_id"] for d in docs}) == 7
    assert [d["category"] for d in docs] == ["conv", "detail", "complex"] * 2 + ["conv"]
    check_schema(task, Docs(docs, "synthetic"))
    golds = {task.doc_id(d, i): task.gold_text(d) for i, d in enumerate(docs)}
    metrics, _ = task.score(docs, golds)
    assert metrics == {"status": "needs_judge", "n_docs": 7, "n_missing": 0, "n_answered": 7}
    for d in docs:
        content = review_messages(d, task.gold_text(d))[1]["content"]
        assert content.count(d["gpt_answer"]) >= 2 and d["caption"] in content
        assert d["caption"].split(" on ")[0].lower() in d["gpt_answer"].lower() or d["category"] == "complex"
    # A judge that scores the gold answer like the reference gives the maximum relative score.
    assert task.summarize_reviews(docs, {k: "8 8\nsame" for k in golds})["all"]["relative"] == 100.0


def test_missing_column_fails_schema():
    row = doc()
    del row["gpt_answer"]
    with pytest.raises(TaskError, match="'gpt_answer'"):
        check_schema(get_task("llava_bench"), Docs([row], "test"))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_llava_layout(tmp_path):
    bench = tmp_path / "llava-bench-in-the-wild"
    bench.mkdir()
    write_jsonl(bench / "questions.jsonl", [
        {"question_id": 0, "image": "001.jpg", "text": "What is the name of this famous sight in the photo?",
         "category": "conv"},
        {"question_id": 1, "image": "001.jpg", "text": "Describe this photo in detail.", "category": "detail"},
        {"question_id": 2, "image": "002.jpg", "text": "Why is it funny?", "category": "complex"}])
    write_jsonl(bench / "context.jsonl", [{"id": "001", "image": "001.jpg", "caption": "Diamond Head."},
                                          {"id": "002", "image": "002.jpg", "caption": ["A cat.", "A hat."]}])
    write_jsonl(bench / "answers_gpt4.jsonl", [{"question_id": i, "text": f"ref {i}", "answer_id": "x"}
                                               for i in range(3)])
    task = get_task("llava_bench")
    rows = task.llava_layout_docs(tmp_path)
    assert [(r["question_id"], r["category"], r["gpt_answer"], r["image"]) for r in rows] == [
        (0, "conv", "ref 0", "llava-bench-in-the-wild/images/001.jpg"),
        (1, "detail", "ref 1", "llava-bench-in-the-wild/images/001.jpg"),
        (2, "complex", "ref 2", "llava-bench-in-the-wild/images/002.jpg")]
    assert rows[2]["caption"] == ["A cat.", "A hat."] and rows[1]["question"] == "Describe this photo in detail."
    check_schema(task, Docs(rows, "llava"))
    assert review_messages(rows[2], "m")[1]["content"].startswith("[Context]\nA cat.\nA hat.\n\n")
    assert task.llava_layout_docs(bench)[0]["image"] == "images/001.jpg"
    write_jsonl(bench / "answers_gpt4.jsonl", [{"question_id": i, "text": "r"} for i in (0, 2, 1)])
    with pytest.raises(TaskError, match="answers_gpt4.jsonl:2"):
        task.llava_layout_docs(tmp_path)
    (bench / "context.jsonl").unlink()
    with pytest.raises(TaskError, match="context.jsonl not found"):
        task.llava_layout_docs(tmp_path)
