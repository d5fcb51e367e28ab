"""MMBench / MMBench-CN: prompt bytes of model_vqa_mmbench.py (hint rule, stop at the first absent option,
EN/CN instruction), rule-based letter extraction, CircularEval aggregation, the test splits (scored here when
their rows carry the public answers), the original TSV layout and the OpenCompass .xlsx. Golden rows are real
dev rows (indices 431 and 459 of mmbench_dev_20230712.tsv)."""

from __future__ import annotations

import base64
import io
import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_eval.data import Docs, check_schema
from tasks.base import TaskError
from tasks.mmbench import extract_letter, is_missing, options_of
from tasks.registry import get_task

EN = "\nAnswer with the option's letter from the given choices directly."
CN = "\n请直接回答选项字母。"
MAYA_HINT = ("The following map shows the locations of several ancient civilizations in North and South "
             "America. Look at the map. Then answer the question below.")
MAYA_Q = "Which letter marks the territory controlled by the ancient Maya civilization?"


def row(index, answer="A", hint=None, category="cat", **options):
    doc = {"index": index, "question": "Q?", "hint": hint, "answer": answer, "category": category,
           "L2-category": "l2", "split": "dev", "image": {"bytes": b"x", "path": None}}
    doc.update({"A": "one", "B": "two", "C": None, "D": None})
    doc.update(options)
    return doc


def maya(index=459, answer="B", **rotated):
    doc = row(index, answer=answer, hint=MAYA_HINT, category="social_relation", A="B", B="C", C="A", D="D")
    doc.update(question=MAYA_Q, **rotated)
    return doc


# ---- prompts -------------------------------------------------------------------------------------------
def test_prompt_en_hint_four_options():
    # Reference: the `prompt` field of index 459 in the official LLaVA-1.5-13B answer file + the instruction.
    text = get_task("mmbench_en_dev").request(maya(), 0, ("img",)).messages[0].text
    assert text == (
        "<image>\nThe following map shows the locations of several ancient civilizations in North and South "
        "America. Look at the map. Then answer the question below.\nWhich letter marks the territory controlled "
        "by the ancient Maya civilization?\nA. B\nB. C\nC. A\nD. D\n"
        "Answer with the option's letter from the given choices directly.")


def test_prompt_en_three_options_nan_hint():
    doc = row(431, answer="B", hint="nan", A="bird", B="bat", C="fox", D=float("nan"))
    doc["question"] = "Complete the sentence.\nAn Indian flying fox is a ()."
    text = get_task("mmbench_en_dev").request(doc, 0, ("img",)).messages[0].text
    assert text == ("<image>\nComplete the sentence.\nAn Indian flying fox is a ().\nA. bird\nB. bat\nC. fox\n"
                    "Answer with the option's letter from the given choices directly.")


def test_prompt_cn():
    doc = row(15, answer="C", hint="图中是一种常见的家养动物。", A="猫", B="狗", C="兔子", D="None")
    doc["question"] = "图中的动物是什么？"
    text = get_task("mmbench_cn_dev").request(doc, 0, ("img",)).messages[0].text
    assert text == ("<image>\n图中是一种常见的家养动物。\n图中的动物是什么？\nA. 猫\nB. 狗\nC. 兔子\n"
                    "请直接回答选项字母。")
    assert get_task("mmbench_cn_test").prompt(doc).endswith(CN)
    assert get_task("mmbench_en_test").prompt(doc).endswith(EN)


def test_options_stop_at_first_absent_and_pandas_na_strings():
    # Reference: get_options breaks at the first NaN; pd.read_table already made "NA", "" and "N/A" NaN.
    assert list(options_of(row(1, C="NA", D="four"))) == ["A", "B"]
    assert list(options_of(row(1, C="", D="four"))) == ["A", "B"]
    assert list(options_of(row(1, C="three", D="N/A"))) == ["A", "B", "C"]
    assert list(options_of(row(1, C="none", D="x"))) == ["A", "B"]
    for hint in (None, float("nan"), "nan", "NaN", "None", "NONE", "", "NA"):
        assert is_missing(hint) and get_task("mmbench_en_dev").prompt(row(1, hint=hint)).startswith("Q?\nA. one")
    assert not is_missing("0") and not is_missing(" nan")


def test_no_image_no_placeholder():
    assert not get_task("mmbench_en_dev").request(row(1), 0, ()).messages[0].text.startswith("<image>")


# ---- parsing and scoring -------------------------------------------------------------------------------
OPTS = {"A": "bird", "B": "bat", "C": "fox"}


@pytest.mark.parametrize("text,letter", [
    ("B", "B"), ("B.", "B"), ("B)", "B"), ("(B)", "B"), ("B: bat", "B"), ("B. bat", "B"), ("（B）", "B"),
    ("C。", "C"), ("The answer is B.", "B"), ("Answer: (C)", "C"), ("I choose C", "C"),
    ("A", "A"), ("A. A bird", "A"), ("bat", "B"), ("Bat.", "B"), (" fox ", "C"), ("答案是 B", "B"),
    ("B or C", None), ("A bird is flying", None), ("The answer is A", None), ("D", None), ("D.", None),
    ("", None), ("   ", None), ("b", None), ("a bat", None), ("Based on the image", None), ("蝙蝠", None),
    ("E", None),
])
def test_extract_letter(text, letter):
    assert extract_letter(text, OPTS) == letter


