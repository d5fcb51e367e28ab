"""ScienceQA-IMG: the 2,017 test problems with an image, multiple choice with 2-5 options, answered by letter.

Doc id: the row index (lmms-lab/ScienceQA has no id column); rows read from the original layout use the problem
id. Metric: accuracy over the IMG problems with eval_science_qa.py's letter extraction, plus per-subject
accuracy. Reference: `llava/eval/model_vqa_science.py`, `llava/eval/eval_science_qa.py`,
`scripts/v1_5/eval/sqa.sh`, `playground/data/eval/scienceqa/llava_test_CQM-A.json` (eval.zip); protocol 3.4.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from pathlib import Path

from .base import HubSource, Item, Task, TaskError, letters, read_json, require
from .registry import register_task

OPTIONS = ("A", "B", "C", "D", "E")  # Reference: eval_science_qa.py `--options` default
# Reference: model_vqa_science.py with --single-pred-prompt (sqa.sh passes it).
INSTRUCTION = "\nAnswer with the option's letter from the given choices directly."
ANSWER_IS = re.compile(r"The answer is ([A-Z]).")  # Reference: eval_science_qa.py (the "." matches any char)
FAILED = "FAILED"
SUBJECTS = ("natural science", "social science", "language science")


def build_question(doc: dict) -> str:
    """The question text of llava_test_CQM-A.json: "Context: <hint>\\n" only when the hint is non-empty (no
    "N/A"), the question, then one "\\n<L>. <choice>" line per choice.

    Reference (whitespace): scripts/convert_sqa_to_llava_base_prompt.py, the released builder of LLaVA's
    ScienceQA files (the CQM-A layout itself is not released): `get_context_text` strips the hint
    (`" ".join([hint, ""]).strip()`, no caption), `create_one_example_chatbot` applies
    `input.replace("  ", " ").strip()` once to the whole text (one pass: 3 spaces become 2, 4 become 2);
    convert_sqa_to_llava.py appends "\\n<image>" and model_vqa_science.py then deletes every "<image>" and
    strips again, so a double space left by a deleted "<image>" survives."""
    context = (doc.get("hint") or "").strip()
    text = f"Context: {context}\n" if context else ""
    text += doc["question"]
    for letter, choice in zip(letters(len(doc["choices"])), doc["choices"], strict=True):
        text += f"\n{letter}. {choice}"
    text = text.replace("  ", " ").strip()
    return text.replace("<image>", "").strip()


def extract_letter(text: str) -> str:
    """Reference: eval_science_qa.py: the prediction itself if it is one of A-E; else its first character
    when that is one of A-E followed by ". "; else X when "The answer is X." occurs exactly once; else
    FAILED. No random fallback (the random choice sits after a `return`)."""
    if text in OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    found = ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else FAILED


def choice_index(letter: str, n_choices: int) -> int:
    """Reference: eval_science_qa.py `get_pred_idx`: index of the letter among the first n options, else -1."""
    return OPTIONS.index(letter) if letter in OPTIONS[:n_choices] else -1


@register_task("scienceqa_img")
class ScienceQAImg(Task):
    version = 2  # 2: the builder's whitespace rule (hint strip, one double-space pass)
    title = "ScienceQA-IMG (test, image problems)"
    reference = ("llava/eval/model_vqa_science.py, llava/eval/eval_science_qa.py, scripts/v1_5/eval/sqa.sh, "
                 "playground/data/eval/scienceqa/llava_test_CQM-A.json")
    hub = HubSource("lmms-lab/ScienceQA", split="test", config="ScienceQA-IMG", moved_to="lmms-lab-encoder/ScienceQA")
    split = "test, problems with an image (2,017 of 4,241)"
    row_count = 2017
    doc_id_rule = "the row index; rows from the original layout (llava:DIR) use their problem id (`id`)"
    schema = {"question": "str", "choices": "list[str]", "answer": "int", "hint": "str?", "subject": "str?",
              "id": "id?", "image": "image"}
    max_new_tokens = 1024  # Reference: model_vqa_science.py
    image_mode = "crop"  # Reference: release-time model_vqa_science.py ran the CLIP processor itself (protocol 1.3)
    metrics = ("accuracy", "n_failed")
    primary_metric = "accuracy"

    def doc_id(self, doc: dict, index: int):
        return doc["id"] if doc.get("id") is not None else index

    def prompt(self, doc: dict) -> str:
        return build_question(doc) + INSTRUCTION

    def parse(self, text: str, doc: dict) -> str:
        return extract_letter(text)

    def score_item(self, parsed: str, doc: dict) -> float:
        return float(choice_index(parsed, len(doc["choices"])) == doc["answer"])

    def gold_text(self, doc: dict) -> str:
        return OPTIONS[doc["answer"]]

    def chance(self, docs: list[dict]) -> dict | None:
        return self.random_choice_chance(docs, lambda doc: letters(len(doc["choices"])))

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        # Reference: eval_science_qa.py IMG-Accuracy = correct / problems whose prompt has <image>.
        scores = [it.score for it in items]
        out: dict = {"accuracy": 100.0 * sum(scores) / len(scores) if scores else math.nan,
                     "n_failed": sum(it.parsed == FAILED for it in items)}
        by_subject: dict[str, list[float]] = defaultdict(list)
        for doc, item in zip(docs, items, strict=True):
            if doc.get("subject"):
                by_subject[doc["subject"]].append(item.score)
        if by_subject:
            out["subjects"] = {name: 100.0 * sum(s) / len(s) for name, s in sorted(by_subject.items())}
        return out

    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """Multiple-choice questions about shapes scenes with 2-5 choices; every other row has a hint."""
        from synthetic import color_qa, count_qa, make_scene, multiple_choice, position_qa, shape_qa

        rng = random.Random(f"scienceqa_img-{seed}")
        makers = (count_qa, position_qa, shape_qa, color_qa)
        docs = []
        while len(docs) < n:
            k = len(docs)
            scene = make_scene(seed * 100_003 + k)
            qa = None
            for make in makers[k % 4:] + makers[:k % 4]:
                try:
                    qa = make(scene, rng)
                    break
                except ValueError:  # color/shape questions need a suitable shape in the scene
                    continue
            mc = multiple_choice(qa, rng, n_options=2 + k % 4)
            docs.append({"question": mc.question, "choices": list(mc.options), "answer": mc.answer_index,
                         "hint": "Look at the picture." if k % 2 else "", "subject": SUBJECTS[k % 3],
                         "image": {"bytes": scene.png_bytes(), "path": None}})
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """The image problems of `pid_splits.json["test"]` in that order (the order of llava_test_CQM-A.json),
        fields from `problems.json` (what eval_science_qa.py scores against); images
        `images/test/<id>/<image>`, returned relative to `root`."""
        root = Path(root)
        base = root / "scienceqa" if (root / "scienceqa" / "problems.json").is_file() else root
        files = [base / "problems.json", base / "pid_splits.json"]
        for path in files:
            if not path.is_file():
                raise TaskError(f"scienceqa_img: {path.name} not found under {root} (or {root / 'scienceqa'})")
        problems = require(read_json(files[0], self.name), {}, f"{self.name}: {files[0]}")
        test = require(read_json(files[1], self.name), {"test": list}, f"{self.name}: {files[1]}")["test"]
        docs = []
        for pid in test:
            if not isinstance(pid, str) or pid not in problems:
                raise TaskError(f"{self.name}: {files[1]}: test problem {pid!r} is not in {files[0].name}")
            prob = require(problems[pid], {}, f"{self.name}: {files[0]}: problem {pid!r}")
            if not prob.get("image"):
                continue
            require(prob, {"image": str}, f"{self.name}: {files[0]}: problem {pid!r}")
            doc = {k: prob[k] for k in ("question", "choices", "answer", "hint", "subject", "grade") if k in prob}
            doc.update(id=pid, image=str((base / "images" / "test").relative_to(root) / pid / prob["image"]))
            docs.append(doc)
        return docs

    def match_answer_lines(self, lines: list[dict], docs) -> dict | None:
        """doc id -> text for an original answer file (question_id = problem id, all 4,241 test problems): lines
        of text-only problems (prompt without <image>) are not part of this split and are dropped.
        None: the file is keyed by this task's doc ids (the harness's own files)."""
        if not any(isinstance(line.get("question_id"), str) for line in lines):
            return None
        if not any(doc.get("id") is not None for doc in docs):
            raise TaskError("scienceqa_img: this answer file is keyed by ScienceQA problem id, but the rows have "
                            "none (hub rows are keyed by index); load the rows with --data llava:DIR")
        return {str(line["question_id"]): line["text"] for line in lines
                if "<image>" in line.get("prompt", "<image>")}
