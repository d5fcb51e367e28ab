"""GQA (testdev-balanced): short answers compared by exact string equality after LLaVA's conversion.

Doc id: the `id` column (GQA's question id, a string). Metric: accuracy over balanced questions of
prediction.rstrip('.').lower() == answer (the official eval.py "Accuracy"), with its binary / open split and
per structural / semantic type. Reference: `scripts/v1_5/eval/gqa.sh`, `scripts/convert_gqa_for_eval.py`,
GQA `eval.py` (testdev_balanced tier); protocol 3.2.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .base import HubSource, Item, Task, TaskError, read_json, require
from .registry import register_task
from .vqav2 import SHORT_ANSWER, accuracy_by, mean_accuracy, question_lines, require_image, scene_qa

IMAGES_CONFIG = "testdev_balanced_images"  # lmms-lab/GQA: images live in their own config, keyed by `id`
# Synthetic question kind -> GQA types (structural, semantic): yes/no questions are "verify", the rest "query".
KIND_TYPES = {"existence": ("verify", "obj"), "color": ("query", "attr"), "shape": ("query", "cat"),
              "position": ("query", "rel"), "count": ("query", "obj")}


def convert(text: str) -> str:
    """Reference: convert_gqa_for_eval.py: `text.rstrip('.').lower()` (every trailing period, nothing else)."""
    return text.rstrip(".").lower()


def _types(doc: dict) -> dict:
    types = doc.get("types")
    return types if isinstance(types, dict) else {}


class JoinedRows:
    """Instruction rows with the image of their `imageId` attached on access (the images are not copied)."""

    def __init__(self, rows, images: dict):
        self.rows, self.images = rows, images

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = dict(self.rows[index])
        row["image"] = self.images.get(row.get("imageId"))
        return row


@register_task("gqa")
class GQA(Task):
    version = 1
    title = "GQA (testdev-balanced)"
    reference = "scripts/v1_5/eval/gqa.sh, scripts/convert_gqa_for_eval.py, GQA eval.py"
    hub = HubSource("lmms-lab/GQA", split="testdev", config="testdev_balanced_instructions",
                    moved_to="lmms-lab-encoder/GQA")
    split = "testdev-balanced (12,578 questions; paper Table 3)"
    row_count = 12_578
    doc_id_column = "id"
    doc_id_rule = "the `id` column (GQA question id, a string)"
    schema = {"id": "id", "imageId": "str?", "question": "str", "answer": "str", "fullAnswer": "str?",
              "isBalanced": "bool?", "types": "any?", "image": "image"}
    max_new_tokens = 128  # Reference: model_vqa_loader.py default; gqa.sh passes none
    metrics = ("accuracy", "binary", "open")
    primary_metric = "accuracy"

    def prompt(self, doc: dict) -> str:
        # Reference: llava_gqa_testdev_balanced.jsonl: the GQA question unchanged (146 keep inner capitals,
        # e.g. "... silver laptop or DVD player?") + the short-answer instruction.
        return doc["question"] + SHORT_ANSWER

    def image_values(self, doc: dict) -> list:
        if doc.get("image") is None and doc.get("imageId") is not None:
            raise TaskError(f"gqa: row {doc.get('id')!r} has no image: lmms-lab/GQA rows need the image of "
                            f"imageId {doc['imageId']!r} from config {IMAGES_CONFIG} (see GQA.prepare_hub)")
        return require_image(self, doc)

    def parse(self, text: str, doc: dict) -> str:
        return convert(text)

    def score_item(self, parsed: str, doc: dict) -> float | None:
        # Reference: GQA eval.py: `predicted == gold`, no further normalisation; only balanced questions count
        # (all of testdev_balanced).
        if doc.get("isBalanced") is False:
            return None
        return float(parsed == doc["answer"])

    def gold_text(self, doc: dict) -> str:
        return doc["answer"].capitalize()

    def chance(self, docs: list[dict]) -> dict | None:
        return self.majority_chance(docs)

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        """Reference: GQA eval.py: accuracy; "open" = structural type `query`, "binary" = every other type;
        accuracy per structural and per semantic type."""
        out = {"accuracy": mean_accuracy(items)}
        typed = [(_types(d).get("structural"), it) for d, it in zip(docs, items, strict=True)]
        for name, wanted in (("open", True), ("binary", False)):
            out[name] = mean_accuracy([it for s, it in typed if s is not None and (s == "query") == wanted])
        for key in ("structural", "semantic"):
            rows = [{key: _types(d).get(key)} for d in docs]
            out[f"accuracy_per_{key}"] = accuracy_by(rows, items, key)
        return out

    def prepare_hub(self, rows, load_config):
        """Hub rows -> rows with images: lmms-lab/GQA keeps images in config `testdev_balanced_images` (split
        `testdev`, columns id, image); attach each to the instruction rows whose `imageId` equals that `id`.
        `load_config(config, split)` loads a config of the same dataset and revision, images undecoded."""
        images = load_config(IMAGES_CONFIG, self.hub.split)
        return JoinedRows(rows, {r["id"]: r["image"] for r in images})

    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """Two questions per scene (GQA asks many per image), lower-case one-word answers as GQA's."""
        from synthetic import make_scene

        rng = random.Random(f"gqa-{seed}")
        kinds = tuple(KIND_TYPES)
        docs = []
        for i in range(n):
            image_id = seed * 100_003 + i // 2
            scene = make_scene(image_id)
            qa = scene_qa(scene, rng, kinds[i % len(kinds)])
            structural, semantic = KIND_TYPES[qa.kind]
            docs.append({"id": f"{seed}{i:07d}", "imageId": f"n{image_id}", "question": qa.question,
                         "answer": qa.answer.lower(), "fullAnswer": f"The answer is {qa.answer.lower()}.",
                         "isBalanced": True, "types": {"structural": structural, "semantic": semantic,
                                                       "detailed": f"{qa.kind}Synthetic"},
                         "image": {"bytes": scene.png_bytes(), "path": None}})
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows of `gqa/llava_gqa_testdev_balanced.jsonl` (images under `gqa/data/images/`) with answers and
        types from the official `gqa/data/testdev_balanced_questions.json`, as gqa.sh lays them out."""
        root = Path(root)
        bench = root / "gqa" if (root / "gqa").is_dir() else root
        gold_file = bench / "data" / "testdev_balanced_questions.json"
        if not gold_file.is_file():
            raise TaskError(f"gqa: {gold_file} not found (the official GQA questions, for the answers)")
        gold = require(read_json(gold_file, self.name), {}, f"gqa: {gold_file}")
        rows = []
        for line in question_lines(bench / "llava_gqa_testdev_balanced.jsonl", SHORT_ANSWER, self.name):
            qid = str(line["question_id"])
            if qid not in gold:
                raise TaskError(f"gqa: question {qid!r} is not in {gold_file.name}")
            q = require(gold[qid], {"answer": str}, f"gqa: {gold_file}: question {qid!r}")
            rows.append({"id": qid, "imageId": q.get("imageId"), "question": line["question"], "answer": q["answer"],
                         "fullAnswer": q.get("fullAnswer"), "isBalanced": q.get("isBalanced", True),
                         "types": q.get("types"),
                         "image": str((bench / "data" / "images").relative_to(root) / line["image"])})
        return rows

    def submission(self, docs: list[dict], predictions: dict, extra: dict | None = None) -> tuple[str, bytes]:
        """Reference: convert_gqa_for_eval.py: testdev_balanced_predictions.json, a JSON list (json.dump
        defaults) of {"questionId": id, "prediction": text.rstrip('.').lower()} in answer-file order. eval.py
        fails on a question without a prediction; so does this."""
        missing = [self.doc_id(d, i) for i, d in enumerate(docs) if self.doc_id(d, i) not in predictions]
        if missing:
            raise TaskError(f"gqa: {len(missing)} question(s) without a prediction, e.g. {missing[:5]}")
        out = [{"questionId": self.doc_id(d, i), "prediction": convert(predictions[self.doc_id(d, i)])}
               for i, d in enumerate(docs)]
        return ".json", json.dumps(out).encode("utf-8")
