"""VizWiz-VQA: val (scored here) and test (the paper's split, scored by the EvalAI server, challenge 2185).

Doc id: the `question_id` column, the image file's stem ("VizWiz_test_00000000"). Metric: VQA accuracy of the
answer LLaVA uploads (the EvalAI-normalised prediction) as the server's VizWiz-VQA `vqaEval.py` computes it
against the 10 annotator answers as stored (`tasks.official_vqa_eval`), overall and per answer type.
Reference: `scripts/v1_5/eval/vizwiz.sh`, `scripts/convert_vizwiz_for_submission.py`,
`playground/data/eval/vizwiz/llava_test.jsonl` (eval.zip), the VizWiz-VQA API; protocol 3.3 and 3.13.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .base import HubSource, Item, TaskError, read_json, require
from .evalai import normalize_answer
from .official_vqa_eval import vizwiz_accuracy
from .registry import register_task
from .vqav2 import (
    QUESTION_KINDS,
    SHORT_ANSWER,
    VQAAccuracyTask,
    accuracy_by,
    annotator_answers,
    best_scoring,
    gt_answers,
    mean_accuracy,
    question_lines,
    scene_qa,
)

# Reference: llava_test.jsonl prompts (paper Table 9: the VizWiz format prompt, then the short-answer one).
UNANSWERABLE = "\nWhen the provided information is insufficient, respond with 'Unanswerable'."
SUFFIX = UNANSWERABLE + SHORT_ANSWER
# Questions a photo of shapes cannot answer (VizWiz's unanswerable class: blur, framing, missing content).
UNANSWERABLE_QUESTIONS = ("What is the expiration date on this package?", "What does the label on the back say?",
                          "Which channel is the TV showing?", "What flavor is this?")


def image_file(doc: dict) -> str:
    """The upload's `image` field. Reference: llava_test.jsonl pairs question_id n with VizWiz_test_<n:08d>.jpg
    (all 8,000 lines); lmms-lab/VizWiz-VQA's string `question_id` is that file's stem (lmms-eval appends .jpg)."""
    qid = doc["question_id"]
    if isinstance(qid, int):
        return f"VizWiz_test_{qid:08d}.jpg"
    return qid if qid.endswith(".jpg") else qid + ".jpg"


class VizWiz(VQAAccuracyTask):
    version = 1
    scoring_version = 2  # 2: the VizWiz-VQA evaluator instead of m4c (the prompt and answers are unchanged)
    reference = "scripts/v1_5/eval/vizwiz.sh, scripts/convert_vizwiz_for_submission.py, VizWiz-VQA API vqaEval.py"
    hub_split = ""  # "val" or "test": the file-name infix of VizWiz images
    doc_id_column = "question_id"
    doc_id_rule = "the `question_id` column (the image file name without .jpg, e.g. VizWiz_test_00000000)"
    schema = {"question_id": "id", "question": "str", "answers": "list[str]", "category": "str?", "image": "image"}
    max_new_tokens = 128  # Reference: model_vqa_loader.py default; vizwiz.sh passes none
    metrics = ("accuracy",)
    primary_metric = "accuracy"

    def prompt(self, doc: dict) -> str:
        # Reference: llava_test.jsonl holds question.capitalize(): not one of its 8,000 questions has a capital
        # after the first character ("... i need to find out ..."), and trailing spaces are kept.
        return doc["question"].capitalize() + SUFFIX

    def score_item(self, parsed: str, doc: dict) -> float | None:
        """Reference: the VizWiz-VQA evaluator on the uploaded answer; None when the row has no answers (test)."""
        answers = gt_answers(doc)
        return vizwiz_accuracy(parsed, answers) if answers else None

    def gold_text(self, doc: dict) -> str:
        return best_scoring(self, doc, gt_answers(doc)) or "Unanswerable"

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        return {"accuracy": mean_accuracy(items), "categories": accuracy_by(docs, items, "category")}

    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """One question per scene; every fifth is unanswerable (10 x "unanswerable", as VizWiz annotates it)."""
        from synthetic import make_scene

        rng = random.Random(f"{self.name}-{seed}")
        docs = []
        for i in range(n):
            scene = make_scene(seed * 100_003 + i)
            if i % 5 == 4:
                question, kind, answer, category = rng.choice(UNANSWERABLE_QUESTIONS), "unanswerable", \
                    "unanswerable", "unanswerable"
            else:
                qa = scene_qa(scene, rng, QUESTION_KINDS[i % len(QUESTION_KINDS)])
                question, kind, answer = qa.question, qa.kind, qa.answer
                category = {"existence": "yes/no", "count": "number"}.get(kind, "other")
            docs.append({"question_id": f"VizWiz_{self.hub_split}_{seed % 1000:03d}{i:05d}", "question": question,
                         "answers": annotator_answers(kind, answer, rng), "category": category,
                         "image": {"bytes": scene.png_bytes(), "path": None}})
        return docs

    def match_answer_lines(self, lines: list[dict], docs) -> dict | None:
        """doc id -> text for an original LLaVA answer file, whose question_id is the integer n of
        VizWiz_<split>_<n:08d>.jpg. None: the lines already carry this task's doc ids."""
        ids = {str(self.doc_id(d, i)): self.doc_id(d, i) for i, d in enumerate(docs)}
        if all(str(line["question_id"]) in ids for line in lines):
            return None
        out = {}
        for number, line in enumerate(lines, 1):
            qid = line["question_id"]
            key = f"VizWiz_{self.hub_split}_{qid:08d}" if isinstance(qid, int) else str(qid)
            if key not in ids:
                raise TaskError(f"{self.name}: answer line {number} ({qid!r}) matches no row")
            out[ids[key]] = line["text"]
        return out


