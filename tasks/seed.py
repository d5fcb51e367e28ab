"""SEED-Bench (v1): four-way multiple choice on images (dimensions 1-9) and on the middle frame of videos (10-12).

Doc id: the `question_id` column. Metric: accuracy where an answer is right only if the raw (stripped)
output equals the gold letter exactly, per question type and micro-averaged (all / image / video).
Reference: `scripts/convert_seed_for_submission.py`, `scripts/v1_5/eval/seed.sh`,
`playground/data/eval/seed_bench/extract_video_frames.py` (commit 5c134a5); protocol 3.9.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import ClassVar

from .base import HubSource, Item, Task, TaskError, read_json, read_jsonl, require
from .registry import register_task

LETTERS = ("A", "B", "C", "D")
CHOICES = ("choice_a", "choice_b", "choice_c", "choice_d")
COPIED = ("question_id", "question", *CHOICES, "answer", "data_type", "question_type_id")  # from SEED-Bench.json
# Reference: llava-seed-bench.jsonl prompts (docs/Evaluation.md "option-only" format, paper Table 9).
INSTRUCTION = "\nAnswer with the option's letter from the given choices directly."
# Reference: SEED-Bench.json `question_type` (name -> id), printed per type by convert_seed_for_submission.py.
TYPE_NAMES = {1: "Scene Understanding", 2: "Instance Identity", 3: "Instance Attributes", 4: "Instance Location",
              5: "Instances Counting", 6: "Spatial Relation", 7: "Instance Interaction", 8: "Visual Reasoning",
              9: "Text Understanding", 10: "Action Recognition", 11: "Action Prediction",
              12: "Procedure Understanding"}


def middle_frame(n_frames: int) -> int:
    """Reference: extract_video_frames.py `get_index` with one segment: int((n - 1) / 2). Applied to the
    hub's frame list (8 frames: index 3; frames 3 and 4 lie equally far from the clip's middle)."""
    return (n_frames - 1) // 2


def type_id(doc: dict) -> int | None:
    value = doc.get("question_type_id")
    return None if value is None else int(value)


def _pct(scores: list[float]) -> float:
    return 100.0 * sum(scores) / len(scores) if scores else math.nan


class SeedBench(Task):
    """SEED-Bench over the rows whose `data_type` is in `keep_rows` (None: all rows)."""

    version = 1
    reference = "scripts/convert_seed_for_submission.py, scripts/v1_5/eval/seed.sh, extract_video_frames.py"
    hub = HubSource("lmms-lab/SEED-Bench", split="test", moved_to="lmms-lab-encoder/SEED-Bench")
    doc_id_column = "question_id"
    doc_id_rule = "the `question_id` column"
    # The frames may be absent: scoring and submissions never read them, and a row that reaches generation
    # without one is that row's error (`image_values`), as for every other task.
    schema = {"question_id": "id", "question": "str", "choice_a": "str", "choice_b": "str", "choice_c": "str",
              "choice_d": "str", "answer": "str", "data_type": "str", "question_type_id": "any?", "image": "images?"}
    max_new_tokens = 128  # Reference: model_vqa_loader.py default, seed.sh passes none
    metrics = ("accuracy", "accuracy_image", "accuracy_video")
    primary_metric = "accuracy"
    # (column, kept values): the loader should drop other rows before generation (see the report).
    keep_rows: ClassVar[tuple[str, tuple[str, ...]] | None] = None

    def keep(self, doc: dict) -> bool:
        return self.keep_rows is None or doc.get(self.keep_rows[0]) in self.keep_rows[1]

    def prompt(self, doc: dict) -> str:
        options = "".join("\n" + letter + ". " + doc[c] for letter, c in zip(LETTERS, CHOICES, strict=True))
        return doc["question"] + options + INSTRUCTION

    def image_values(self, doc: dict) -> list:
        """An image question's picture; a video question's middle frame. A row without any image is an
        error for that question (recorded by the runner, scored as unanswered), never a text-only prompt."""
        frames = doc.get("image")
        if frames is None or (isinstance(frames, (list, tuple)) and not frames):
            raise TaskError(f"SEED question {doc.get('question_id')!r} ({doc.get('data_type')}) has no image or frame")
        if not isinstance(frames, (list, tuple)):
            return [frames]
        return [frames[middle_frame(len(frames)) if doc.get("data_type") == "video" else 0]]

    def score_item(self, parsed: str, doc: dict) -> float:
        # Reference: convert_seed_for_submission.py `row['text'] == question_data['answer']`: exact match of
        # the output (already .strip()-ed by the generation, as model_vqa_loader.py does), case-sensitive.
        return float(parsed == doc["answer"])

    def gold_text(self, doc: dict) -> str:
        return doc["answer"]

    def chance(self, docs: list[dict]) -> dict | None:
        return self.random_choice_chance([d for d in docs if self.keep(d)], lambda doc: LETTERS)

    def score(self, docs: list[dict], predictions: dict) -> tuple[dict, list[Item]]:
        return super().score([d for d in docs if self.keep(d)], predictions)

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        """Reference: convert_seed_for_submission.py `eval_single`: per question type, then micro-averaged
        totals over all questions, image-only and video-only."""
        by_kind: dict[str, list[float]] = defaultdict(list)
        by_type: dict[int, list[float]] = defaultdict(list)
        for doc, item in zip(docs, items, strict=True):
            by_kind[doc["data_type"]].append(item.score)
            if type_id(doc) is not None:
                by_type[type_id(doc)].append(item.score)
        out = {"accuracy": _pct([it.score for it in items])}
        for kind in ("image", "video"):
            if by_kind.get(kind):
                out[f"accuracy_{kind}"] = _pct(by_kind[kind])
        out["types"] = {TYPE_NAMES.get(t, str(t)): _pct(by_type[t]) for t in sorted(by_type)}
        return out

    def submission(self, docs: list[dict], predictions: dict, extra: dict | None = None) -> tuple[str, bytes]:
        """Reference: convert_seed_for_submission.py upload file: one `{"question_id": str, "prediction":
        text}` line per question in annotation order (json.dumps defaults). The original fails on a missing
        answer; so does this."""
        kept = [d for d in docs if self.keep(d)]
        missing = [d["question_id"] for d in kept if d["question_id"] not in predictions]
        if missing:
            raise TaskError(f"{self.name}: {len(missing)} question(s) without a prediction, e.g. {missing[:5]}")
        lines = [json.dumps({"question_id": str(d["question_id"]), "prediction": predictions[d["question_id"]]})
                 for d in kept]
        return ".jsonl", "".join(line + "\n" for line in lines).encode("utf-8")

    # ---- data -----------------------------------------------------------------------------------
    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """Image questions on one scene; video questions on four frames whose middle one (index 1) is
        the scene asked about."""
        from synthetic import color_qa, count_qa, make_scene, multiple_choice, shape_qa

        rng = random.Random(f"{self.name}-{seed}")
        makers = (shape_qa, color_qa, count_qa)  # kinds with at least four possible answers
        image_types = {"shape": 2, "color": 3, "count": 5}  # instance identity / attributes / counting
        wanted = self.keep_rows[1] if self.keep_rows else ("image", "image", "image", "video")
        docs = []
        for i in range(n):
            data_type = wanted[i % len(wanted)]
            scene_seed = seed * 100_003 + 5 * i
            scene = make_scene(scene_seed)
            try:  # shape/color questions do not fit every scene; counting always does
                qa = makers[i % 3](scene, rng)
            except ValueError:
                qa = count_qa(scene, rng)
            mc = multiple_choice(qa, rng, n_options=4)
            if data_type == "image":
                frames = [scene]
            else:
                frames = [make_scene(scene_seed + 1), scene, make_scene(scene_seed + 2), make_scene(scene_seed + 3)]
            type_ = image_types[qa.kind] if data_type == "image" else 10 + i % 3
            row = {"question_id": str(seed * 1_000_000 + i), "question": mc.question,
                   "answer": LETTERS[mc.answer_index], "data_type": data_type, "question_type_id": type_,
                   "data_id": f"synthetic/{scene_seed}",
                   "image": [{"bytes": f.png_bytes(), "path": None} for f in frames]}
            row.update(zip(CHOICES, mc.options, strict=True))
            docs.append(row)
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows from `seed_bench/SEED-Bench.json` (answers, choices, types); image paths from
        `llava-seed-bench.jsonl` when present, else the layout of Evaluation.md: `SEED-Bench-image/<data_id>`
        and `SEED-Bench-video-image/<type>_<question_id>.png` (extract_video_frames.py)."""
        root = Path(root)
        bench = root / "seed_bench" if (root / "seed_bench").is_dir() else root
        annotation = bench / "SEED-Bench.json"
        if not annotation.is_file():
            raise TaskError(f"{self.name}: {annotation} not found")
        question_file = bench / "llava-seed-bench.jsonl"
        paths = {}
        if question_file.is_file():
            for _, line in read_jsonl(question_file, self.name, {"question_id": (str, int), "image": str}):
                paths[str(line["question_id"])] = line["image"]
        questions = require(read_json(annotation, self.name), {"questions": list}, f"{self.name}: {annotation}")
        fields = {**dict.fromkeys(COPIED, object), "question_id": (str, int), "data_type": str}
        rows = []
        for number, q in enumerate(questions["questions"], 1):
            where = f"{self.name}: {annotation}: question {number}"
            qid = require(q, fields, where)["question_id"]
            if q["data_type"] == "image":
                default = f"SEED-Bench-image/{require(q, {'data_id': str}, where)['data_id']}"
            else:
                default = f"SEED-Bench-video-image/{q['question_type_id']}_{qid}.png"
            row = {k: q[k] for k in COPIED}
            row["image"] = [str(bench.relative_to(root) / paths.get(str(qid), default))]
            if self.keep(row):
                rows.append(row)
        return rows


@register_task("seed_image")
class SeedImage(SeedBench):
    title = "SEED-Bench (image, dimensions 1-9)"
    split = "image questions (14,233 on the hub; paper Table 4 SEED-img)"
    keep_rows = ("data_type", ("image",))


@register_task("seed_video")
class SeedVideo(SeedBench):
    title = "SEED-Bench (video, dimensions 10-12, middle frame)"
    split = "video questions, one middle frame each (paper Table 4 SEED-vid)"
    keep_rows = ("data_type", ("video",))


@register_task("seed_all")
class SeedAll(SeedBench):
    title = "SEED-Bench (all dimensions)"
    split = "all questions (19,242 in LLaVA's run; the paper's and MODEL_ZOO's SEED column)"
