"""MM-Vet (v1): 218 open questions on 200 images, graded 0-1 per answer by GPT-4 against `<AND>`/`<OR>` answers.

Doc id: the `question_id` column ("v1_<n>" on the hub, the integer n in LLaVA's question file). Metric: total
= 100 x mean grade, per capability and per capability combination; graded by a judge, so `score` only
reports coverage here. Reference: haotian-liu/LLaVA `llava/eval/model_vqa.py`, `scripts/v1_5/eval/mmvet.sh`,
`scripts/convert_mmvet_for_eval.py`; yuweihao/MM-Vet `mm-vet_evaluator.py` (acde843); protocol 3.11.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np

from .base import HubSource, Task, TaskError, iter_jsonl, read_json, read_jsonl, require, shown
from .judging import JudgeProtocol, ReleasedVerdicts
from .registry import register_task

# Reference: mm-vet_evaluator.py (temperature 0, max_tokens 3). LLaVA's grade files name "gpt-4" (file names
# "..._gpt-4-grade-"), an alias that has moved since; the dated gpt-4-0613 is the default (docs/deviations.md).
JUDGE_MODEL = "gpt-4-0613"
JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 3
# Reference: mm-vet_evaluator.py grading loop. The first call asks at temperature 0.0 without the retry suffix;
# each unparsable reply is re-asked WITH the suffix at the current temperature, which is raised by 0.5 only after
# that call: 0.0, 0.5, 1.0, 1.5. The evaluator's sixth call (at 2.0) is made but its reply discarded (score 0.0),
# so it is not made here; a grade still unparsable after the five is missing (docs/deviations.md row 69).
RETRY_TEMPERATURES = (0.0, 0.0, 0.5, 1.0, 1.5)
MAX_TRIES = len(RETRY_TEMPERATURES)
# Reference: the capability columns of the evaluator's cap-score CSV (counter.most_common order on MM-Vet v1).
CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")
# Reference: mm-vet_evaluator.py module constant `prompt` (unchanged from 97de1c0, Aug 2023, to acde843),
# byte for byte: instruction, blank line, a 7-row few-shot table, and a final newline.
_MEME_TRUTH = ("This meme is poking fun at the fact that the names of the countries Iceland and Greenland are "
               "misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland "
               "is mostly covered in ice and snow. The meme is saying that the person has trust issues because the "
               "names of these countries do not accurately represent their landscapes.")
GRADER_PROMPT = (
    "Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. "
    "<AND> in the ground truth means it is totally right only when all elements in the ground truth are present "
    "in the prediction, and <OR> means it is totally right when any one element in the ground truth is present "
    "in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, "
    "0.9, or 1.0 (totally right). Just complete the last space of the correctness score.\n"
    "\n"
    "Question | Ground truth | Prediction | Correctness\n"
    "--- | --- | --- | ---\n"
    "What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0\n"
    "What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0\n"
    f"Can you explain this meme? | {_MEME_TRUTH} | The meme talks about Iceland and Greenland. It's pointing out "
    "that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4\n"
    f"Can you explain this meme? | {_MEME_TRUTH} | The meme is using humor to point out the misleading nature of "
    "Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is "
    "mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that "
    "these contradictions can lead to distrust or confusion. The humor in this meme is derived from the "
    "unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0\n"
)
# Reference: mm-vet_evaluator.py: appended to the query when a reply did not parse as a grade.
RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): "


def grade_messages(doc: dict, answer: str, retry: bool = False) -> list[dict]:
    """The grader's single user message: prompt, newline, then `question | truth | prediction | ` with
    spaces put around every <AND>/<OR> of the ground truth. Reference: mm-vet_evaluator.py `runs`."""
    truth = doc["answer"].replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    query = GRADER_PROMPT + "\n" + " | ".join([doc["question"], truth, answer, ""])
    return [{"role": "user", "content": query + (RETRY_SUFFIX if retry else "")}]


def parse_grade(text: str) -> float | None:
    """The grade in [0, 1], or None (the original then re-asks; after 5 tries it scores 0.0).
    Reference: mm-vet_evaluator.py: `content.split(" ")[0].strip()` then float(), rejected outside [0, 1];
    so " 0.5" (leading space) fails but "0.5\\n" passes. NaN, which the original's range test lets through,
    is rejected here."""
    try:
        grade = float(text.split(" ")[0].strip())
    except ValueError:
        return None
    return grade if 0.0 <= grade <= 1.0 else None


def grade_request(doc: dict, answer: str, attempt: int) -> list[dict]:
    """Reference: mm-vet_evaluator.py: a re-ask after an unparsable grade carries the retry suffix."""
    return grade_messages(doc, answer, retry=attempt > 0)


def capabilities(doc: dict) -> frozenset[str]:
    """A row's capability set: the hub's comma-separated string ("rec,ocr") or MM-Vet's list."""
    value = doc.get("capability") or ""
    parts = value.split(",") if isinstance(value, str) else value
    return frozenset(p.strip() for p in parts if p and p.strip())


