"""MME: yes/no questions, two per image (one true, one false), in 10 perception and 4 cognition subtasks.

Doc id: the row index (`question_id` is the image path, shared by the two questions of an image). Metric: the
official eval_tool score, 100 * (acc + acc+) per subtask; `perception` = sum over the 10 perception subtasks
(the paper's MME number), `cognition` reported apart. Reference: `scripts/v1_5/eval/mme.sh`, `llava_mme.jsonl`,
`convert_answer_to_mme.py` (eval.zip) and MME `eval_tool/calculation.py`; protocol 3.7.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path

from .base import HubSource, Item, Task, TaskError, read_jsonl, read_text
from .pope import SHORT_ANSWER
from .registry import register_task

# Reference: MME eval_tool/calculation.py `eval_type_dict` (subtask names as in the MME release folders).
PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
YES_NO = "Please answer yes or no."  # MME's own instruction, ending every question of the release
QUESTION_FILE = "llava_mme.jsonl"  # Reference: scripts/v1_5/eval/mme.sh
RELEASE = "MME_Benchmark_release_version"


def llava_question(question: str) -> str:
    """MME question -> the question line of llava_mme.jsonl: the trailing "Please answer yes or no." and the
    one or two spaces before it removed. Reference: llava_mme.jsonl ("Is there a brown giraffe in the
    image?  Please answer yes or no." -> "Is there a brown giraffe in the image?"); convert_answer_to_mme.py
    restores either spacing to look the question up."""
    text = question.strip()
    if text.endswith(YES_NO):
        text = text[:-len(YES_NO)].rstrip()
    return text


def parse_yes_no(text: str) -> str:
    """Reference: MME calculation.py `parse_pred_ans` on the lower-cased prediction: exactly yes/no, else
    "yes" if its first 4 characters contain "yes", elif "no" ("not", "none", "know"), else "other"."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def subtask_score(groups: dict[str, list[float]]) -> dict:
    """Reference: calculation.py: acc = correct / questions, acc+ = images with every question right / images,
    score = 100 * acc + 100 * acc+ (at most 200)."""
    scores = [s for group in groups.values() for s in group]
    acc = sum(scores) / len(scores)
    acc_plus = sum(all(s == 1.0 for s in group) for group in groups.values()) / len(groups)
    return {"score": 100 * acc + 100 * acc_plus, "acc": 100 * acc, "acc_plus": 100 * acc_plus,
            "n": len(scores), "n_images": len(groups)}


@register_task("mme")
class MME(Task):
    version = 1
    title = "MME (perception; cognition reported apart)"
    reference = ("scripts/v1_5/eval/mme.sh, playground/data/eval/MME/llava_mme.jsonl, convert_answer_to_mme.py, "
                 "MME eval_tool/calculation.py")
    hub = HubSource("lmms-lab/MME", split="test", moved_to="lmms-lab-encoder/MME")
    split = "MME release (2,374 questions on 1,187 images; perception 2,114, cognition 260)"
    row_count = 2374
    doc_id_rule = ("the row index (`question_id` is the image path shared by the two questions of an image; "
                   "original answer files are matched by question_id + prompt)")
    schema = {"question_id": "str", "question": "str", "answer": "str", "category": "str", "image": "image"}
    max_new_tokens = 128  # Reference: model_vqa_loader.py
    metrics = ("perception", "cognition")
    primary_metric = "perception"

    def prompt(self, doc: dict) -> str:
        # Reference: llava_mme.jsonl text = question + "\nAnswer the question using a single word or phrase."
        return llava_question(doc["question"]) + SHORT_ANSWER

    def parse(self, text: str, doc: dict) -> str:
        return parse_yes_no(text)

    def score_item(self, parsed: str, doc: dict) -> float:
        return float(parsed == doc["answer"].strip().lower())  # Reference: calculation.py lower-cases the GT

    def gold_text(self, doc: dict) -> str:
        return doc["answer"].strip().capitalize()

    def chance(self, docs: list[dict]) -> dict | None:
        """The better of two trivial answerers: a constant answer (on MME's one-yes-one-no pairs acc 50 and acc+ 0
        per subtask: 500 over the ten perception subtasks) and a fair coin per question (acc 50 and, both questions
        of an image right a quarter of the time, acc+ 25 in expectation: 750)."""
        constant = self.constant_chance(docs, ("Yes", "No"))
        pairs: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for doc, item in zip(docs, self.random_choice_items(docs, lambda doc: ("Yes", "No")), strict=True):
            pairs[doc["category"]][pair_key(doc)].append(item.score)
        expected = {}  # subtask -> the coin's expected acc + acc+ (calculation.py's score)
        for name, groups in pairs.items():
            scores = [s for group in groups.values() for s in group]
            expected[name] = 100 * sum(scores) / len(scores) + 100 * sum(map(math.prod, groups.values())) / len(groups)
        present = [expected[name] for name in PERCEPTION if name in expected]
        coin = {"value": sum(present), "answerer": 'a fair coin, "Yes" or "No" (expected score)'} if present else None
        return max((c for c in (constant, coin) if c is not None), key=lambda c: c["value"], default=None)

    bootstrap_unit_name = "image (question pair)"

    def bootstrap_unit(self, doc: dict, index: int):
        return doc["category"], str(doc["question_id"])

    def bootstrap_stratum(self, doc: dict):
        return doc["category"]

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        # acc+ pairs the questions of one image: same subtask and same question_id (the original pairs
        # consecutive lines of a subtask file, which are the two questions of an image in llava_mme.jsonl).
        groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for doc, item in zip(docs, items, strict=True):
            groups[doc["category"]][pair_key(doc)].append(item.score)
        subtasks = {name: subtask_score(g) for name, g in sorted(groups.items())}
        out: dict = {}
        for key, names in (("perception", PERCEPTION), ("cognition", COGNITION)):
            present = [subtasks[n]["score"] for n in names if n in subtasks]
            out[key] = sum(present) if present else math.nan
            out[f"n_{key}_subtasks"] = len(present)  # the maximum of the total is 200 per subtask present
        out["subtasks"] = subtasks
        out["n_other"] = sum(it.parsed == "other" for it in items)
        unknown = sorted(set(subtasks) - set(PERCEPTION) - set(COGNITION))
        if unknown:
            out["unknown_subtasks"] = unknown  # scored, but in neither total
        return out

    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """Two questions per image (one true, one false, random order) with MME's instruction; the subtask
        cycles through all 14 names, and every fifth image uses the two-space spelling of the release."""
        from synthetic import existence_qa, make_scene

        rng = random.Random(f"mme-{seed}")
        names = PERCEPTION + COGNITION
        docs: list[dict] = []
        image = 0
        while len(docs) < n:
            scene = make_scene(seed * 100_003 + image)
            category = names[image % len(names)]
            truths = [True, False]
            rng.shuffle(truths)
            space = "  " if image % 5 == 4 else " "
            for truth in truths[:n - len(docs)]:
                qa = existence_qa(scene, rng, positive=truth)
                docs.append({"question_id": f"{category}/{image:04d}.png", "question": qa.question + space + YES_NO,
                             "answer": "Yes" if truth else "No", "category": category,
                             "image": {"bytes": scene.png_bytes(), "path": None}})
            image += 1
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows of `MME/llava_mme.jsonl` in file order, answers and original questions from
        `MME/MME_Benchmark_release_version/<subtask>/` as convert_answer_to_mme.py finds them: key (subtask,
        image name + ".txt", question + " Please answer yes or no.", or the two-space spelling)."""
        root = Path(root)
        base = root / "MME" if (root / "MME" / QUESTION_FILE).is_file() else root
        if not (base / QUESTION_FILE).is_file():
            raise TaskError(f"mme: {QUESTION_FILE} not found under {root} (or {root / 'MME'})")
        truth = read_ground_truth(base / RELEASE)
        docs = []
        fields = {"question_id": str, "text": str, "image": str}
        for number, row in read_jsonl(base / QUESTION_FILE, self.name, fields):
            qid = row["question_id"]
            category = qid.split("/")[0]
            file = qid.split("/")[-1].split(".")[0] + ".txt"
            question = row["text"].replace(SHORT_ANSWER.strip(), "").strip()
            spellings = [question] if YES_NO in question else [question + " " + YES_NO, question + "  " + YES_NO]
            keys = [(category, file, q) for q in spellings]
            found = next((k for k in keys if k in truth), None)
            if found is None:
                raise TaskError(f"mme: {QUESTION_FILE}:{number}: no answer for {question!r} in {RELEASE}/{category}")
            docs.append({"question_id": qid, "question": found[2], "answer": truth[found],
                         "category": row.get("category", category),
                         "image": str((base / RELEASE).relative_to(root) / row["image"])})
        return docs

    def match_answer_lines(self, lines: list[dict], docs) -> dict | None:
        """doc id -> text for an original answer file, whose question_id (the image path) repeats: a line goes
        to the row with the same question_id and prompt (`prompt` = question line + instruction, as
        model_vqa_loader.py writes it); lines without a prompt go to that image's rows in order. None: the
        file is keyed by row index (this harness's own files)."""
        if all(isinstance(line.get("question_id"), int) for line in lines):
            return None
        by_prompt, by_image = {}, defaultdict(list)
        for index, doc in enumerate(docs):
            by_prompt[(str(doc["question_id"]), self.prompt(doc))] = index
            by_image[str(doc["question_id"])].append(index)
        out: dict = {}
        for number, line in enumerate(lines, 1):
            qid, prompt = str(line["question_id"]), line.get("prompt")
            if prompt is not None:
                index = by_prompt.get((qid, prompt.removeprefix("<image>\n")))
            else:
                index = next((i for i in by_image.get(qid, ()) if i not in out), None)
            if index is None:
                raise TaskError(f"mme: answer line {number} ({qid!r}, {prompt!r}) matches no row")
            if index in out:
                raise TaskError(f"mme: answer line {number} repeats the prediction for row {index} ({qid!r})")
            out[index] = line["text"]
        return out


def read_ground_truth(release: Path) -> dict[tuple[str, str, str], str]:
    """(subtask, txt file name, question) -> "Yes"/"No". Reference: convert_answer_to_mme.py `get_gt`: a
    subtask folder with `images/` keeps its txt files in `questions_answers_YN/`, others beside the images;
    each line is question TAB answer."""
    if not release.is_dir():
        raise TaskError(f"mme: {release} not found")
    truth = {}
    for folder in sorted(p for p in release.iterdir() if p.is_dir()):
        qa_dir = folder / "questions_answers_YN" if (folder / "images").exists() else folder
        for txt in sorted(qa_dir.glob("*.txt")):
            for line in read_text(txt, "mme").splitlines():
                fields = line.strip().split("\t")
                if len(fields) == 2:
                    truth[(folder.name, txt.name, fields[0])] = fields[1]
                elif line.strip():
                    raise TaskError(f"mme: {txt}: expected 'question<TAB>answer', got {line[:60]!r}")
    return truth


def pair_key(doc: dict) -> str:
    """The acc+ pair of a row; a bootstrap draw that repeats a pair marks each copy (`_copy`), so the copies
    stay separate pairs instead of one group of four."""
    key = str(doc["question_id"])
    return f"{key}#{doc['_copy']}" if "_copy" in doc else key