def test_extract_letter_option_texts_that_are_letters():
    # Index 459: options are themselves letters; the leading-letter rule reads the option letter.
    doc = maya()
    assert extract_letter("C", options_of(doc)) == "C"
    assert extract_letter("D. D", options_of(doc)) == "D"


def test_extract_letter_chinese_option_text():
    assert extract_letter("兔子", {"A": "猫", "B": "狗", "C": "兔子"}) == "C"
    assert extract_letter("兔子。", {"A": "猫", "B": "狗", "C": "兔子"}) == "C"


@settings(max_examples=200, deadline=None)
@given(st.text(), st.dictionaries(st.sampled_from("ABCD"), st.text(), max_size=4))
def test_extract_letter_never_raises(text, options):
    result = extract_letter(text, options)
    assert result is None or result in options


def test_circular_eval_aggregation():
    task = get_task("mmbench_en_dev")
    docs = [maya(459, "B"), maya(1000459, "C", A="D", B="B", C="C", D="A"),
            maya(2000459, "D", A="A", B="D", C="B", D="C"), maya(3000459, "A", A="C", B="A", C="D", D="B"),
            row(431, "B", category="biology", A="bird", B="bat", C="fox"),
            row(1000431, "C", category="biology", A="fox", B="bird", C="bat"),
            row(2000431, "A", category="biology", A="bat", B="fox", C="bird"),
            row(7, "A", category="biology"), row(1000007, "B", category="biology")]
    preds = {459: "B", 1000459: "C", 2000459: "D", 3000459: "B",  # one circular copy wrong
             431: "B", 1000431: "The answer is C.", 2000431: "bat",  # all three right
             7: "A"}  # 1000007 missing
    metrics, items = task.score(docs, preds)
    assert [it.parsed for it in items] == ["B", "C", "D", "B", "B", "C", "A", "A", None]
    assert metrics["accuracy"] == pytest.approx(100 / 3)
    assert metrics["accuracy_vanilla"] == pytest.approx(100 * 7 / 9)
    assert metrics["n_questions"] == 3 and metrics["n_missing"] == 1 and metrics["n_unmatched"] == 1
    assert metrics["categories"] == {"biology": 50.0, "social_relation": 0.0}
    assert metrics["l2_categories"] == {"l2": pytest.approx(100 / 3)}


def test_string_index_and_lowercase_l2_column():
    task = get_task("mmbench_en_dev")
    docs = [row("12"), row("1000012", answer="B")]
    for doc in docs:
        doc["l2-category"] = doc.pop("L2-category")
    metrics, _ = task.score(docs, {"12": "A", "1000012": "B"})
    assert metrics["accuracy"] == 100.0 and metrics["l2_categories"] == {"l2": 100.0}
    with pytest.raises(TaskError, match="abc"):
        task.score([row("abc")], {})


def test_test_split_not_scored_locally():
    task = get_task("mmbench_cn_test")
    assert not task.scored_locally and get_task("mmbench_cn_dev").scored_locally
    metrics, _ = task.score([row(1, answer=None), row(1000001, answer="nan")], {1: "A"})
    assert math.isnan(metrics["accuracy"]) and metrics["n_missing"] == 1


@pytest.mark.parametrize("name", ["mmbench_en_test", "mmbench_cn_test"])
def test_test_split_with_public_answers_is_scored_locally(name):
    # The server has closed and the test answers are public: CircularEval as on dev. Question 1 is right in
    # both rows, question 2 in one of two -> accuracy 50, per row 3/4 -> 75.
    from llava_eval.stats import bootstrap_ci

    task = get_task(name)
    docs = [row(1, answer="A"), row(1000001, answer="B", A="two", B="one"), row(2, answer="B"),
            row(1000002, answer="A", A="two", B="one")]
    metrics, items = task.score(docs, {1: "A", 1000001: "B", 2: "B", 1000002: "B"})
    assert metrics["accuracy"] == 50.0 and metrics["accuracy_vanilla"] == 75.0 and metrics["n_questions"] == 2
    assert task.scores_locally(docs) and not task.scored_locally and task.scoring_version == 2
    assert bootstrap_ci(task, docs, items, point=metrics["accuracy"]) is not None
    _, content = task.submission(docs, {1: "A", 1000001: "B", 2: "B", 1000002: "B"})  # the upload file still
    df = pd.read_excel(io.BytesIO(content))
    assert df["prediction"].tolist() == ["A", "B", "B", "B"] and df["answer"].tolist() == ["A", "B", "B", "A"]


