"""LLaVA-Bench (In-the-Wild): 60 open questions (conv / detail / complex) on 24 images, judged by GPT-4.

Doc id: the `question_id` column. Metric: GPT-4 relative score = mean(model score) / mean(reference score)
x 100 per category and overall; scored by a judge, so `score` only reports coverage here.
Reference: haotian-liu/LLaVA `llava/eval/model_vqa.py`, `llava/eval/eval_gpt_review_bench.py`,
`llava/eval/table/rule.json`, `llava/eval/summarize_gpt_review.py`, `scripts/v1_5/eval/llavabench.sh`; protocol 3.10.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from .base import HubSource, Task, TaskError, iter_jsonl, read_jsonl, shown
from .judging import JudgeProtocol, ReleasedVerdicts
from .registry import register_task

CATEGORIES = ("conv", "detail", "complex")
# Reference: eval_gpt_review_bench.py get_eval (model, system message, temperature, max_tokens default);
# protocol 3.10: gpt-4-0314 judged the published numbers.
JUDGE_MODEL = "gpt-4-0314"
JUDGE_TEMPERATURE = 0.2
JUDGE_MAX_TOKENS = 1024
# Unparsable reviews: the original records (-1, -1) and averages it in; we ask again with the same settings, up
# to this many attempts in all, then call the verdict missing (docs/deviations.md).
REVIEW_ATTEMPTS = 3
SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."
# Reference: llava/eval/table/rule.json, keys llava_bench_conv / _detail / _complex: three identical entries
# (role "Assistant"); note the space before the first "\n", kept byte for byte.
RULE_ROLE = "Assistant"
RULE_PROMPT = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above. The user asks the question on observing an image. For your reference, the visual "
    "content in the image is represented with a few sentences describing the image. \n"
    "Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant "
    "receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.\n"
    "Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, "
    "respectively. The two scores are separated by a space.\n"
    "In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
    "potential bias and ensuring that the order in which the responses were presented does not affect your "
    "judgment."
)
RULES = {f"llava_bench_{c}": {"role": RULE_ROLE, "prompt": RULE_PROMPT} for c in CATEGORIES}
# Reference: eval_gpt_review_bench.py parse_score returns [-1, -1] for a review it cannot read, and
# summarize_gpt_review.py averages those pairs like any other (a quirk that lowers both means).
ORIGINAL_FAILED_PAIR = (-1.0, -1.0)


def context_text(caption) -> str:
    """Reference: eval_gpt_review_bench.py: a list of captions is joined with newlines, a string kept."""
    return "\n".join(caption) if isinstance(caption, list) else caption


def review_messages(doc: dict, answer: str) -> list[dict]:
    """The GPT-4 review request for one answer: the reference (GPT-4, text-only) answer is always
    Assistant 1, the model's answer Assistant 2.
    Reference: eval_gpt_review_bench.py `content` layout and get_eval messages, rule.json."""
    category = "llava_bench_" + str(doc["category"])
    if category not in RULES:  # the original asserts: "Visual QA category not found in rule file"
        raise TaskError(f"LLaVA-Bench question {doc.get('question_id')!r}: unknown category {doc['category']!r}")
    role, rule = RULES[category]["role"], RULES[category]["prompt"]
    content = (f"[Context]\n{context_text(doc['caption'])}\n\n"
               f"[Question]\n{doc['question']}\n\n"
               f"[{role} 1]\n{doc['gpt_answer']}\n\n[End of {role} 1]\n\n"
               f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
               f"[System]\n{rule}\n\n")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def parse_review_scores(text: str) -> tuple[float, float] | None:
    """(reference score, model score) from a review, or None when unparseable.
    Reference: eval_gpt_review_bench.py parse_score: first line, commas -> spaces, split on single spaces,
    exactly two fields, each `float()`-ed; so "8, 9" (three fields) fails. The original records (-1, -1)
    for a failure (see ORIGINAL_FAILED_PAIR); here the caller decides."""
    fields = text.split("\n")[0].replace(",", " ").split(" ")
    if len(fields) != 2:
        return None
    try:
        return float(fields[0]), float(fields[1])
    except ValueError:
        return None


def _summary(pairs: list) -> dict:
    """Reference: summarize_gpt_review.py: column means (numpy), each rounded to 3 decimals, then
    relative = round(model / reference * 100, 1) and both means x 10 rounded to 1 decimal."""
    ref, model = (round(x, 3) for x in np.asarray(pairs, dtype=float).mean(0).tolist())
    relative = round(model / ref * 100, 1) if ref else math.nan  # the original divides by zero here
    return {"relative": relative, "reference": round(ref * 10, 1), "model": round(model * 10, 1),
            "n": len(pairs)}


def summarize(pairs_by_category: dict, drop_unparsed: bool = False) -> dict:
    """Per category (sorted, as printed by the original) and `all`: relative score, both mean scores x 10
    and counts. A None pair (unparseable review) becomes (-1, -1) as in the original unless `drop_unparsed`."""
    out, everything, unparsed = {}, [], 0
    for category in sorted(pairs_by_category):
        pairs = []
        for pair in pairs_by_category[category]:
            unparsed += pair is None
            if pair is None and drop_unparsed:
                continue
            pairs.append(ORIGINAL_FAILED_PAIR if pair is None else tuple(pair))
        if pairs:
            out[category] = _summary(pairs)
            everything.extend(pairs)
    if everything:
        out["all"] = _summary(everything)
    out["n_unparsed"] = unparsed
    return out


def average_runs(overall_scores: list[float]) -> float:
    """Reference: protocol 3.10: the reported LLaVA-W number is the mean of three review runs' rounded
    overall relative scores (64.7, 65.3, 66.3 -> 65.4 for 7B), rounded to 1 decimal."""
    return round(sum(overall_scores) / len(overall_scores), 1)


def review_request(doc: dict, answer: str, attempt: int) -> list[dict]:
    """Every attempt sends the same review request (a re-ask changes nothing but the draw)."""
    return review_messages(doc, answer)


def parse_review(text: str) -> list[float] | None:
    """The verdict stored for a review: [reference score, model score], or None when unparseable."""
    pair = parse_review_scores(text)
    return None if pair is None else list(pair)


def aggregate_reviews(docs: list[dict], verdicts: list[list]) -> dict:
    """LLaVA-Bench metrics from score pairs, verdicts[i][r] = [reference, model] for docs[i] in run r (at least
    one doc): each run summarised by category and overall, then the mean over runs of the relative scores.
    Reference: summarize_gpt_review.py per run; protocol 3.10 for the mean of the runs."""
    per_run = []
    for run in range(len(verdicts[0])):
        by_category: dict = {}
        for doc, runs in zip(docs, verdicts, strict=True):
            by_category.setdefault(doc["category"], []).append(tuple(runs[run]))
        per_run.append(summarize(by_category))
    overall = [s["all"]["relative"] for s in per_run]
    categories = {c: average_runs([s[c]["relative"] for s in per_run])
                  for c in sorted(per_run[0]) if c not in ("all", "n_unparsed")}
    return {"relative_score": average_runs(overall), "runs_relative": overall, "categories": categories,
            "per_run": per_run}


def released_reviews(paths: list[Path]) -> dict[str, list]:
    """question_id (as text) -> [score pair per review run] from LLaVA's review files, one file per run.
    Reference: eval_gpt_review_bench.py writes a line per question with question_id, category, `content` (the
    review) and `tuple` = parse_score(content), [-1, -1] when unreadable (kept as None here); llavabench.sh
    writes one file per review run. A question a file lacks is None in that run."""
    out: dict[str, list] = {}
    for run, path in enumerate(paths):
        seen = set()
        for number, row in iter_jsonl(Path(path), "llava_bench", {"question_id": (str, int), "tuple": list}):
            key, pair = str(row["question_id"]), row["tuple"]
            if key in seen:
                raise TaskError(f"llava_bench: {path}:{number}: question_id {row['question_id']!r} twice in one run")
            seen.add(key)
            if len(pair) != 2 or not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                                         for x in pair):
                raise TaskError(f"llava_bench: {path}:{number}: `tuple` should be two scores, got {shown(pair)}")
            runs = out.setdefault(key, [])
            runs.extend([None] * (run - len(runs)))
            runs.append(None if tuple(map(float, pair)) == ORIGINAL_FAILED_PAIR else [float(x) for x in pair])
    return {key: runs + [None] * (len(paths) - len(runs)) for key, runs in out.items()}


def released_answers(path: Path) -> dict[str, str]:
    """question_id (as text) -> answer, from a model_vqa.py answer file (question_id, text, ... per line)."""
    out: dict[str, str] = {}
    for number, row in iter_jsonl(Path(path), "llava_bench", {"question_id": (str, int), "text": str}):
        if str(row["question_id"]) in out:
            raise TaskError(f"llava_bench: {path}:{number}: a second answer to question {row['question_id']!r}")
        out[str(row["question_id"])] = row["text"]
    return out


# What a substitute judge is calibrated against: gpt-4-0314's reviews of the published LLaVA-1.5 answers
# (eval.zip: llava-bench-in-the-wild/answers and reviews). Per answer the model's score (Assistant 2) is
# correlated; the offsets are per category.
RELEASED = ReleasedVerdicts(verdicts=released_reviews, answers=released_answers, key=str,
                            item_score=lambda pair: pair[1], groups=lambda doc: (str(doc["category"]),),
                            model=JUDGE_MODEL)


@register_task("llava_bench")
class LlavaBench(Task):
    version = 1
    title = "LLaVA-Bench (In-the-Wild)"
    reference = ("llava/eval/model_vqa.py, llava/eval/eval_gpt_review_bench.py, llava/eval/table/rule.json, "
                 "llava/eval/summarize_gpt_review.py, scripts/v1_5/eval/llavabench.sh")
    hub = HubSource("lmms-lab/llava-bench-in-the-wild", split="train",
                    moved_to="lmms-lab-encoder/llava-bench-in-the-wild")
    split = "all 60 questions on 24 images (conv 17, detail 15, complex 28 in LLaVA's review files)"
    row_count = 60
    doc_id_column = "question_id"
    doc_id_rule = "the `question_id` column"
    schema = {"question_id": "id", "question": "str", "gpt_answer": "str", "caption": "any", "category": "str",
              "image_id": "str?", "image": "image"}
    max_new_tokens = 1024  # Reference: model_vqa.py generate(max_new_tokens=1024)
    # Reference: protocol 1.3: at release model_vqa.py called the CLIP processor directly (centre crop, no pad).
    image_mode = "crop"
    metrics = ("relative_score",)
    primary_metric = "relative_score"
    scored_locally = False
    judge = JudgeProtocol(messages=review_request, parse=parse_review, aggregate=aggregate_reviews,
                          model=JUDGE_MODEL, max_tokens=JUDGE_MAX_TOKENS,
                          temperatures=(JUDGE_TEMPERATURE,) * REVIEW_ATTEMPTS, released=RELEASED)

    def prompt(self, doc: dict) -> str:
        # Reference: model_vqa.py: the question file's `text`, no instruction suffix (paper Table 9: none).
        return doc["question"]

    def gold_text(self, doc: dict) -> str:
        return doc["gpt_answer"]

    def review_messages(self, doc: dict, answer: str) -> list[dict]:
        return review_messages(doc, answer)

    def summarize_reviews(self, docs: list[dict], reviews: dict, drop_unparsed: bool = False) -> dict:
        """Summary from raw review texts keyed by doc id (docs without a review are left out)."""
        by_category: dict[str, list] = {}
        for index, doc in enumerate(docs):
            text = reviews.get(self.doc_id(doc, index))
            if text is not None:
                by_category.setdefault(doc["category"], []).append(parse_review_scores(text))
        return summarize(by_category, drop_unparsed)

    # ---- data -----------------------------------------------------------------------------------
    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """Three questions per scene (conv, detail, complex) whose reference answers follow from the caption."""
        from synthetic import color_qa, count_qa, first_qa, make_scene, shape_qa

        rng = random.Random(f"llava_bench-{seed}")
        docs = []
        for i in range(n):
            scene = make_scene(seed * 100_003 + i // 3)
            category = CATEGORIES[i % 3]
            if category == "conv":
                qa = first_qa((shape_qa, color_qa, count_qa), scene, rng)
                question, answer = qa.question, f"The answer is {qa.answer}. {scene.caption()}"
            elif category == "detail":
                question, answer = "Describe this photo in detail.", scene.caption()
            else:
                question = "List the shapes in the image from left to right."
                shapes = sorted(scene.shapes, key=lambda s: s.cx)
                answer = "From left to right: " + ", ".join(f"a {s.color} {s.kind}" for s in shapes) + "."
            docs.append({"question_id": seed * 1_000_000 + i, "question": question, "gpt_answer": answer,
                         "caption": scene.caption(), "category": category, "image_id": f"synthetic_{scene.seed}",
                         "image": {"bytes": scene.png_bytes(), "path": None}})
        return docs

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows from `llava-bench-in-the-wild/` (the HF repo liuhaotian/llava-bench-in-the-wild):
        questions.jsonl, context.jsonl (caption per image) and answers_gpt4.jsonl, images under images/.
        Reference: eval_gpt_review_bench.py pairs questions and GPT-4 answers by line order and finds the
        context by image name; here a line whose question ids disagree is an error instead of a silent mispair."""
        root = Path(root)
        bench = root / "llava-bench-in-the-wild" if (root / "llava-bench-in-the-wild").is_dir() else root
        questions, contexts, answers = (read_jsonl(bench / name, "LLaVA-Bench", fields) for name, fields in (
            ("questions.jsonl", {"question_id": (str, int), "image": str, "text": str, "category": str}),
            ("context.jsonl", {"image": str, "caption": (str, list)}),
            ("answers_gpt4.jsonl", {"question_id": (str, int), "text": str})))
        if len(answers) != len(questions):
            raise TaskError(f"{bench}: {len(questions)} questions but {len(answers)} GPT-4 answers")
        captions = {c["image"]: c["caption"] for _, c in contexts}
        rows = []
        for (_, q), (number, a) in zip(questions, answers, strict=True):
            if a["question_id"] != q["question_id"]:
                raise TaskError(f"{bench / 'answers_gpt4.jsonl'}:{number}: question_id {a['question_id']!r}, "
                                f"questions.jsonl has {q['question_id']!r}")
            if q["image"] not in captions:
                raise TaskError(f"{bench / 'context.jsonl'}: no caption for image {q['image']!r}")
            rows.append({"question_id": q["question_id"], "question": q["text"], "gpt_answer": a["text"],
                         "caption": captions[q["image"]], "category": q["category"],
                         "image_id": Path(q["image"]).stem,
                         "image": str(bench.relative_to(root) / "images" / q["image"])})
        return rows

