"""MMBench and MMBench-CN, dev and test, one inference per TSV row. Dev is scored here; so is test when its rows
carry the (now public) answers, otherwise it is left to the OpenCompass submission file.

Doc id: the `index` column; the circular copies of a question carry index + k * 1,000,000. Metric: CircularEval
accuracy over base questions (primary), per-row accuracy and per-category circular accuracy, with a fixed
rule-based letter extraction (no GPT, no random letter). Reference: `llava/eval/model_vqa_mmbench.py`,
`scripts/convert_mmbench_for_submission.py`, `scripts/v1_5/eval/mmbench{,_cn}.sh`; protocol 3.8.
"""

from __future__ import annotations

import io
import math
import random
import re
from collections import defaultdict
from pathlib import Path

from .base import HubSource, Item, Task, TaskError
from .registry import register_task

LETTERS = ("A", "B", "C", "D")  # Reference: model_vqa_mmbench.py `all_options` (no E)
# Reference: model_vqa_mmbench.py with --single-pred-prompt; mmbench_cn.sh passes --lang cn.
INSTRUCTION = {"en": "\nAnswer with the option's letter from the given choices directly.",
               "cn": "\n请直接回答选项字母。"}
CIRCULAR_STEP = 1_000_000  # MMBench: circular copy k of question i has index i + k * 1e6
# Reference: pandas.read_table default na_values. The original reads the TSV with pandas, so these cells
# arrive as NaN and count as absent options / hints (a row ending "C: NA" shows only A and B).
PANDAS_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
# MMBench prefetch: punctuation that may wrap a letter ("(B)", "B.", "B:"), full-width forms for CN output.
_WRAPPERS = re.compile(r"[.()\[\],:;!*#{}。，：；！（）【】]")
_LEADING = re.compile(r"\(([A-Z])\)|（([A-Z])）|([A-Z])(?:[.):。：）]|$)")