def combination_name(caps: frozenset[str]) -> str:
    """`_`-joined capabilities in CAPABILITIES order. The original joins a Python set, whose order depends
    on the interpreter's string-hash seed (LLaVA's CSV has both "spat_ocr" and "spat_rec_ocr_gen")."""
    known = [c for c in CAPABILITIES if c in caps]
    return "_".join(known + sorted(caps - set(known)))


def _runs_of(grade) -> list[float] | None:
    if grade is None:
        return None
    return [float(g) for g in grade] if isinstance(grade, (list, tuple)) else [float(grade)]


def aggregate_grades(docs: list[dict], grades: list, decimal_places: int | None = None) -> dict:
    """MM-Vet scores from per-doc grades (in doc order): each a float, a list of floats (one per grading run)
    or None (ungraded: counts 0, as the original's denominators cover every question).
    total = 100 x sum / n_docs; a capability = 100 x sum over rows having it / their count; likewise each exact
    capability combination. Several runs: per-run scores, then their mean; `std` = population std of the run
    totals. `decimal_places` rounds like the evaluator's CSV (numpy rounding; its default is 1).
    Reference: mm-vet_evaluator.py load_metadata / export_result."""
    runs = [_runs_of(g) for g in grades]
    n_runs = max((len(r) for r in runs if r is not None), default=1)
    if len(runs) != len(docs) or any(r is not None and len(r) != n_runs for r in runs):
        raise TaskError(f"MM-Vet grades: one entry per row, each graded row with {n_runs} run(s)")
    total: list = [len(docs), [0.0] * n_runs]
    by_cap: dict[str, list] = {}
    by_combo: dict[str, list] = {}  # insertion order = first appearance, the tie order of the original
    for doc, run in zip(docs, runs, strict=True):
        run = run or [0.0] * n_runs
        caps = capabilities(doc)
        for cap in caps:
            _add(by_cap, cap, run)
        _add(by_combo, combination_name(caps), run)
        total[1] = [t + g for t, g in zip(total[1], run, strict=True)]
    cap_order = sorted(by_cap, key=lambda k: (-by_cap[k][0], _cap_rank(k)))
    combo_order = sorted(by_combo, key=lambda k: -by_combo[k][0])
    totals = _percent(total)
    return {
        "total": _rounded(totals.mean(), decimal_places), "std": _rounded(totals.std(), decimal_places),
        "runs": [_rounded(t, decimal_places) for t in totals],
        "capabilities": {k: _rounded(_percent(by_cap[k]).mean(), decimal_places) for k in cap_order},
        "combinations": {k: _rounded(_percent(by_combo[k]).mean(), decimal_places) for k in combo_order},
        "capability_counts": {k: by_cap[k][0] for k in cap_order},
        "combination_counts": {k: by_combo[k][0] for k in combo_order},
        "n_graded": sum(r is not None for r in runs), "n_ungraded": sum(r is None for r in runs), "n_runs": n_runs,
    }


def _add(groups: dict, key: str, run: list[float]) -> None:
    group = groups.setdefault(key, [0, [0.0] * len(run)])
    group[0] += 1
    group[1] = [s + g for s, g in zip(group[1], run, strict=True)]


def _percent(group: list) -> np.ndarray:
    """Per-run score of a group [count, per-run sums]: sum / count x 100 (NaN for an empty total)."""
    count, sums = group
    return np.array(sums) / count * 100 if count else np.full(len(sums), math.nan)


def _rounded(value, decimal_places: int | None) -> float:
    # Reference: the evaluator rounds numpy values (round(np.float64) = np.round, half to even after scaling).
    return float(np.round(value, decimal_places)) if decimal_places is not None else float(value)


def _cap_rank(cap: str) -> tuple[int, str]:
    return (CAPABILITIES.index(cap), "") if cap in CAPABILITIES else (len(CAPABILITIES), cap)