@register_task("vizwiz_val")
class VizWizVal(VizWiz):
    title = "VizWiz-VQA (val, VQA accuracy)"
    hub = HubSource("lmms-lab/VizWiz-VQA", split="val", moved_to="lmms-lab-encoder/VizWiz-VQA")
    hub_split = "val"
    split = "val (4,319 questions; not in the paper, which reports test)"
    row_count = 4319

    def llava_layout_docs(self, root) -> list[dict]:
        """LLaVA ships no VizWiz val files; this reads the official `Annotations/val.json` (or `val.json`) under
        `vizwiz/`, images under `vizwiz/val/`."""
        root = Path(root)
        bench = root / "vizwiz" if (root / "vizwiz").is_dir() else root
        found = [p for p in (bench / "Annotations" / "val.json", bench / "val.json") if p.is_file()]
        if not found:
            raise TaskError(f"{self.name}: no Annotations/val.json or val.json under {bench}")
        entries = read_json(found[0], self.name)
        if not isinstance(entries, list):
            raise TaskError(f"{self.name}: {found[0]}: expected a JSON list of questions")
        rows = []
        for number, q in enumerate(entries, 1):
            where = f"{self.name}: {found[0]}: question {number}"
            require(q, {"image": str, "question": str, "answers": list}, where)
            rows.append({"question_id": Path(q["image"]).stem, "question": q["question"],
                         "answers": [require(a, {"answer": str}, where)["answer"] for a in q["answers"]],
                         "category": q.get("answer_type"),
                         "image": str((bench / "val").relative_to(root) / q["image"])})
        return rows


@register_task("vizwiz_test")
class VizWizTest(VizWiz):
    title = "VizWiz-VQA (test, EvalAI server)"
    hub = HubSource("lmms-lab/VizWiz-VQA", split="test", moved_to="lmms-lab-encoder/VizWiz-VQA")
    hub_split = "test"
    split = "test (8,000 questions; paper Table 3)"
    row_count = 8000
    schema = {**VizWiz.schema, "answers": "list[str]?"}
    scored_locally = False

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows of `vizwiz/llava_test.jsonl`, images under `vizwiz/test/`. The question is the file's
        (already capitalised) text before the instruction suffix; the id is the image stem, as on the hub."""
        root = Path(root)
        bench = root / "vizwiz" if (root / "vizwiz").is_dir() else root
        lines = question_lines(bench / "llava_test.jsonl", SUFFIX, self.name)
        return [{"question_id": Path(r["image"]).stem, "question": r["question"], "answers": [],
                 "image": str((bench / "test").relative_to(root) / r["image"])} for r in lines]

    def submission(self, docs: list[dict], predictions: dict, extra: dict | None = None) -> tuple[str, bytes]:
        """Reference: convert_vizwiz_for_submission.py: a JSON list (json.dump defaults) of {"image": file name,
        "answer": EvalAI-normalised prediction} in question-file order. The original asserts that every
        question has an answer; so does this."""
        missing = [self.doc_id(d, i) for i, d in enumerate(docs) if self.doc_id(d, i) not in predictions]
        if missing:
            raise TaskError(f"{self.name}: {len(missing)} question(s) without a prediction, e.g. {missing[:5]}")
        out = [{"image": image_file(d), "answer": normalize_answer(predictions[self.doc_id(d, i)])}
               for i, d in enumerate(docs)]
        return ".json", json.dumps(out).encode("utf-8")