def test_test_split_without_answers_stays_with_the_server():
    from llava_eval.stats import bootstrap_ci

    task = get_task("mmbench_en_test")
    docs = [row(1, answer=None), row(1000001, answer="nan", A="two", B="one")]
    metrics, items = task.score(docs, {1: "A", 1000001: "B"})
    assert math.isnan(metrics["accuracy"]) and not task.scores_locally(docs)
    assert bootstrap_ci(task, docs, items) is None
    assert task.scores_locally([row(1, answer="A")])
    assert not task.scores_locally(docs + [row(3, answer="A")])  # some rows without answers: not a local score
    assert get_task("mmbench_en_dev").scores_locally([])  # a dev split is scored here whatever its rows


def test_registered_variants():
    en, cn = get_task("mmbench_en_dev"), get_task("mmbench_cn_dev")
    assert en.hub.path == "lmms-lab/MMBench_EN" and en.hub.split == "dev" and en.hub.config is None
    assert cn.hub.path == "lmms-lab/MMBench" and cn.hub.config == "cn"
    assert get_task("mmbench_en_test").hub.split == "test" and get_task("mmbench_cn_test").hub.split == "test"
    assert en.max_new_tokens == 1024 and en.image_mode is None and en.primary_metric == "accuracy"


# ---- data ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mmbench_en_dev", "mmbench_cn_dev", "mmbench_en_test", "mmbench_cn_test"])
def test_synthetic_docs(name):
    task = get_task(name)
    docs = task.synthetic_docs(11, seed=3)
    assert docs == task.synthetic_docs(11, seed=3) and len(docs) == 11
    check_schema(task, Docs(docs, "synthetic"))
    metrics, _ = task.score(docs, {task.doc_id(d, i): task.gold_text(d) for i, d in enumerate(docs)})
    assert metrics["accuracy"] == 100.0 and metrics["accuracy_vanilla"] == 100.0 and metrics["n_unmatched"] == 0
    assert any(d["index"] >= 1_000_000 for d in docs)


def test_missing_column_fails_schema():
    task = get_task("mmbench_en_dev")
    doc = row(1)
    del doc["question"]
    with pytest.raises(TaskError, match="'question'"):
        check_schema(task, Docs([doc], "test"))


def _png():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def test_llava_layout_tsv(tmp_path):
    image = base64.b64encode(_png()).decode()
    columns = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
               "l2-category", "comment", "split"]
    cells = [["431", "Which one?", "", "bird", "bat", "None", "x", "B"],
             ["1000431", "Which one?", "nan", "bat", "bird", "", "", "A"]]
    lines = ["\t".join(columns)] + ["\t".join(c + ["bio", image, "s", "l2", "", "dev"]) for c in cells]
    (tmp_path / "mmbench").mkdir()
    (tmp_path / "mmbench" / "mmbench_dev_20230712.tsv").write_text("\n".join(lines) + "\n")
    task = get_task("mmbench_en_dev")
    docs = task.llava_layout_docs(tmp_path)
    assert [d["index"] for d in docs] == [431, 1000431] and docs[0]["hint"] is None and docs[0]["C"] is None
    assert docs[0]["image"] == {"bytes": _png(), "path": None}
    check_schema(task, Docs(docs, "llava"))
    assert task.prompt(docs[0]) == "Which one?\nA. bird\nB. bat" + EN
    with pytest.raises(TaskError, match="mmbench_dev_cn_20231003.tsv"):
        get_task("mmbench_cn_dev").llava_layout_docs(tmp_path)


def test_submission_xlsx():
    task = get_task("mmbench_en_dev")
    docs = [maya(459, "B"), row("431", "B", A="bird", B="bat", C="fox", D=float("nan")), row(7, C="NA")]
    suffix, content = task.submission(docs, {459: "C", "431": "B"})
    assert suffix == ".xlsx"
    df = pd.read_excel(io.BytesIO(content), engine="openpyxl")
    # Reference: convert_mmbench_for_submission.py column order on the dev TSV.
    assert list(df.columns) == ["index", "question", "A", "B", "C", "D", "prediction", "answer", "split"]
    assert df["index"].tolist() == [459, 431, 7] and str(df["index"].dtype) == "int64"
    assert df["prediction"].tolist()[:2] == ["C", "B"] and pd.isna(df["prediction"][2])
    assert df["A"].tolist() == ["B", "bird", "one"] and df["C"].isna().tolist() == [False, False, True]
    assert df["D"].isna().tolist() == [False, True, True]
    assert df["answer"].tolist() == ["B", "B", "A"] and df["split"].tolist() == ["dev"] * 3


def test_submission_xlsx_test_split_has_no_answer_column():
    task = get_task("mmbench_cn_test")
    docs = [row(1, answer=None, A="猫", B="狗"), row(1000001, answer=None, A="狗", B="猫")]
    docs[0].pop("split")
    _, content = task.submission(docs, {1: "A", 1000001: "B"})
    df = pd.read_excel(io.BytesIO(content))
    assert list(df.columns) == ["index", "question", "A", "B", "C", "D", "prediction", "split"]
    assert df["A"].tolist() == ["猫", "狗"] and df["split"].tolist() == ["test", "dev"]