def submission_key(question_id) -> str:
    """Reference: convert_mmvet_for_eval.py: key f"v1_{question_id}" over LLaVA's integer ids (0 -> "v1_0").
    The hub's ids already read "v1_0" and are kept as they are."""
    text = str(question_id)
    return text if text.startswith("v1_") else f"v1_{text}"


def reference_answer(truth: str) -> str:
    """A fully correct answer: the first <OR> alternative, its <AND> elements joined with " and "."""
    first = truth.split("<OR>")[0]
    return " and ".join(part.strip() for part in first.split("<AND>"))


def released_grades(paths: list[Path]) -> dict[str, list]:
    """"v1_<n>" -> [grade per run] from MM-Vet grade files (several files: their runs one after another).
    Reference: mm-vet_evaluator.py `runs` writes {id: {"model": [...], "content": [...], "score": [...]}}, one
    entry per run, `content` being the reply's first field. After five unreadable replies it records 0.0 whatever
    the reply says: a score its content does not read as is that forced 0.0, kept as None here."""
    out: dict[str, list] = {}
    for path in paths:
        grades = require(read_json(Path(path), "mmvet"), {}, f"mmvet: {path}")
        for key, entry in grades.items():
            where = f"mmvet: {path}: {key!r}"
            entry = require(entry, {"content": list, "score": list}, where)
            if len(entry["content"]) != len(entry["score"]):
                raise TaskError(f"{where}: {len(entry['score'])} scores but {len(entry['content'])} replies")
            runs = out.setdefault(key, [])
            for content, score in zip(entry["content"], entry["score"], strict=True):
                if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
                    raise TaskError(f"{where}: a score should be a number in [0, 1], got {shown(score)}")
                read = parse_grade(content) if isinstance(content, str) else None
                runs.append(float(score) if read == score else None)
    return out


def released_results(path: Path) -> dict[str, str]:
    """"v1_<n>" -> answer, from the evaluator's results file ({"v1_<n>": answer}, convert_mmvet_for_eval.py)
    or from the model_vqa.py answer file it was converted from (question_id, text per line)."""
    path = Path(path)
    if path.suffix != ".jsonl":
        results = require(read_json(path, "mmvet"), {}, f"mmvet: {path}")
        for key, value in results.items():
            if not isinstance(value, str):
                raise TaskError(f"mmvet: {path}: the answer to {key!r} should be text, got {shown(value)}")
        return dict(results)
    out: dict[str, str] = {}
    for number, row in iter_jsonl(path, "mmvet", {"question_id": (str, int), "text": str}):
        key = submission_key(row["question_id"])
        if key in out:
            raise TaskError(f"mmvet: {path}:{number}: a second answer to question {row['question_id']!r}")
        out[key] = row["text"]
    return out


# What a substitute judge is calibrated against: the grades of the published LLaVA-1.5 answers (eval.zip:
# mm-vet/results; graded by "gpt-4", see JUDGE_MODEL). Offsets per capability.
RELEASED = ReleasedVerdicts(verdicts=released_grades, answers=released_results, key=submission_key,
                            item_score=float, groups=lambda doc: tuple(sorted(capabilities(doc), key=_cap_rank)),
                            model=JUDGE_MODEL)


