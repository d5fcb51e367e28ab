"""VQAv2: val (scored here) and test-dev (the paper's split, scored by the EvalAI server, challenge 830).

Doc id: the `question_id` column (int). Metric: VQA accuracy of the answer LLaVA uploads (the EvalAI-normalised
prediction) as the server's GT-Vision-Lab `vqaEval.py` computes it (`tasks.official_vqa_eval`), overall and per
answer type. Reference: `scripts/v1_5/eval/vqav2.sh`, `scripts/convert_vqav2_for_submission.py`,
GT-Vision-Lab/VQA `vqaEval.py`; protocol 3.1 and 3.13. This module also holds the helpers the other VQA-style
tasks share.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path

from .base import HubSource, Item, Task, TaskError, read_jsonl, shown
from .evalai import NUMBER_WORDS, answer_scores, normalize_answer
from .official_vqa_eval import vqav2_accuracy
from .registry import register_task

# Reference: docs/Evaluation.md "Short-answer" format, paper Table 9; llava_*_test-dev2015.jsonl prompts.
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
QUESTION_KINDS = ("count", "color", "shape", "position", "existence")
ANSWER_TYPES = {"existence": "yes/no", "count": "number"}  # VQAv2 `answer_type`; everything else is "other"
# What the readers of the original question files (model_vqa_loader.py input) use of each line.
QUESTION_FIELDS = {"question_id": (str, int), "text": str, "image": str}


# ---- helpers shared by the VQA-style tasks ---------------------------------------------------------------
def answer_records(doc: dict) -> list:
    """The row's `answers` as stored ([] when absent): VQAv2 rows hold {'answer': ...} dicts, VizWiz/TextVQA
    plain strings. Anything else is an error naming the row (the schema only checks that the column exists)."""
    answers = doc.get("answers") or []
    if not isinstance(answers, (list, tuple)) or not all(
            isinstance(a, str) or (isinstance(a, dict) and isinstance(a.get("answer"), str)) for a in answers):
        raise TaskError(f"row {doc.get('question_id')!r}: 'answers' should be a list of strings or of "
                        f"{{'answer': string}} objects, not {shown(answers)}")
    return list(answers)


def gt_answers(doc: dict) -> list[str]:
    """The annotators' answers as strings."""
    return [a["answer"] if isinstance(a, dict) else a for a in answer_records(doc)]


def vqa_score(parsed: str, doc: dict) -> float | None:
    """m4c score of an already normalised prediction; None when the row has no answers (test splits)."""
    answers = gt_answers(doc)
    return answer_scores(answers).get(parsed, 0.0) if answers else None


def best_scoring(task: Task, doc: dict, candidates: list[str]) -> str | None:
    """The first candidate whose upload scores highest under the task's own scorer; None without candidates."""
    return max(candidates, key=lambda text: task.score_item(task.parse(text, doc), doc) or 0.0, default=None)


def require_image(task: Task, doc: dict) -> list:
    """The row's one image. A row without one is an error for that row, never a text-only prompt."""
    value = doc.get("image")
    if value is None:
        raise TaskError(f"{task.name}: row {task.doc_id(doc, -1)!r} has no image")
    return [value]


class VQAAccuracyTask(Task):
    """The VQA-accuracy tasks (VQAv2, VizWiz, TextVQA): one image per row, EvalAI-normalised predictions scored
    against the annotators' answers, by default as LLaVA's TextVQA scorer does (m4c: the answers normalised
    too). VQAv2 and VizWiz override the score with their servers' evaluators. Reference: m4c_evaluator.py."""

    def image_values(self, doc: dict) -> list:
        return require_image(self, doc)

    def parse(self, text: str, doc: dict) -> str:
        return normalize_answer(text)

    def score_item(self, parsed: str, doc: dict) -> float | None:
        return vqa_score(parsed, doc)

    def chance(self, docs: list[dict]) -> dict | None:
        return self.majority_chance(docs)