def is_missing(value) -> bool:
    """Reference: model_vqa_mmbench.py `is_none` (None, NaN, 'nan'/'none' in any case) plus the pandas NA
    strings its `pd.read_table` already turned into NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and (value in PANDAS_NA or value.lower() in ("nan", "none"))


def options_of(doc: dict) -> dict[str, str]:
    """Reference: model_vqa_mmbench.py `get_options`: A, B, C, D in order, stopping at the first absent one."""
    found = {}
    for letter in LETTERS:
        value = doc.get(letter)
        if is_missing(value):
            break
        found[letter] = str(value)
    return found


def build_question(doc: dict) -> str:
    """Reference: model_vqa_mmbench.py: hint + '\\n' + question when the hint is present, then one
    '\\n<L>. <option>' line per option (the `cur_prompt` of the answer file)."""
    text = doc["question"]
    if not is_missing(doc.get("hint")):
        text = doc["hint"] + "\n" + text
    for letter, option in options_of(doc).items():
        text += "\n" + letter + ". " + option
    return text


def extract_letter(text: str, options: dict[str, str]) -> str | None:
    """The option letter a prediction names, or None. Deterministic rules after MMBench's prefetch step:
    1. the answer is, or starts with, a wrapped letter: "B", "B.", "B)", "(B)", "B:";
    2. exactly one option letter stands alone as a token once punctuation is blanked out; a lone "A"
       among more than three tokens is read as the article, as MMBench's matcher does;
    3. the whole answer equals one option's text (case-insensitive, trailing period ignored).
    Reference: MMBench protocol (Liu et al. 2023, sec. 3.2); no GPT fallback, no random letter."""
    stripped = text.strip()
    lead = _LEADING.match(stripped)
    if lead:
        letter = next(g for g in lead.groups() if g)
        if letter in options:
            return letter
    tokens = _WRAPPERS.sub(" ", stripped).split()
    named = [letter for letter in options if letter in tokens]
    if len(named) == 1 and not (named[0] == "A" and len(tokens) > 3):
        return named[0]
    wanted = _norm_option(stripped)
    matches = [letter for letter, option in options.items() if _norm_option(option) == wanted]
    return matches[0] if len(matches) == 1 and wanted else None


def _norm_option(text: str) -> str:
    return text.strip().rstrip(".。").strip().lower()


def base_index(doc: dict) -> int:
    try:
        return int(str(doc["index"])) % CIRCULAR_STEP
    except ValueError:
        raise TaskError(f"MMBench index {doc['index']!r} is not an integer") from None


def group_key(doc: dict):
    """The circular group of a row; copies made by a bootstrap draw (`_copy`) are groups of their own."""
    return (doc.get("_copy", 0), base_index(doc))


def _circular(groups: dict) -> float:
    """Reference: MMBench CircularEval: a question counts only if every one of its rows is right."""
    verdicts = [all(s == 1.0 for s in scores) for scores in groups.values()]
    return 100.0 * sum(verdicts) / len(verdicts) if verdicts else math.nan


class MMBench(Task):
    """One class for the four MMBench tasks; a subclass fixes the language and the split."""

    version = 1
    lang = "en"
    reference = ("llava/eval/model_vqa_mmbench.py, scripts/convert_mmbench_for_submission.py, "
                 "scripts/v1_5/eval/mmbench.sh, scripts/v1_5/eval/mmbench_cn.sh")
    doc_id_column = "index"
    doc_id_rule = "the `index` column (circular copies: base index + k * 1,000,000)"
    schema = {"index": "id", "question": "str", "hint": "str?", "A": "str", "B": "str", "C": "str?", "D": "str?",
              "answer": "str", "category": "str?", "split": "str?", "image": "image"}
    # Reference: model_vqa_mmbench.py generates with max_new_tokens=1024; pad preprocessing (process_images).
    max_new_tokens = 1024
    metrics = ("accuracy", "accuracy_vanilla", "n_unmatched")
    primary_metric = "accuracy"
    tsv_names: tuple[str, ...] = ()  # the original file names, for llava_layout_docs

    def prompt(self, doc: dict) -> str:
        return build_question(doc) + INSTRUCTION[self.lang]

    def parse(self, text: str, doc: dict) -> str | None:
        return extract_letter(text, options_of(doc))

    def score_item(self, parsed: str | None, doc: dict) -> float | None:
        gold = doc.get("answer")
        if is_missing(gold):  # test rows carry no answer: the server scores them
            return None
        return float(parsed == str(gold).strip())

    def gold_text(self, doc: dict) -> str:
        return str(doc["answer"]).strip()

    def chance(self, docs: list[dict]) -> dict | None:
        """The expected CircularEval accuracy of a uniformly random option letter: its copies of a question are
        independent draws, so a question counts with the product of the copies' chances of being right."""
        groups: dict[tuple, list[float]] = defaultdict(list)
        for doc, item in zip(docs, self.random_choice_items(docs, lambda doc: list(options_of(doc))), strict=True):
            if item.score is not None:
                groups[group_key(doc)].append(item.score)
        if not groups:
            return None
        return {"value": 100.0 * sum(math.prod(group) for group in groups.values()) / len(groups),
                "answerer": "a uniformly random option letter (expected score)"}

    bootstrap_unit_name = "question (all circular copies)"

    def bootstrap_unit(self, doc: dict, index: int):
        return base_index(doc)

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        by_base: dict[tuple, list[float]] = defaultdict(list)
        first_row: dict[tuple, dict] = {}
        for doc, item in zip(docs, items, strict=True):
            if item.score is not None:
                by_base[group_key(doc)].append(item.score)
                first_row.setdefault(group_key(doc), doc)
        scores = [s for group in by_base.values() for s in group]
        out = {"accuracy": _circular(by_base),
               "accuracy_vanilla": 100.0 * sum(scores) / len(scores) if scores else math.nan,
               "n_questions": len(by_base), "n_unmatched": sum(it.parsed is None for it in items)}
        # The TSV spells the column l2-category, lmms-lab/MMBench L2-category.
        for key, columns in (("categories", ("category",)), ("l2_categories", ("l2-category", "L2-category"))):
            groups: dict[str, dict] = defaultdict(dict)
            for base, group in by_base.items():
                name = next((first_row[base][c] for c in columns if c in first_row[base]), None)
                if not is_missing(name):
                    groups[name][base] = group
            if groups:
                out[key] = {name: _circular(g) for name, g in sorted(groups.items())}
        return out

    # ---- data -----------------------------------------------------------------------------------
    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """Base questions with 2-4 options, each followed by its circular copies as in the TSV."""
        from synthetic import color_qa, count_qa, first_qa, make_scene, multiple_choice, shape_qa

        rng = random.Random(f"{self.name}-{seed}")
        docs: list[dict] = []
        base = 0
        while len(docs) < n:
            scene = make_scene(seed * 100_003 + base)
            qa = first_qa(((color_qa, shape_qa, count_qa)[base % 3:]) + (count_qa,), scene, rng)
            mc = multiple_choice(qa, rng, n_options=2 + base % 3)
            hint = "Look at the shapes in the picture." if base % 2 else None
            for k in range(len(mc.options)):
                if len(docs) == n:
                    break
                cut = len(mc.options) - k  # copy k rotates the options right by k, as in the TSV
                shifted = list(mc.options[cut:]) + list(mc.options[:cut])
                row = {"index": base + k * CIRCULAR_STEP, "question": mc.question, "hint": hint,
                       "answer": LETTERS[(mc.answer_index + k) % len(shifted)],
                       "category": qa.kind, "L2-category": "synthetic", "split": self.hub.split,
                       "image": {"bytes": scene.png_bytes(), "path": None}}
                row.update({letter: (shifted[i] if i < len(shifted) else None) for i, letter in enumerate(LETTERS)})
                docs.append(row)
            base += 1
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows of the original TSV (`mmbench/` or `mmbench_cn/` under the eval folder), read with pandas
        as the original does; the base64 image becomes PNG/JPEG bytes."""
        import base64

        import pandas as pd

        root = Path(root)
        folders = (root / "mmbench_cn", root / "mmbench", root) if self.lang == "cn" else (root / "mmbench", root)
        found = [f / name for f in folders for name in self.tsv_names if (f / name).is_file()]
        if not found:
            raise TaskError(f"{self.name}: none of {', '.join(self.tsv_names)} under {root}")
        path = found[0]
        try:
            table = pd.read_table(path)
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:  # UnicodeDecodeError too
            raise TaskError(f"{self.name}: {path}: not a readable TSV ({str(exc).splitlines()[0]})") from None
        needed = [c for c, kind in self.schema.items() if not kind.endswith("?") and kind != "image"]
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise TaskError(f"{self.name}: {path}: missing column(s) {', '.join(missing)} "
                            f"(columns: {', '.join(map(str, table.columns))})")
        rows = []
        for number, record in enumerate(table.to_dict("records"), 2):  # line 1 is the header
            row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
            try:
                row["index"] = int(row["index"])
                if row.get("image") is not None:
                    row["image"] = {"bytes": base64.b64decode(row["image"]), "path": None}
            except (TypeError, ValueError) as exc:  # binascii.Error is a ValueError
                raise TaskError(f"{self.name}: {path}:{number}: bad index or base64 image ({exc})") from None
            rows.append(row)
        return rows

    def submission(self, docs: list[dict], predictions: dict, extra: dict | None = None) -> tuple[str, bytes]:
        """Reference: convert_mmbench_for_submission.py: the TSV without hint, category, source, image,
        comment and l2-category, `prediction` inserted as the 7th column (after D), written with
        `to_excel(index=False)` by openpyxl. Absent options and answers stay empty cells; A-D are always
        columns (the server rejects files without a column named A)."""
        import pandas as pd

        with_answers = any(not is_missing(d.get("answer")) for d in docs)
        records = []
        for index, doc in enumerate(docs):
            record = {"index": int(str(doc["index"])), "question": doc["question"]}
            record.update({letter: None if is_missing(doc.get(letter)) else doc[letter] for letter in LETTERS})
            record["prediction"] = predictions.get(self.doc_id(doc, index))
            if with_answers:
                record["answer"] = None if is_missing(doc.get("answer")) else doc["answer"]
            record["split"] = doc.get("split") or self.hub.split
            records.append(record)
        buffer = io.BytesIO()
        pd.DataFrame.from_records(records).to_excel(buffer, index=False, engine="openpyxl")
        return ".xlsx", buffer.getvalue()


def _hub(lang: str, split: str) -> HubSource:
    # EN: the 20230712 release LLaVA evaluated (4,377 dev rows), mirrored as MMBench_EN; the `en` config
    # of lmms-lab/MMBench is the later 20231003 release (4,329 dev rows). CN: mmbench_dev_cn_20231003.
    if lang == "en":
        return HubSource("lmms-lab/MMBench_EN", split=split, moved_to="lmms-lab-encoder/MMBench_EN")
    return HubSource("lmms-lab/MMBench", split=split, config="cn", moved_to="lmms-lab-encoder/MMBench")


@register_task("mmbench_en_dev")
class MMBenchEnDev(MMBench):
    title = "MMBench (EN, dev, CircularEval)"
    hub = _hub("en", "dev")
    split = "dev 20230712 (4,377 rows = 1,176 questions with their circular copies)"
    tsv_names = ("mmbench_dev_20230712.tsv",)


@register_task("mmbench_cn_dev")
class MMBenchCnDev(MMBench):
    lang = "cn"
    title = "MMBench-CN (dev, CircularEval)"
    hub = _hub("cn", "dev")
    split = "dev 20231003 (CN)"
    tsv_names = ("mmbench_dev_cn_20231003.tsv",)


def carries_answers(docs: list[dict]) -> bool:
    """Whether every row has an answer (test TSVs without the public answers have none)."""
    return bool(docs) and not any(is_missing(doc.get("answer")) for doc in docs)


class MMBenchTest(MMBench):
    """The test splits. OpenCompass's evaluation server has closed and the test answers are public: rows that
    carry them are scored here exactly as dev (CircularEval), and `submission` still writes the upload file;
    rows without answers are left to the server, as before."""

    scoring_version = 2  # 2: scored locally when the rows carry answers
    schema = {**MMBench.schema, "answer": "str?"}
    scored_locally = False  # without the rows: the server's split

    def scores_locally(self, docs: list[dict]) -> bool:
        return carries_answers(docs)


@register_task("mmbench_en_test")
class MMBenchEnTest(MMBenchTest):
    title = "MMBench (EN, test; scored here when the rows carry answers)"
    hub = _hub("en", "test")
    split = "test 20230712 (6,718 rows)"
    tsv_names = ("mmbench_test_20230712.tsv", "mmbench_test_en_20231003.tsv")


@register_task("mmbench_cn_test")
class MMBenchCnTest(MMBenchTest):
    lang = "cn"
    title = "MMBench-CN (test; scored here when the rows carry answers)"
    hub = _hub("cn", "test")
    split = "test 20231003 (CN)"
    tsv_names = ("mmbench_test_cn_20231003.tsv",)
