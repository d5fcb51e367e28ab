"""EvalAI answer normalisation and VQA accuracy, exactly as LLaVA's `m4c_evaluator.py` computes them.

`normalize_answer` is `EvalAIAnswerProcessor.__call__` (used on predictions by the VQAv2 and VizWiz upload
converters, and on predictions and ground truth by TextVQA); `answer_scores` / `vqa_accuracy` are
`TextVQAAccuracyEvaluator` (leave-one-annotator-out soft accuracy), TextVQA's scorer only: VQAv2 and VizWiz are
scored by their servers' evaluators (`tasks.official_vqa_eval`). Quirks are kept, see the comments.
Reference: haotian-liu/LLaVA `llava/eval/m4c_evaluator.py` (from mmf/pythia `processors.py`); protocol 3.13.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Reference: m4c_evaluator.py EvalAIAnswerProcessor.CONTRACTIONS (the standard VQA table). Entries that can
# never match are kept (keys with capitals: the text is lower-cased first; keys with "'s": that is split off
# first), and so is the inverted `somebody'd -> somebodyd` entry.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
# Reference: m4c_evaluator.py NUMBER_MAP ("none" counts as 0) and ARTICLES.
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
# Reference: m4c_evaluator.py PUNCTUATIONS, in its order (the order matters only in principle: each mark is
# decided on the text as it was before the pass).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!")
# Reference: m4c_evaluator.py PERIOD_STRIP. `(?!<=\d)` was meant as a look-behind but is a look-ahead for the
# two characters "<=" followed by a digit, which never holds in front of a ".", so every period NOT followed by
# a digit goes ("3.5" stays, "3." and "a.m." lose theirs).
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
# The original passes re.UNICODE (= 32) as the third positional argument of `sub`, which is `count`: at most
# the first 32 such periods are deleted.
PERIOD_LIMIT = int(re.UNICODE)
# Reference: m4c_evaluator.py COMMA_STRIP (digit, commas, digit). Searched on text whose commas the first step
# already deleted, so in `normalize_answer` it never matches.
_DIGIT_COMMA_DIGIT = re.compile(r"(?<=\d)(\,)+(?=\d)")


def _tokenize(text: str) -> str:
    """Reference: `word_tokenize`: lower-case, delete ',' and '?', split off "'s" ("it's" -> "it 's"), strip."""
    return text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()


def process_punctuation(text: str, digit_comma: re.Pattern = _DIGIT_COMMA_DIGIT) -> str:
    """Reference: `process_punctuation`. A mark is deleted when the ORIGINAL text has it next to a space (on
    either side) or has a `digit_comma` match anywhere; otherwise it becomes a space. Then periods go.
    (`tasks.official_vqa_eval` passes vqaEval.py's own digit-comma rule.)"""
    out = text
    has_digit_comma = digit_comma.search(text) is not None
    for mark in PUNCTUATION:
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=PERIOD_LIMIT)


def process_digit_article(text: str, contractions: dict[str, str] = CONTRACTIONS) -> str:
    """Reference: `process_digit_article`: split on whitespace, number words -> digits, drop articles, then
    `contractions`, joined by single spaces. (The original's `setdefault` grows NUMBER_MAP with every word it
    sees, mapped to itself; that changes no result.)"""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(contractions.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """Reference: `EvalAIAnswerProcessor.__call__`: tokenize, newlines/tabs -> spaces and strip, punctuation
    and periods, then digits/articles/contractions. "Two dogs." -> "2 dogs"; "it's a CAT!" -> "it 's cat"."""
    text = _tokenize(text)
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def answer_scores(gt_answers: Iterable[str]) -> dict[str, float]:
    """Reference: `TextVQAAccuracyEvaluator._compute_answer_scores`: for each distinct normalised answer, the
    mean over the annotators of min(1, matches among the OTHER annotators / 3). With 10 answers, an answer given
    by k annotators scores 0.3 (k=1), 0.6 (2), 0.9 (3) and 1.0 (k >= 4). The original asserts exactly 10
    answers; any number >= 1 is accepted here (the same formula over n leave-one-out subsets)."""
    answers = [normalize_answer(a) for a in gt_answers]
    scores = {}
    for candidate in dict.fromkeys(answers):
        accs = []
        for left_out in range(len(answers)):
            matches = sum(1 for i, a in enumerate(answers) if i != left_out and a == candidate)
            accs.append(min(1, float(matches) / 3))
        scores[candidate] = sum(accs) / len(accs)
    return scores


def vqa_accuracy(prediction: str, gt_answers: Iterable[str]) -> float:
    """Reference: `TextVQAAccuracyEvaluator.eval_pred_list` for one question: the normalised prediction's
    score, 0.0 when no annotator gave it."""
    return answer_scores(gt_answers).get(normalize_answer(prediction), 0.0)


def best_answer(gt_answers: list[str]) -> str | None:
    """The raw ground-truth answer whose normalised form scores highest (first one on ties): what a perfect
    model would say. None without answers."""
    scores = answer_scores(gt_answers)
    if not scores:
        return None
    return max(gt_answers, key=lambda a: scores[normalize_answer(a)])
