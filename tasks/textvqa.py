"""TextVQA (val, v0.5.1) with the OCR tokens in the prompt, as the paper evaluated it.

Doc id: the `question_id` column (int; the original files key questions by image id + question text instead).
Metric: VQA accuracy with EvalAI normalisation of the prediction and of all 10 answers (`tasks.evalai`).
Reference: `scripts/v1_5/eval/textvqa.sh`, `llava/eval/eval_textvqa.py`, `llava/eval/m4c_evaluator.py`,
`playground/data/eval/textvqa/llava_textvqa_val_v051_ocr.jsonl` (eval.zip); protocol 3.5 and 3.13.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from .base import HubSource, TaskError, read_json, require
from .evalai import best_answer
from .registry import register_task
from .vqav2 import SHORT_ANSWER, VQAAccuracyTask, annotator_answers, gt_answers, question_lines, scene_qa

# Reference: llava_textvqa_val_v051_ocr.jsonl: question, this label and the comma-space-joined tokens on the
# second line (nothing after the label when the image has no token: 115 of 5,000 questions), then the
# short-answer instruction.
OCR_LABEL = "\nReference OCR token: "


def question_from_prompt(prompt: str) -> str:
    """Reference: eval_textvqa.py `prompt_processor`: the question the scorer recovers from a prompt, lower-cased
    (three layouts: "OCR tokens: ... Question: ... Short answer:", question/OCR/instruction lines in either
    order, question/instruction lines). The original asserts on anything else; this raises TaskError."""
    prompt = prompt.removeprefix("<image>\n")
    lines = prompt.split("\n")
    if prompt.startswith("OCR tokens: "):
        match = re.search(r"Question: (.*?) Short answer:", prompt, re.DOTALL)
        if match is None:
            raise TaskError(f"textvqa_val: no question in prompt {prompt[:80]!r}")
        question = match.group(1)
    elif "Reference OCR token: " in prompt and len(lines) == 3:
        question = lines[1] if prompt.startswith("Reference OCR token:") else lines[0]
    elif len(lines) == 2:
        question = lines[0]
    else:
        raise TaskError(f"textvqa_val: cannot recover the question from prompt {prompt[:80]!r}")
    return question.lower()


@register_task("textvqa_val")
class TextVQAVal(VQAAccuracyTask):
    version = 1
    title = "TextVQA (val, with OCR tokens)"
    reference = ("scripts/v1_5/eval/textvqa.sh, llava/eval/eval_textvqa.py, llava/eval/m4c_evaluator.py, "
                 "llava_textvqa_val_v051_ocr.jsonl")
    hub = HubSource("lmms-lab/textvqa", split="validation", moved_to="lmms-lab-encoder/textvqa")
    split = "val v0.5.1 (5,000 questions; paper Table 3)"
    row_count = 5000
    doc_id_column = "question_id"
    doc_id_rule = "the `question_id` column (int)"
    schema = {"question_id": "id", "image_id": "str", "question": "str", "ocr_tokens": "list[str]",
              "answers": "list[str]", "image": "image"}
    max_new_tokens = 128  # Reference: model_vqa_loader.py default; textvqa.sh passes none
    metrics = ("accuracy",)
    primary_metric = "accuracy"

    def prompt(self, doc: dict) -> str:
        # Reference: llava_textvqa_val_v051_ocr.jsonl holds question.capitalize(): none of its 5,000 questions
        # has a capital after the first character. The scorer compares questions lower-cased, so this only
        # matters for the prompt bytes.
        return doc["question"].capitalize() + OCR_LABEL + ", ".join(doc["ocr_tokens"]) + SHORT_ANSWER

    # Scoring is VQAAccuracyTask's: eval_textvqa.py pairs each answer line with the annotation of the same
    # (image_id, lower-cased question); that pair is unique in val (checked on all 5,000), so the row's own
    # answers are the ones the original scores against.

    def gold_text(self, doc: dict) -> str:
        return best_answer(gt_answers(doc)) or ""

    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """OCR questions on scenes with a word (its token list is that word), other questions with an empty
        token list on scenes without one; ids like TextVQA's (int question id, 16-hex-digit image id)."""
        from synthetic import make_scene, ocr_qa, ocr_tokens

        rng = random.Random(f"{self.name}-{seed}")
        docs = []
        scene_seed = seed * 100_003
        for i in range(n):
            scene = make_scene(scene_seed)
            # Three rows in four ask about written text (TextVQA's point): skip to the next scene with a word.
            while i % 4 != 3 and scene.text is None:
                scene_seed += 1
                scene = make_scene(scene_seed)
            scene_seed += 1
            qa = ocr_qa(scene, rng) or scene_qa(scene, rng, ("count", "color", "shape")[i % 3])
            docs.append({"question_id": seed * 100_000 + i, "image_id": f"{seed % 65536:04x}{i:012x}",
                         "question": qa.question.lower(), "ocr_tokens": ocr_tokens(scene),
                         "answers": annotator_answers(qa.kind, qa.answer, rng),
                         "image": {"bytes": scene.png_bytes(), "path": None}})
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows of `textvqa/llava_textvqa_val_v051_ocr.jsonl` (question and OCR tokens from its prompt, images
        under `textvqa/train_images/`) joined to `textvqa/TextVQA_0.5.1_val.json` by (image id, lower-cased
        question) as eval_textvqa.py does, for the answers and the real question id."""
        root = Path(root)
        bench = root / "textvqa" if (root / "textvqa").is_dir() else root
        annotation_file = bench / "TextVQA_0.5.1_val.json"
        if not annotation_file.is_file():
            raise TaskError(f"{self.name}: {annotation_file} not found")
        data = require(read_json(annotation_file, self.name), {"data": list}, f"{self.name}: {annotation_file}")["data"]
        fields = {"image_id": str, "question": str, "question_id": object, "answers": object}
        annotations = {(a["image_id"], a["question"].lower()): a for a in (
            require(a, fields, f"{self.name}: {annotation_file}: data item {i}") for i, a in enumerate(data, 1))}
        rows = []
        for line in question_lines(bench / "llava_textvqa_val_v051_ocr.jsonl", SHORT_ANSWER, self.name):
            question, sep, tokens = line["question"].partition(OCR_LABEL)
            if not sep:
                raise TaskError(f"{self.name}: question {line['question_id']!r} has no {OCR_LABEL.strip()!r} line")
            found = annotations.get((line["question_id"], question.lower()))
            if found is None:
                raise TaskError(f"{self.name}: no annotation for ({line['question_id']!r}, {question!r})")
            rows.append({"question_id": found["question_id"], "image_id": line["question_id"], "question": question,
                         "ocr_tokens": tokens.split(", ") if tokens else [], "answers": found["answers"],
                         "image": str((bench / "train_images").relative_to(root) / line["image"])})
        return rows

    def match_answer_lines(self, lines: list[dict], docs) -> dict | None:
        """doc id -> text for an original answer file (question_id = image id, which repeats), matched on
        (image id, question recovered from the prompt) as eval_textvqa.py does. None: the lines carry this
        task's own (integer) doc ids."""
        if all(isinstance(line.get("question_id"), int) for line in lines):
            return None
        by_key = {(d["image_id"], d["question"].lower()): self.doc_id(d, i) for i, d in enumerate(docs)}
        out = {}
        for number, line in enumerate(lines, 1):
            key = (line["question_id"], question_from_prompt(line.get("prompt", "")))
            if key not in by_key:
                raise TaskError(f"{self.name}: answer line {number} {key!r} matches no row")
            out[by_key[key]] = line["text"]
        return out
