"""How a judged benchmark is graded, declared by the task itself (`judge = JudgeProtocol(...)` on its class):
the request for each (doc, answer, attempt), the judge's settings and retry schedule, how a reply is parsed
and how the verdicts become metrics, and (`ReleasedVerdicts`) how the original judge's published verdicts are
read, so that a substitute judge can be calibrated against them. `llava_eval.judge` runs any such declaration
and knows no task by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReleasedVerdicts:
    """The verdicts the protocol's own judge published for one model's answers (the reference of
    `llava-eval judge calibrate`), and how to read and compare them.

    verdicts(paths) -> {key: [verdict per judging run]}: each verdict in `parse`'s form, or None where the
        original judge's reply could not be read (that answer is then left out of the comparison).
    answers(path) -> {key: answer text}: the released answers those verdicts graded.
    key(doc id) -> the key of a doc in both.
    item_score(verdict) -> the per-answer number whose correlation between the judges is reported.
    groups(doc) -> the categories a doc counts in, for the per-category offsets.
    model: the judge that produced the released verdicts.
    """

    verdicts: Callable[[list[Path]], dict[str, list]]
    answers: Callable[[Path], dict[str, str]]
    key: Callable[[Any], str]
    item_score: Callable[[Any], float]
    groups: Callable[[dict], tuple[str, ...]]
    model: str


@dataclass(frozen=True)
class JudgeProtocol:
    """Everything the judge needs to grade one task's answers.

    messages(doc, answer, attempt) -> the chat messages ({"role", "content"} dicts) of one judge request;
        `attempt` counts from 0 and grows after an unparsable reply.
    parse(reply text) -> the verdict (a JSON value, stored in <task>/judge.jsonl), or None when the reply
        cannot be read: the judge then asks again, up to one attempt per entry of `temperatures`.
    aggregate(docs, verdicts) -> the metrics, from the docs every judging run has a verdict for (in doc order)
        and their verdicts, verdicts[i][r] = the parsed verdict of docs[i] in run r; the task's
        `primary_metric` must be among them.
    model: the judge model used when the judge configuration names none for the task.
    max_tokens: the judge's completion cap.
    temperatures: the temperature of each attempt, in order (the retry schedule); its length is the number
        of attempts.
    released: how the original judge's published verdicts are read (None: the task cannot be calibrated).
    """

    messages: Callable[[dict, str, int], list[dict]]
    parse: Callable[[str], Any]
    aggregate: Callable[[list[dict], list[list]], dict]
    model: str
    max_tokens: int
    temperatures: tuple[float, ...]
    released: ReleasedVerdicts | None = None

    def __post_init__(self):
        if not self.temperatures:
            raise ValueError("a judge protocol needs at least one attempt (one temperature)")

    @property
    def attempts(self) -> int:
        return len(self.temperatures)