def accuracy_by(docs: list[dict], items: list[Item], column: str) -> dict[str, float]:
    """Mean item score x 100 per value of `column` (rows without a score or a value are left out)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for doc, item in zip(docs, items, strict=True):
        if item.score is not None and doc.get(column) is not None:
            groups[str(doc[column])].append(item.score)
    return {name: 100.0 * sum(s) / len(s) for name, s in sorted(groups.items())}


def mean_accuracy(items: list[Item]) -> float:
    scores = [it.score for it in items if it.score is not None]
    return 100.0 * sum(scores) / len(scores) if scores else math.nan


def scene_qa(scene, rng: random.Random, kind: str):
    """A synthetic question of `kind` about `scene`; a count question when the scene cannot support `kind`."""
    from synthetic import color_qa, count_qa, existence_qa, position_qa, shape_qa

    makers = {"count": count_qa, "color": color_qa, "shape": shape_qa, "position": position_qa,
              "existence": lambda s, r: existence_qa(s, r, positive=r.random() < 0.5)}
    try:
        return makers[kind](scene, rng)
    except ValueError:
        return count_qa(scene, rng)


def _variants(kind: str, answer: str) -> tuple[list[str], list[str]]:
    """(spellings that normalise to `answer`, genuinely different answers) an annotator might give."""
    if kind == "count":
        words = [word for word, digit in NUMBER_WORDS.items() if digit == answer and word != "none"]
        return words + [answer + "."], [str(int(answer) + 1)]
    if kind == "existence":
        return [answer.capitalize(), answer + "."], ["no" if answer == "yes" else "yes"]
    if kind == "ocr":
        return [answer.lower(), answer.capitalize()], [answer[:-1] or "unanswerable"]
    if kind == "unanswerable":
        return [], []
    other = {"color": "light " + answer, "shape": answer + " shape", "position": "on the " + answer}
    return [answer.capitalize(), "the " + answer], [other.get(kind, "not sure")]


def annotator_answers(kind: str, answer: str, rng: random.Random) -> list[str]:
    """Ten annotator answers: mostly `answer`, up to three other spellings of it and up to two different
    answers, so the exact answer always keeps at least 8 of 10 votes (score 1.0)."""
    same, different = _variants(kind, answer)
    answers = [answer] * 10
    picks = [rng.choice(same) for _ in range(rng.randint(0, 3))] if same else []
    picks += [rng.choice(different) for _ in range(rng.randint(0, 2))] if different else []
    for slot, value in zip(rng.sample(range(10), len(picks)), picks, strict=True):
        answers[slot] = value
    return answers


def question_lines(path: Path, suffix: str, task: str) -> list[dict]:
    """Lines of an original LLaVA question file, with `question` = the text before the instruction suffix."""
    rows = []
    for number, row in read_jsonl(path, task, QUESTION_FIELDS):
        if not row["text"].endswith(suffix):
            raise TaskError(f"{task}: {path}:{number}: prompt does not end with {suffix!r}")
        row["question"] = row["text"][: -len(suffix)]
        rows.append(row)
    return rows


# ---- VQAv2 ---------------------------------------------------------------------------------------------
class VQAv2(VQAAccuracyTask):
    version = 1
    scoring_version = 2  # 2: the official vqaEval.py instead of m4c (the prompt and answers are unchanged)
    reference = ("scripts/v1_5/eval/vqav2.sh, scripts/convert_vqav2_for_submission.py, "
                 "GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py")
    doc_id_column = "question_id"
    doc_id_rule = "the `question_id` column (int)"
    schema = {"question_id": "id", "question": "str", "answers": "any", "image_id": "int?",
              "answer_type": "str?", "question_type": "str?", "multiple_choice_answer": "str?", "image": "image"}
    max_new_tokens = 128  # Reference: model_vqa_loader.py default; vqav2.sh passes none
    metrics = ("accuracy",)
    primary_metric = "accuracy"

    def prompt(self, doc: dict) -> str:
        # Reference: the question file holds the COCO question unchanged (no capitalize, unlike VizWiz/TextVQA).
        return doc["question"] + SHORT_ANSWER

    def score_item(self, parsed: str, doc: dict) -> float | None:
        """Reference: vqaEval.py on the uploaded answer; None when the row has no answers (test-dev)."""
        answers = answer_records(doc)
        return vqav2_accuracy(parsed, answers) if answers else None

    def gold_text(self, doc: dict) -> str:
        """The consensus `multiple_choice_answer` when it scores best, else the best-scoring annotator answer."""
        consensus = doc.get("multiple_choice_answer")
        return best_scoring(self, doc, ([consensus] if consensus else []) + gt_answers(doc)) or ""

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        return {"accuracy": mean_accuracy(items), "answer_types": accuracy_by(docs, items, "answer_type")}

    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """Up to three questions per scene (VQAv2 has about five per COCO image), ids image_id * 1000 + k."""
        from synthetic import make_scene

        rng = random.Random(f"{self.name}-{seed}")
        docs: list[dict] = []
        image_id = seed * 100_003
        while len(docs) < n:
            scene = make_scene(image_id)
            for k in range(min(3, n - len(docs))):
                qa = scene_qa(scene, rng, QUESTION_KINDS[(len(docs) + k) % len(QUESTION_KINDS)])
                answers = annotator_answers(qa.kind, qa.answer, rng)
                docs.append({"question_id": image_id * 1000 + k, "image_id": image_id, "question": qa.question,
                             "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                                         for i, a in enumerate(answers)],
                             "multiple_choice_answer": qa.answer, "answer_type": ANSWER_TYPES.get(qa.kind, "other"),
                             "question_type": " ".join(qa.question.lower().split()[:2]),
                             "image": {"bytes": scene.png_bytes(), "path": None}})
            image_id += 1
        return docs


@register_task("vqav2_val")
class VQAv2Val(VQAv2):
    title = "VQAv2 (val, VQA accuracy)"
    hub = HubSource("lmms-lab/VQAv2", split="validation", moved_to="lmms-lab-encoder/VQAv2")
    split = "val2014 (214,354 questions; not in the paper, which reports test-dev)"
    row_count = 214_354


@register_task("vqav2_testdev")
class VQAv2TestDev(VQAv2):
    title = "VQAv2 (test-dev, EvalAI server)"
    hub = HubSource("lmms-lab/VQAv2", split="testdev", moved_to="lmms-lab-encoder/VQAv2")
    split = "test-dev 2015 (107,394 questions; paper Table 3)"
    row_count = 107_394
    schema = {**VQAv2.schema, "answers": "any?"}
    scored_locally = False

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows of `vqav2/llava_vqav2_mscoco_test-dev2015.jsonl`, images under `vqav2/test2015/`."""
        root = Path(root)
        bench = root / "vqav2" if (root / "vqav2").is_dir() else root
        lines = question_lines(bench / "llava_vqav2_mscoco_test-dev2015.jsonl", SHORT_ANSWER, self.name)
        return [{"question_id": _as_int(r["question_id"]), "question": r["question"], "answers": [],
                 "image": str((bench / "test2015").relative_to(root) / r["image"])} for r in lines]

    def submission(self, docs: list[dict], predictions: dict, extra: dict | None = None) -> tuple[str, bytes]:
        """Reference: convert_vqav2_for_submission.py: a JSON list (json.dump defaults) with one
        {"question_id": int, "answer": EvalAI-normalised prediction} per question of the FULL test2015 list,
        in that list's order, "" where there is no prediction. The list comes from `extra`:
        "test2015_question_ids" (ints) or "test2015_questions" (path of llava_vqav2_mscoco_test2015.jsonl).
        Without it EvalAI rejects the file, so this is an error unless extra={"allow_partial": True}."""
        extra = extra or {}
        answers = {_as_int(k): v for k, v in predictions.items()}
        ids = _test2015_ids(extra)
        if ids is None:
            if not extra.get("allow_partial"):
                raise TaskError("vqav2_testdev: EvalAI needs an answer for every test2015 question; pass "
                                "--extra test2015_questions=PATH/llava_vqav2_mscoco_test2015.jsonl (or "
                                "--extra allow_partial=1 for a file with only these rows, which the server refuses)")
            ids = [_as_int(self.doc_id(d, i)) for i, d in enumerate(docs)]
        else:
            known = set(ids)
            stray = [self.doc_id(d, i) for i, d in enumerate(docs) if _as_int(self.doc_id(d, i)) not in known]
            if stray:
                raise TaskError(f"vqav2_testdev: {len(stray)} row(s) not in the test2015 list, e.g. {stray[:5]}")
        out = [{"question_id": qid, "answer": normalize_answer(answers[qid]) if qid in answers else ""}
               for qid in ids]
        return ".json", json.dumps(out).encode("utf-8")


def _as_int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TaskError(f"vqav2_testdev: question id {value!r} is not an integer") from None


def _test2015_ids(extra: dict) -> list[int] | None:
    if extra.get("test2015_question_ids") is not None:
        return [_as_int(q) for q in extra["test2015_question_ids"]]
    if extra.get("test2015_questions"):
        rows = read_jsonl(Path(extra["test2015_questions"]), "vqav2_testdev", {"question_id": (str, int)})
        return [_as_int(row["question_id"]) for _, row in rows]
    return None
