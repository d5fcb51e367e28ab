"""ScienceQA-IMG: llava_test_CQM-A.json + --single-pred-prompt prompt bytes (Context line only with a hint; the
released builder's whitespace rule), eval_science_qa.py letter extraction (exact letter, "X. ", one "The answer is
X."; FAILED otherwise, no random letter), IMG accuracy, the crop image mode, the original layout and matching of
original answer files. Golden prompts are problems 11, 170 and 5 of the test split as the official 13B output file
records them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.registry import get_task
from tasks.scienceqa import FAILED, choice_index, extract_letter

INSTRUCTION = "\nAnswer with the option's letter from the given choices directly."
GORDON_HINT = (
    "People can use the engineering-design process to develop solutions to problems. One step in the process is "
    "testing if a potential solution meets the requirements of the design.\nThe passage below describes how the "
    "engineering-design process was used to test a solution to a problem. Read the passage. Then answer the "
    "question below.\n\nGordon was an aerospace engineer who was developing a parachute for a spacecraft that "
    "would land on Mars. He needed to add a vent at the center of the parachute so the spacecraft would land "
    "smoothly. However, the spacecraft would have to travel at a high speed before landing. If the vent was too "
    "big or too small, the parachute might swing wildly at this speed. The movement could damage the spacecraft."
    "\nSo, to help decide how big the vent should be, Gordon put a parachute with a 1 m vent in a wind tunnel. "
    "The wind tunnel made it seem like the parachute was moving at 200 km per hour. He observed the parachute to "
    "see how much it swung.\nFigure: a spacecraft's parachute in a wind tunnel.")


def row(question="What is the name of the colony shown?", choices=("Maryland", "New Hampshire", "Rhode Island",
        "Vermont"), answer=1, hint="", subject="social science"):
    return {"question": question, "choices": list(choices), "answer": answer, "hint": hint, "subject": subject,
            "image": {"bytes": b"x", "path": None}}


def test_prompt_golden_no_context():
    text = get_task("scienceqa_img").request(row(), 0, ("img",)).messages[0].text
    assert text == ("<image>\nWhat is the name of the colony shown?\nA. Maryland\nB. New Hampshire\n"
                    "C. Rhode Island\nD. Vermont\nAnswer with the option's letter from the given choices directly.")


def test_prompt_golden_context():
    doc = row("Which property do these three objects have in common?", ("blue", "hard", "sticky"), 1,
              hint="Select the best answer.", subject="natural science")
    assert get_task("scienceqa_img").request(doc, 0, ("img",)).messages[0].text == (
        "<image>\nContext: Select the best answer.\nWhich property do these three objects have in common?\n"
        "A. blue\nB. hard\nC. sticky\nAnswer with the option's letter from the given choices directly.")


def test_prompt_golden_multiline_context():
    doc = row("Which of the following could Gordon's test show?",
              ("if the spacecraft was damaged when using a parachute with a 1 m vent going 200 km per hour",
               "how steady a parachute with a 1 m vent was at 200 km per hour",
               "whether a parachute with a 1 m vent would swing too much at 400 km per hour"), 1, hint=GORDON_HINT)
    assert get_task("scienceqa_img").request(doc, 0, ("img",)).messages[0].text == (
        "<image>\nContext: " + GORDON_HINT + "\nWhich of the following could Gordon's test show?\n"
        "A. if the spacecraft was damaged when using a parachute with a 1 m vent going 200 km per hour\n"
        "B. how steady a parachute with a 1 m vent was at 200 km per hour\n"
        "C. whether a parachute with a 1 m vent would swing too much at 400 km per hour" + INSTRUCTION)


def test_prompt_hint_kept_raw_and_no_na():
    task = get_task("scienceqa_img")
    # A trailing space inside the hint survives (problem 'African wild dogs' of the test split).
    doc = row("Which trait do African wild dogs have?", ("They live in packs.", "They have four legs."), 1,
              hint="This picture shows two African wild dogs. \nAfrican wild dogs live in groups called packs.")
    assert task.prompt(doc).startswith("Context: This picture shows two African wild dogs. \nAfrican wild dogs")
    for hint in ("", None):
        assert task.prompt(row(hint=hint)).startswith("What is the name")  # no "Context: N/A"
    # model_vqa_science.py deletes every "<image>" and strips the text.
    assert task.prompt(row(question="<image> Which colony?", choices=("A1", "B1 "))) == (
        "Which colony?\nA. A1\nB. B1" + INSTRUCTION)


# Whitespace: the released builder strips the hint, then makes one `replace("  ", " ")` pass over the whole
# text and strips it; "<image>" is deleted only afterwards. Expected strings are written out by hand from
# that rule (one pass turns 2 spaces into 1, 3 into 2, 4 into 2).
def test_prompt_whitespace_collapsed_once():
    doc = row("Which   animal is also adapted?", ("camel  ", "red  fox", "a    b"),
              hint="  Figure: a desert.  The  is adapted to dry places. ")
    assert get_task("scienceqa_img").request(doc, 0, ("img",)).messages[0].text == (
        "<image>\nContext: Figure: a desert. The is adapted to dry places.\nWhich  animal is also adapted?\n"
        "A. camel \nB. red fox\nC. a  b" + INSTRUCTION)


def test_prompt_hint_stripped():
    task = get_task("scienceqa_img")
    assert task.prompt(row(hint="Select the best answer. ")).startswith(
        "Context: Select the best answer.\nWhat is the name")
    assert task.prompt(row(hint=" \nSelect.\n")).startswith("Context: Select.\nWhat is the name")
    assert task.prompt(row(hint="   ")).startswith("What is the name")  # empty after the strip: no Context line


def test_prompt_leading_trailing_spaces_and_image_order():
    task = get_task("scienceqa_img")
    assert task.prompt(row(question="  Which colony? ", choices=("A1", "B1  "))) == (
        "Which colony? \nA. A1\nB. B1" + INSTRUCTION)
    # The double-space pass runs before "<image>" is deleted: spaces that meet only then stay doubled.
    assert task.prompt(row(question="Which  <image>colony?", choices=("x", "y"))).startswith("Which colony?\n")
    assert task.prompt(row(question="Which <image> colony?", choices=("x", "y"))).startswith("Which  colony?\n")


def test_prompt_change_bumped_version():
    assert get_task("scienceqa_img").version == 2  # version 1 kept the hint and its double spaces as they were


def test_generation_settings():
    task = get_task("scienceqa_img")
    request = task.request(row(), 0, ("img",))
    assert request.settings.max_new_tokens == 1024 and request.image_mode == "crop"


@pytest.mark.parametrize("text,letter", [
    ("B", "B"), ("E", "E"), ("B. apostrophe", "B"), ("A. acquired", "A"), ("B. ", "B"),
    ("B.", FAILED), ("B)", FAILED), ("(B)", FAILED), ("b", FAILED), (" B", FAILED), ("B\n", FAILED),
    ("F", FAILED), ("F. foo", FAILED), ("Ｂ", FAILED), ("答案是 B", FAILED), ("", FAILED), ("FAILED", FAILED),
    ("The answer is C.", "C"), ("The answer is C!", "C"),  # the regex "." matches any character
    ("The answer is C", FAILED), ("The answer is C\n", FAILED), ("the answer is C.", FAILED),
    ("The answer is C. The answer is D.", FAILED),  # found twice
    ("I think The answer is Z.", "Z"),  # any capital letter; scored as out of range
    # Real LLaVA-1.5-13B outputs on the test split that the original marks FAILED:
    ("B is the run-on sentence.", FAILED), ("A is a complete sentence.", FAILED), ("Cinder", FAILED),
])
def test_extract_letter(text, letter):
    assert extract_letter(text) == letter


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_extract_letter_never_raises(text):
    letter = extract_letter(text)
    assert letter == FAILED or (len(letter) == 1 and "A" <= letter <= "Z")


def test_choice_index_and_scoring():
    assert choice_index("C", 4) == 2 and choice_index("E", 4) == -1 and choice_index(FAILED, 5) == -1
    task = get_task("scienceqa_img")
    doc = row()  # answer 1 = B of four choices
    assert [task.score_item(task.parse(t, doc), doc) for t in ("B", "B. New Hampshire", "A", "E", "Z", "")] == [
        1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_aggregate_accuracy_subjects_failed_and_missing():
    task = get_task("scienceqa_img")
    docs = [row(answer=0, subject="social science"), row(answer=1, subject="social science"),
            row(choices=("yes", "no"), answer=1, subject="natural science"),
            row(choices=("a", "b", "c"), answer=2, subject="language science")]
    m, items = task.score(docs, {0: "A", 1: "The answer is B.", 2: "no"})  # 3 missing
    assert [it.parsed for it in items] == ["A", "B", FAILED, FAILED]
    assert m["accuracy"] == 50.0 and m["n_failed"] == 2 and m["n_missing"] == 1
    assert m["subjects"] == {"language science": 0.0, "natural science": 0.0, "social science": 100.0}


def test_synthetic_docs_deterministic_schema_and_gold():
    task = get_task("scienceqa_img")
    docs = task.synthetic_docs(12)
    assert len(docs) == 12 and docs == task.synthetic_docs(12) and docs != task.synthetic_docs(12, seed=1)
    check_schema(task, Docs(docs, "synthetic"))
    assert {len(d["choices"]) for d in docs} >= {2, 3, 4}
    assert any(d["hint"] for d in docs) and any(not d["hint"] for d in docs)
    metrics, _ = task.score(docs, {i: task.gold_text(d) for i, d in enumerate(docs)})
    assert metrics["accuracy"] == 100.0 and metrics["n_failed"] == 0


def test_missing_column_fails_schema():
    doc = row()
    del doc["choices"]
    with pytest.raises(TaskError, match="'choices'"):
        check_schema(get_task("scienceqa_img"), Docs([doc], "test"))


def _write_layout(root):
    base = root / "scienceqa"
    base.mkdir()
    problems = {
        "4": {"question": "Which figure of speech is used in this text?", "choices": ["chiasmus", "apostrophe"],
              "answer": 1, "hint": "", "image": None, "subject": "language science", "split": "test"},
        "11": {"question": "What is the name of the colony shown?",
               "choices": ["Maryland", "New Hampshire", "Rhode Island", "Vermont"], "answer": 1, "hint": "",
               "image": "image.png", "subject": "social science", "grade": "grade5", "split": "test"},
        "5": {"question": "Which of the following could Gordon's test show?", "choices": ["x", "y", "z"],
              "answer": 1, "hint": "Gordon.", "image": "image.png", "subject": "natural science", "split": "test"},
        "1": {"question": "Train?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png",
              "subject": "natural science", "split": "train"},
    }
    (base / "problems.json").write_text(json.dumps(problems))
    (base / "pid_splits.json").write_text(json.dumps({"train": ["1"], "test": ["4", "5", "11"]}))


def test_llava_layout(tmp_path):
    _write_layout(tmp_path)
    task = get_task("scienceqa_img")
    docs = task.llava_layout_docs(tmp_path)
    check_schema(task, Docs(docs, "llava"))
    assert [d["id"] for d in docs] == ["5", "11"]  # test split order, image problems only
    assert docs[0]["image"] == "scienceqa/images/test/5/image.png" and docs[1]["grade"] == "grade5"
    assert [task.request(d, i, ()).doc_id for i, d in enumerate(docs)] == ["5", "11"]
    assert task.prompt(docs[0]) == "Context: Gordon.\nWhich of the following could Gordon's test show?\n" \
                                   "A. x\nB. y\nC. z" + INSTRUCTION
    with pytest.raises(TaskError, match="problems.json"):
        task.llava_layout_docs(tmp_path / "scienceqa" / "missing")


def test_match_original_answer_lines(tmp_path):
    _write_layout(tmp_path)
    task = get_task("scienceqa_img")
    docs = task.llava_layout_docs(tmp_path)
    # Reference: model_vqa_science.py answer lines for all test problems; prompt has <image> for image ones.
    lines = [{"question_id": "4", "prompt": "Which figure of speech...\nA. chiasmus\nB. apostrophe", "text": "B"},
             {"question_id": "5", "prompt": "<image>\nContext: Gordon.\n...", "text": "B"},
             {"question_id": "11", "prompt": "<image>\nWhat is the name...", "text": "A. Maryland"}]
    predictions = task.match_answer_lines(lines, docs)
    assert predictions == {"5": "B", "11": "A. Maryland"}
    metrics, _ = task.score(docs, predictions)
    assert metrics["accuracy"] == 50.0
    assert task.match_answer_lines([{"question_id": 0, "text": "A"}], docs) is None  # this harness's own files
    hub_docs = task.synthetic_docs(2)
    assert [task.doc_id(d, i) for i, d in enumerate(hub_docs)] == [0, 1]
    with pytest.raises(TaskError, match="problem id"):
        task.match_answer_lines(lines, hub_docs)
