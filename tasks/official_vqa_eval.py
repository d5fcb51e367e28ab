"""The evaluators behind the EvalAI servers, for scoring the val splits the way the test splits are scored.

LLaVA uploads the EvalAI-normalised prediction (`tasks.evalai.normalize_answer`); the VQAv2 server scores it
with GT-Vision-Lab's `vqaEval.py` (`vqav2_accuracy`), the VizWiz server with the VizWiz-VQA API's `vqaEval.py`
(`vizwiz_accuracy`). Neither normalises the annotators' answers the way LLaVA's TextVQA scorer (m4c) does.
Reference: GT-Vision-Lab/VQA `PythonEvaluationTools/vqaEvaluation/vqaEval.py` (a013f00, 2021); the VizWiz-VQA
API `vqaEval.py` (vizwiz.org, VQA task "Annotations and APIs").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .evalai import CONTRACTIONS, process_digit_article, process_punctuation

# Reference: vqaEval.py `commaStrip` "(\d)(\,)(\d)": one comma between two digits (m4c's rule takes a run of
# commas). Both evaluators search the text for it before deciding how to treat every punctuation mark.
DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# Reference: the VizWiz-VQA API keeps the contractions table of vqaEval.py before GT-Vision-Lab/VQA 458a8b2
# (2016, "fixed the apostrophe symbol issue"): every apostrophe is the typographic one (U+2019) except in the
# eight values and two keys below, which have the ASCII apostrophe in both versions.
_ASCII_VALUES = frozenset({"aint", "arent", "cant", "couldve", "couldnt", "weve", "wheres", "whove"})
_ASCII_KEYS = frozenset({"couldn'tve", "hadn'tve"})


def _curly(text: str) -> str:
    return text.replace("'", "\u2019")


VIZWIZ_CONTRACTIONS = {
    (key if key in _ASCII_KEYS else _curly(key)): (value if key in _ASCII_VALUES else _curly(value))
    for key, value in CONTRACTIONS.items()
}


def strip_whitespace(text: str) -> str:
    """Reference: both evaluators' first step on the prediction (and vqaEval.py's on every annotator answer):
    newlines and tabs become spaces, then `str.strip()`."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_normalize(text: str, contractions: dict[str, str] = CONTRACTIONS) -> str:
    """Reference: vqaEval.py `processPunctuation` then `processDigitArticle`. Unlike EvalAI's processor there is
    no first step that lower-cases and deletes ',' and '?' and splits off "'s", so "dog's" stays "dog's" and a
    comma between digits ("1,000") makes every punctuation mark vanish instead of becoming a space."""
    return process_digit_article(process_punctuation(text, DIGIT_COMMA_DIGIT), contractions)


def _soft_accuracy(prediction: str, answers: list[str], keys: list) -> float:
    """Reference: the accuracy loop of both evaluators: for each annotator i, min(1, matches / 3) among the
    answers of the annotators whose key differs from i's, then the plain mean in annotator order."""
    accuracies = []
    for key in keys:
        matches = sum(1 for other, answer in zip(keys, answers, strict=True) if other != key and answer == prediction)
        accuracies.append(min(1.0, matches / 3))
    return sum(accuracies) / len(accuracies) if accuracies else 0.0


def vqav2_accuracy(prediction: str, answers: Sequence[str | dict]) -> float:
    """Reference: vqaEval.py `evaluate` for one question. Every answer and the prediction are whitespace-stripped;
    only when the stripped answers are not all identical do the answers AND the prediction go through
    `vqa_normalize`. So ten "Yes" never match "yes", ten "t-shirt" never match "t shirt" and ten "two" never
    match "2"; one dissenting annotator switches normalisation on for the whole question.
    `answers`: VQAv2 annotation dicts ({"answer", "answer_confidence", "answer_id"}) or plain strings. The
    original leaves out, with each annotator, every annotator whose whole dict equals its own (`item !=
    gtAnsDatum`); VQAv2's distinct `answer_id`s make that exactly one. Plain strings count as distinct."""
    texts = [strip_whitespace(a["answer"] if isinstance(a, dict) else a) for a in answers]
    prediction = strip_whitespace(prediction)
    if len(set(texts)) > 1:
        texts = [vqa_normalize(text) for text in texts]
        prediction = vqa_normalize(prediction)
    keys = [{**a, "answer": text} if isinstance(a, dict) else index
            for index, (a, text) in enumerate(zip(answers, texts, strict=True))]
    return _soft_accuracy(prediction, texts, keys)


def vizwiz_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Reference: the VizWiz-VQA API's `evaluate` for one question. The prediction is always whitespace-stripped
    and normalised (`vqa_normalize` with the VizWiz contractions table); the annotators' answers are compared
    exactly as stored, never normalised, so an answer written "Yes" or "t-shirt" in the annotations can never be
    matched. Each annotator is left out by position."""
    prediction = vqa_normalize(strip_whitespace(prediction), VIZWIZ_CONTRACTIONS)
    return _soft_accuracy(prediction, list(answers), list(range(len(answers))))
