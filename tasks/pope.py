"""POPE (object hallucination, COCO val2014): yes/no questions in three negative-sampling splits.

Doc id: the `question_id` column. Metric: per split accuracy, precision, recall, F1 and the *predicted*
yes-ratio (positive = yes); the paper's single POPE number is the mean F1 over the three splits.
Reference: haotian-liu/LLaVA `llava/eval/eval_pope.py`, `scripts/v1_5/eval/pope.sh`, `llava_pope_test.jsonl`
(eval.zip) with the POPE label files `coco_pope_<category>.json` (AoiDragon/POPE e3e3926); protocol 3.6.
"""

from __future__ import annotations

import random
from pathlib import Path

from .base import HubSource, Item, Task, TaskError, read_jsonl
from .registry import register_task

# Reference: llava_pope_test.jsonl prompts (paper Table 9 short-answer instruction).
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
CATEGORIES = ("adversarial", "popular", "random")
QUESTION_FILE = "llava_pope_test.jsonl"  # Reference: scripts/v1_5/eval/pope.sh
LABEL_PREFIX = "coco_pope_"  # Reference: eval_pope.py, label files coco/coco_pope_<category>.json
QUESTION_FIELDS = {"question_id": (str, int), "text": str, "category": str, "image": str}
LABEL_FIELDS = {"label": object}  # any value: eval_pope.py reads every label other than "no" as yes


