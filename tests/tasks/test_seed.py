"""SEED-Bench: the llava-seed-bench.jsonl prompt bytes, exact-match scoring of convert_seed_for_submission.py
(no normalisation at all), per-type and image/video micro averages, the middle-frame rule for video rows,
the image/video/all row selection, scoring rows without image columns, the original layout and the leaderboard
JSONL."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.cli import main
from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.registry import get_task
from tasks.seed import middle_frame


def row(qid, answer="A", data_type="image", type_id=5, frames=1):
    return {"question_id": qid, "question": "How many towels are in the image?", "choice_a": "One",
            "choice_b": "Two", "choice_c": "Three", "choice_d": "Four", "answer": answer, "data_type": data_type,
            "question_type_id": type_id, "image": [{"bytes": bytes([i]), "path": None} for i in range(frames)]}


def test_prompt_golden():
    # Reference: llava-seed-bench.jsonl line of question 101669 (first line of LLaVA's upload file).
    text = get_task("seed_image").request(row("101669"), 0, ("img",)).messages[0].text
    assert text == ("<image>\nHow many towels are in the image?\nA. One\nB. Two\nC. Three\nD. Four\n"
                    "Answer with the option's letter from the given choices directly.")


def test_prompt_video_golden():
    doc = row("1559", answer="C", data_type="video", type_id=10, frames=8)
    doc.update(question="What is the action being carried out in the video?", choice_a="Moving a cup up",
               choice_b="Pushing a cup from left to right", choice_c="Putting a cup onto a table",
               choice_d="Lifting a cup with one hand")
    text = get_task("seed_video").request(doc, 0, ("img",)).messages[0].text
    assert text == ("<image>\nWhat is the action being carried out in the video?\nA. Moving a cup up\n"
                    "B. Pushing a cup from left to right\nC. Putting a cup onto a table\n"
                    "D. Lifting a cup with one hand\nAnswer with the option's letter from the given choices directly.")


@pytest.mark.parametrize("text,score", [
    ("A", 1.0), ("B", 0.0), ("A.", 0.0), ("a", 0.0), (" A", 0.0), ("A\n", 0.0), ("(A)", 0.0), ("A. One", 0.0),
    ("", 0.0), ("Ａ", 0.0), ("答案是A", 0.0), ("The answer is A", 0.0),
])
def test_exact_match(text, score):
    task = get_task("seed_all")
    doc = row("1")
    assert task.score_item(task.parse(text, doc), doc) == score


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    task = get_task("seed_all")
    assert task.score_item(task.parse(text, row("1")), row("1")) in (0.0, 1.0)


def test_aggregate_types_and_micro_totals():
    task = get_task("seed_all")
    docs = [row("1", "A", type_id=1), row("2", "B", type_id=1), row("3", "C", type_id=5),
            row("4", "D", "video", 10, 8), row("5", "A", "video", 12, 8)]
    metrics, _ = task.score(docs, {"1": "A", "2": "B", "3": "c", "4": "D"})  # "5" missing
    assert metrics["accuracy"] == pytest.approx(60.0)
    assert metrics["accuracy_image"] == pytest.approx(200 / 3) and metrics["accuracy_video"] == 50.0
    assert metrics["types"] == {"Scene Understanding": 100.0, "Instances Counting": 0.0,
                                "Action Recognition": 100.0, "Procedure Understanding": 0.0}
    assert metrics["n_docs"] == 5 and metrics["n_missing"] == 1


def test_image_and_video_tasks_keep_their_rows():
    docs = [row("1", "A"), row("2", "B", "video", 11, 8), row("3", "C", type_id="9")]
    preds = {"1": "A", "2": "B", "3": "D"}
    image, _ = get_task("seed_image").score(docs, preds)
    video, _ = get_task("seed_video").score(docs, preds)
    assert image["n_docs"] == 2 and image["accuracy"] == 50.0 and image["types"]["Text Understanding"] == 0.0
    assert video["n_docs"] == 1 and video["accuracy"] == 100.0 and "accuracy_image" not in video
    assert [get_task(n).keep_rows for n in ("seed_image", "seed_video", "seed_all")] == [
        ("data_type", ("image",)), ("data_type", ("video",)), None]


def test_question_type_optional():
    doc = row("1")
    del doc["question_type_id"]
    metrics, _ = get_task("seed_image").score([doc], {"1": "A"})
    assert metrics["accuracy"] == 100.0 and metrics["types"] == {}


def test_middle_frame():
    # Reference: extract_video_frames.py get_index(n, 1) = int((n - 1) / 2).
    assert [middle_frame(n) for n in (1, 2, 3, 4, 8, 9)] == [0, 0, 1, 1, 3, 4]
    task = get_task("seed_video")
    assert task.image_values(row("1", data_type="video", frames=8)) == [{"bytes": bytes([3]), "path": None}]
    assert task.image_values(row("1", frames=1)) == [{"bytes": bytes([0]), "path": None}]
    assert task.image_values({**row("1"), "image": "SEED-Bench-image/x.jpg"}) == ["SEED-Bench-image/x.jpg"]
    with pytest.raises(TaskError, match="'7'.*no image"):
        task.image_values(row("7", data_type="video", frames=0))
    with pytest.raises(TaskError, match="no image"):
        task.image_values({**row("8"), "image": None})


@pytest.mark.parametrize("name", ["seed_image", "seed_video", "seed_all"])
def test_synthetic_docs(name):
    task = get_task(name)
    docs = task.synthetic_docs(9, seed=2)
    assert docs == task.synthetic_docs(9, seed=2) and len(docs) == 9
    assert len({d["question_id"] for d in docs}) == 9
    check_schema(task, Docs(docs, "synthetic"))
    metrics, _ = task.score(docs, {task.doc_id(d, i): task.gold_text(d) for i, d in enumerate(docs)})
    assert metrics["accuracy"] == 100.0 and metrics["n_docs"] == 9
    kinds = {d["data_type"] for d in docs}
    assert kinds == {"image": {"image"}, "video": {"video"}, "all": {"image", "video"}}[name.split("_")[1]]
    for doc in docs:
        assert len(task.image_values(doc)) == 1
        assert (doc["data_type"] == "video") == (len(doc["image"]) == 4)


def test_missing_column_fails_schema():
    doc = row("1")
    del doc["choice_c"]
    with pytest.raises(TaskError, match="'choice_c'"):
        check_schema(get_task("seed_image"), Docs([doc], "test"))


@pytest.mark.parametrize("name,answered,expected", [("seed_image", ("1", "2"), 50.0),
                                                     ("seed_all", ("1", "2", "3"), 100 / 3)])
def test_score_rows_without_image_columns(tmp_path, name, answered, expected):
    # `llava-eval score` never needs the images: rows with no `image` column score as for every other task.
    rows = [{k: v for k, v in row(qid, answer, data_type).items() if k != "image"}
            for qid, answer, data_type in (("1", "A", "image"), ("2", "B", "image"), ("3", "C", "video"))]
    texts = {"1": "A", "2": "A", "3": "D"}
    data, answers = tmp_path / "rows.jsonl", tmp_path / "answers.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers.write_text("".join(json.dumps({"question_id": q, "text": texts[q]}) + "\n" for q in answered))
    result = CliRunner().invoke(main, ["score", "--task", name, "--data", str(data), "--predictions", str(answers)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["accuracy"] == pytest.approx(expected) and metrics["n_missing"] == 0


def test_row_without_frames_is_an_error_at_generation_only():
    task = get_task("seed_image")
    doc = {k: v for k, v in row("9").items() if k != "image"}
    check_schema(task, Docs([doc], "test"))
    with pytest.raises(TaskError, match="'9'.*no image"):
        task.image_values(doc)


def test_llava_layout(tmp_path):
    bench = tmp_path / "seed_bench"
    bench.mkdir()
    questions = [
        {"question_id": "101669", "question": "How many towels are in the image?", "choice_a": "One",
         "choice_b": "Two", "choice_c": "Three", "choice_d": "Four", "answer": "A", "data_type": "image",
         "question_type_id": 5, "data_id": "1454426_2591111986.jpg"},
        {"question_id": "1559", "question": "What is the action?", "choice_a": "a", "choice_b": "b",
         "choice_c": "c", "choice_d": "d", "answer": "C", "data_type": "video", "question_type_id": 10,
         "data_id": "1559.webm"},
        {"question_id": "1600", "question": "What comes next?", "choice_a": "a", "choice_b": "b",
         "choice_c": "c", "choice_d": "d", "answer": "D", "data_type": "video", "question_type_id": 11,
         "data_id": "P01/P01_11.MP4", "segment": [1.0, 9.0]},
    ]
    (bench / "SEED-Bench.json").write_text(json.dumps({"questions": questions, "question_type": {}}))
    (bench / "llava-seed-bench.jsonl").write_text(json.dumps(
        {"image": "SEED-Bench-video-image/10_1559.png", "text": "...", "question_id": 1559}) + "\n")
    rows = get_task("seed_all").llava_layout_docs(tmp_path)
    assert [r["image"] for r in rows] == [["seed_bench/SEED-Bench-image/1454426_2591111986.jpg"],
                                          ["seed_bench/SEED-Bench-video-image/10_1559.png"],
                                          ["seed_bench/SEED-Bench-video-image/11_1600.png"]]
    check_schema(get_task("seed_all"), Docs(rows, "llava"))
    assert [r["question_id"] for r in get_task("seed_image").llava_layout_docs(bench)] == ["101669"]
    assert get_task("seed_image").llava_layout_docs(bench)[0]["image"] == ["SEED-Bench-image/1454426_2591111986.jpg"]
    assert len(get_task("seed_video").llava_layout_docs(tmp_path)) == 2
    with pytest.raises(TaskError, match="SEED-Bench.json"):
        get_task("seed_all").llava_layout_docs(tmp_path / "seed_bench" / "nothing")


def test_submission_jsonl():
    docs = [row("101669", "B"), row(104933, "B", "video", 10, 8), row("89257", "A")]
    preds = {"101669": "B", 104933: "B", "89257": "The answer is A"}
    suffix, content = get_task("seed_all").submission(docs, preds)
    assert suffix == ".jsonl"
    # Reference: convert_seed_for_submission.py, json.dumps defaults, string ids, annotation order.
    assert content.decode() == ('{"question_id": "101669", "prediction": "B"}\n'
                                '{"question_id": "104933", "prediction": "B"}\n'
                                '{"question_id": "89257", "prediction": "The answer is A"}\n')
    _, image_only = get_task("seed_image").submission(docs, preds)
    assert [json.loads(line)["question_id"] for line in image_only.decode().splitlines()] == ["101669", "89257"]
    assert json.loads(get_task("seed_all").submission([row("1")], {"1": "答"})[1])["prediction"] == "答"
    with pytest.raises(TaskError, match="1 question"):
        get_task("seed_all").submission(docs, {"101669": "B", 104933: "B"})


def test_task_settings():
    task = get_task("seed_all")
    assert task.max_new_tokens == 128 and task.image_mode is None and task.scored_locally
    assert task.hub.path == "lmms-lab/SEED-Bench" and task.hub.split == "test"
    assert math.isnan(task.score([], {})[0]["accuracy"])