@register_task("mmvet")
class MMVet(Task):
    version = 1
    title = "MM-Vet (v1)"
    reference = ("llava/eval/model_vqa.py, scripts/v1_5/eval/mmvet.sh, scripts/convert_mmvet_for_eval.py, "
                 "yuweihao/MM-Vet mm-vet_evaluator.py")
    hub = HubSource("lmms-lab/MMVet", split="test", moved_to="lmms-lab-encoder/MMVet")
    split = "all 218 questions (200 images), graded by the official MM-Vet evaluator"
    row_count = 218
    doc_id_column = "question_id"
    doc_id_rule = "the `question_id` column (\"v1_<n>\" on the hub; the integer n in LLaVA's llava-mm-vet.jsonl)"
    schema = {"question_id": "id", "question": "str", "answer": "str", "capability": "any", "image": "image"}
    max_new_tokens = 1024  # Reference: model_vqa.py generate(max_new_tokens=1024)
    # Reference: protocol 1.3: at release model_vqa.py called the CLIP processor directly (centre crop, no pad).
    image_mode = "crop"
    metrics = ("total",)
    primary_metric = "total"
    scored_locally = False
    judge = JudgeProtocol(messages=grade_request, parse=parse_grade, aggregate=aggregate_grades, model=JUDGE_MODEL,
                          max_tokens=JUDGE_MAX_TOKENS,
                          temperatures=RETRY_TEMPERATURES, released=RELEASED)

    def prompt(self, doc: dict) -> str:
        # Reference: llava-mm-vet.jsonl `text` = the bare MM-Vet question (paper Table 9: no format prompt).
        return doc["question"]

    def gold_text(self, doc: dict) -> str:
        return reference_answer(doc["answer"])

    def grade_messages(self, doc: dict, answer: str, retry: bool = False) -> list[dict]:
        return grade_messages(doc, answer, retry)

    def submission(self, docs: list[dict], predictions: dict, extra: dict | None = None) -> tuple[str, bytes]:
        """The results JSON of the MM-Vet evaluator: {"v1_<n>": answer} in question order, written as
        convert_mmvet_for_eval.py does (json.dump, indent=2, ASCII escapes, no final newline). The evaluator
        fails on a missing answer; so does this."""
        missing = [self.doc_id(d, i) for i, d in enumerate(docs) if self.doc_id(d, i) not in predictions]
        if missing:
            raise TaskError(f"mmvet: {len(missing)} question(s) without a prediction, e.g. {missing[:5]}")
        result: dict[str, str] = {}
        for index, doc in enumerate(docs):
            key = submission_key(self.doc_id(doc, index))
            if key in result:
                raise TaskError(f"mmvet: two questions map to the result key {key!r}")
            result[key] = predictions[self.doc_id(doc, index)]
        return ".json", json.dumps(result, indent=2).encode("ascii")

    # ---- data -----------------------------------------------------------------------------------
    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """MM-Vet-style rows on synthetic scenes: <OR> number answers, <AND> colour lists, spatial, OCR and
        arithmetic questions, each with its capability set."""
        from synthetic import make_scene

        rng = random.Random(f"mmvet-{seed}")
        docs = []
        for i in range(n):
            scene = make_scene(seed * 100_003 + i)
            question, answer, caps = _synthetic_question(i % 5, scene, rng)
            docs.append({"question_id": f"v1_{seed * 100_000 + i}", "question": question, "answer": answer,
                         "capability": caps, "image": {"bytes": scene.png_bytes(), "path": None}})
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows from `mm-vet/` (mmvet.sh; Evaluation.md says `mmvet/`): LLaVA's llava-mm-vet.jsonl (question
        ids 0..217, question text, image name), MM-Vet's mm-vet.json (answer and capability list under
        "v1_<id>", from mm-vet.zip) and images/."""
        root = Path(root)
        bench = next((root / d for d in ("mm-vet", "mmvet") if (root / d / "llava-mm-vet.jsonl").is_file()), root)
        questions_file, meta_file = bench / "llava-mm-vet.jsonl", bench / "mm-vet.json"
        for path in (questions_file, meta_file):
            if not path.is_file():
                raise TaskError(f"mmvet: {path} not found")
        meta = require(read_json(meta_file, self.name), {}, f"mmvet: {meta_file}")
        rows = []
        for _, q in read_jsonl(questions_file, self.name, {"question_id": (str, int), "text": str, "image": str}):
            key = submission_key(q["question_id"])
            if key not in meta:
                raise TaskError(f"mmvet: {meta_file} has no entry {key!r}")
            entry = require(meta[key], {"answer": str, "capability": (str, list)}, f"mmvet: {meta_file}: {key!r}")
            caps = entry["capability"]
            rows.append({"question_id": q["question_id"], "question": q["text"], "answer": entry["answer"],
                         "capability": ",".join(map(str, caps)) if isinstance(caps, list) else caps,
                         "image": str(bench.relative_to(root) / "images" / q["image"])})
        return rows


def _synthetic_question(kind: int, scene, rng: random.Random) -> tuple[str, str, str]:
    """(question, answer, capability) of one kind; a kind that does not fit the scene falls back to arithmetic."""
    from synthetic import ocr_qa, position_qa

    count = len(scene.shapes)
    colors = sorted({s.color for s in scene.shapes})
    if kind == 0:
        return "How many shapes are in the image?", f"{count}<OR>{_number(count)}", "rec"
    if kind == 1 and len(colors) > 1:
        return "Which colors do the shapes have?", "<AND>".join(colors), "rec"
    if kind == 2:
        try:
            qa = position_qa(scene, rng)
            return qa.question, qa.answer, "rec,spat"
        except ValueError:
            pass
    qa = ocr_qa(scene, rng) if kind == 3 else None
    if qa is not None:
        return qa.question, qa.answer, "ocr"
    return "What is the number of shapes plus 3?", str(count + 3), "rec,math"


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _number(n: int) -> str:
    return _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else str(n)