def parse_yes_no(text: str) -> str:
    """Reference: eval_pope.py. Keep the text before the first '.', delete commas, split on single
    spaces; "no" iff a token is exactly `No`, `no` or `not` (case-sensitive, so "NO" is yes), else "yes"."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def binary_metrics(preds: list[str], labels: list[str]) -> dict:
    """Reference: eval_pope.py (positive = yes; yes-ratio over predictions). The original divides by
    zero when nothing is predicted yes; here precision (and F1) are 0 then."""
    tp = sum(p == "yes" and g == "yes" for p, g in zip(preds, labels, strict=True))
    fp = sum(p == "yes" and g != "yes" for p, g in zip(preds, labels, strict=True))
    tn = sum(p != "yes" and g != "yes" for p, g in zip(preds, labels, strict=True))
    fn = sum(p != "yes" and g == "yes" for p, g in zip(preds, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(preds)
    return {"accuracy": 100 * (tp + tn) / n, "precision": 100 * precision, "recall": 100 * recall,
            "f1": 100 * f1, "yes_ratio": 100 * preds.count("yes") / n, "n": n}


@register_task("pope")
class Pope(Task):
    version = 1
    title = "POPE (random / popular / adversarial)"
    reference = "llava/eval/eval_pope.py, scripts/v1_5/eval/pope.sh"
    hub = HubSource("lmms-lab/POPE", split="test", moved_to="lmms-lab-encoder/POPE")
    split = "COCO val2014, adversarial + popular + random (8,910 questions in LLaVA's files, 9,000 on the hub)"
    doc_id_column = "question_id"
    row_count = 8910
    doc_id_rule = "the `question_id` column"
    schema = {"question_id": "id", "question": "str", "answer": "str", "category": "str", "image": "image"}
    max_new_tokens = 128
    metrics = ("f1", "accuracy", "precision", "recall", "yes_ratio")
    primary_metric = "f1"

    def prompt(self, doc: dict) -> str:
        return doc["question"] + SHORT_ANSWER

    def parse(self, text: str, doc: dict) -> str:
        return parse_yes_no(text)

    def score_item(self, parsed: str, doc: dict) -> float:
        return float(parsed == doc["answer"].strip().lower())

    def gold_text(self, doc: dict) -> str:
        return doc["answer"].capitalize()

    def chance(self, docs: list[dict]) -> dict | None:
        # A yes/no benchmark: the better of the two constant answers (always "Yes": F1 66.7 on balanced rows).
        return self.constant_chance(docs, ("Yes", "No"))

    def bootstrap_stratum(self, doc: dict):
        return doc["category"]

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        out: dict = {}
        f1s = []
        for category in CATEGORIES:
            pairs = [(it.parsed, d["answer"].strip().lower()) for d, it in zip(docs, items, strict=True)
                     if d["category"] == category]
            if pairs:
                m = binary_metrics([p for p, _ in pairs], [g for _, g in pairs])
                out[category] = m
                f1s.append(m["f1"])
        # Reference: protocol 3.6, the paper's POPE = mean F1 of the three splits (85.9 for 13B).
        out["f1"] = sum(f1s) / len(f1s) if f1s else float("nan")
        for key in ("accuracy", "precision", "recall", "yes_ratio"):
            vals = [out[c][key] for c in CATEGORIES if c in out]
            out[key] = sum(vals) / len(vals) if vals else float("nan")
        return out

    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        from synthetic import existence_qa, make_scene

        docs = []
        rng = random.Random(f"pope-{seed}")
        scene_index = 0
        while len(docs) < n:
            scene = make_scene(seed * 100_003 + scene_index)
            # Six questions per image as in POPE (three present objects, three absent ones).
            for k in range(6):
                if len(docs) == n:
                    break
                qa = existence_qa(scene, rng, positive=k % 2 == 0)
                docs.append({"question_id": f"pope-{seed}-{len(docs)}", "question": qa.question,
                             "answer": qa.answer, "category": CATEGORIES[len(docs) % 3],
                             "image": {"bytes": scene.png_bytes(), "path": None}})
            scene_index += 1
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows of `pope/llava_pope_test.jsonl` (or the file directly under `root`) in file order, labelled
        from `coco/coco_pope_<category>.json`. Reference: eval_pope.py zips the n-th label line of a
        category with the n-th answer of that category in file order, and reads every label other than
        "no" as yes. Images: `val2014/<image>`, returned relative to `root`."""
        root = Path(root)
        base = root / "pope" if (root / "pope" / QUESTION_FILE).is_file() else root
        if not (base / QUESTION_FILE).is_file():
            raise TaskError(f"pope: {QUESTION_FILE} not found under {root} (or {root / 'pope'})")
        questions = read_jsonl(base / QUESTION_FILE, self.name, QUESTION_FIELDS)
        labels = _read_labels(base / "coco")
        taken = {category: 0 for category in labels}
        docs = []
        for _, q in questions:
            category = q["category"]
            if category not in labels:
                raise TaskError(f"pope: no label file {LABEL_PREFIX}{category}.json in {base / 'coco'}")
            label = labels[category][taken[category]] if taken[category] < len(labels[category]) else None
            taken[category] += 1
            text = q["text"]
            docs.append({"question_id": q["question_id"],
                         "question": text[:-len(SHORT_ANSWER)] if text.endswith(SHORT_ANSWER) else text,
                         "answer": "no" if label == "no" else "yes", "category": category,
                         "image": str((base / "val2014").relative_to(root) / q["image"])})
        # The original zips silently; unequal lengths would pair answers with the wrong labels.
        for category, count in taken.items():
            if count != len(labels[category]):
                raise TaskError(f"pope: {count} {category} questions but {len(labels[category])} labels")
        return docs


def _read_labels(folder: Path) -> dict[str, list[str]]:
    """category -> labels in file order. Reference: eval_pope.py (category = file name between
    `coco_pope_` and `.json`; one JSON object per line with a `label`)."""
    if not folder.is_dir():
        raise TaskError(f"pope: label folder {folder} not found")
    files = sorted(folder.glob(f"{LABEL_PREFIX}*.json"))
    if not files:
        raise TaskError(f"pope: no {LABEL_PREFIX}<category>.json files in {folder}")
    return {f.name[len(LABEL_PREFIX):-len(".json")]: [row["label"] for _, row in read_jsonl(f, "pope", LABEL_FIELDS)]
            for f in files}
