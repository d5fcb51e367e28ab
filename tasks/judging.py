"""How a judged benchmark is graded, declared by the task itself (`judge = JudgeProtocol(...)` on its class):
the request for each (doc, answer, attempt), the judge's settings and retry schedule, how a reply is parsed
and how the verdicts become metrics. `llava_eval.judge` runs any such declaration and knows no task by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
    """

    messages: Callable[[dict, str, int], list[dict]]
    parse: Callable[[str], Any]
    aggregate: Callable[[list[dict], list[list]], dict]
    model: str
    max_tokens: int
    temperatures: tuple[float, ...]

    def __post_init__(self):
        if not self.temperatures:
            raise ValueError("a judge protocol needs at least one attempt (one temperature)")

    @property
    def attempts(self) -> int:
        return len(self.temperatures)
