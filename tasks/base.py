"""What every benchmark module provides: its data contract (hub source, row schema, doc-id rule), the
request for a row (prompt bytes, images, token cap, preprocessing), answer parsing, per-item scores,
aggregation, the chance level (a trivial answerer's score), synthetic rows and, where a server scores the
split, a submission file; and the readers of the original LLaVA eval files (JSON, JSON lines), which refuse
a bad file with one error naming file and line.

Tasks build requests and score text; they never import torch or the model.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llava_types import IMAGE_PLACEHOLDER as IMAGE
from llava_types import USER, GenerationSettings, Message, Request, UserError

from .judging import JudgeProtocol


class TaskError(UserError, ValueError):
    """Bad task input (schema, predictions, names); the message names the offending column, id or file."""


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face dataset: id, revision, config and split. `moved_to` is the id the dataset moved to
    (lmms-lab -> lmms-lab-encoder on 2026-07-30); the loader tries it when the first id is gone."""

    path: str
    split: str
    config: str | None = None
    revision: str = "main"
    moved_to: str | None = None

    def __str__(self) -> str:
        cfg = f"/{self.config}" if self.config else ""
        return f"{self.path}{cfg}@{self.revision}:{self.split}"


@dataclass
class Item:
    """One scored row: its id, the raw prediction (None when missing), the parsed answer and its score."""

    doc_id: Any
    prediction: str | None
    parsed: Any
    score: float | None
    extra: dict = field(default_factory=dict)


class Task:
    """Base of the benchmark modules. Class attributes declare the contract; methods implement it."""

    name: ClassVar[str] = ""
    # Bump `version` when the request changes (prompt, images, token cap): stored answers are then refused.
    # Bump `scoring_version` when only parsing, scoring or aggregation changes: the answers stay and are rescored.
    version: ClassVar[int] = 1
    scoring_version: ClassVar[int] = 1
    title: ClassVar[str] = ""
    reference: ClassVar[str] = ""  # the original LLaVA files whose behaviour this task reproduces
    hub: ClassVar[HubSource | None] = None
    split: ClassVar[str] = ""  # the paper's split, in words
    row_count: ClassVar[int | None] = None  # rows of the paper's split (None: not fixed)
    # (column, kept values): rows whose value is not listed are dropped at load, before generation.
    keep_rows: ClassVar[tuple[str, tuple] | None] = None
    doc_id_column: ClassVar[str | None] = None  # None: the row index is the doc id
    doc_id_rule: ClassVar[str] = ""
    # column -> type: str, int, float, bool, id (str or int), image, images, list[str], any; "?" suffix = optional
    schema: ClassVar[dict[str, str]] = {}
    max_new_tokens: ClassVar[int] = 128
    image_mode: ClassVar[str | None] = None  # None: the checkpoint's own mode
    metrics: ClassVar[tuple[str, ...]] = ()
    primary_metric: ClassVar[str] = ""
    scored_locally: ClassVar[bool] = True  # False: a server (or a judge) scores this split
    judge: ClassVar[JudgeProtocol | None] = None  # how a judge grades the answers (tasks.judging); None: no judge

    @property
    def needs_judge(self) -> bool:
        return self.judge is not None

    # ---- rows -> requests -------------------------------------------------------------------------
    def doc_id(self, doc: dict, index: int):
        return index if self.doc_id_column is None else doc[self.doc_id_column]

    def prompt(self, doc: dict) -> str:
        """The user text after `<image>\\n`: question block plus the benchmark's format instruction."""
        raise NotImplementedError

    def image_values(self, doc: dict) -> list:
        """Raw image values of the row (bytes, path, PIL, {'bytes','path'}); [] for a text-only row."""
        value = doc.get("image")
        return [] if value is None else [value]

    def request(self, doc: dict, index: int, images: tuple = ()) -> Request:
        """The request for a row; `images` are the row's images after resolution by the harness."""
        text = self.prompt(doc)
        if images:
            text = IMAGE + "\n" + text
        return Request(self.doc_id(doc, index), (Message(USER, text),), tuple(images),
                       GenerationSettings(max_new_tokens=self.max_new_tokens), self.image_mode)

    def scores_locally(self, docs: list[dict]) -> bool:
        """Whether these rows are scored here (else a server or a judge scores the split); by default the
        task's `scored_locally`. A split whose rows may or may not carry their answers decides per rows."""
        return self.scored_locally

    # ---- predictions -> metrics -------------------------------------------------------------------
    def parse(self, text: str, doc: dict) -> Any:
        return text

    def score_item(self, parsed: Any, doc: dict) -> float | None:
        raise NotImplementedError

    def aggregate(self, docs: list[dict], items: list[Item]) -> dict:
        """Metrics from the scored items (in doc order). Default: mean item score x 100 as `accuracy`."""
        scores = [it.score for it in items if it.score is not None]
        return {"accuracy": 100.0 * sum(scores) / len(scores) if scores else math.nan}

    # ---- statistics -------------------------------------------------------------------------------
    bootstrap_unit_name: ClassVar[str] = "doc"

    def bootstrap_unit(self, doc: dict, index: int):
        """Key of the group of rows the bootstrap resamples together (llava_eval.stats); the default, one
        row. Tasks whose metric scores groups of rows (circular copies, question pairs) return the group."""
        return index

    def bootstrap_stratum(self, doc: dict):
        """Stratum the bootstrap draws this row's unit within; None (one stratum) unless the metric
        combines per-split scores."""
        return None

    def score(self, docs: list[dict], predictions: dict) -> tuple[dict, list[Item]]:
        """Score raw predictions keyed by doc id. A missing prediction is scored like an empty answer
        (as the original scripts do when a line is absent) and counted in `n_missing`. A judged task
        has no local number: it reports coverage and `status: needs_judge`."""
        if self.needs_judge:
            items = [Item(self.doc_id(d, i), predictions.get(self.doc_id(d, i)), None, None)
                     for i, d in enumerate(docs)]
            missing = sum(it.prediction is None for it in items)
            return {"status": "needs_judge", "n_docs": len(docs), "n_missing": missing,
                    "n_answered": len(docs) - missing}, items
        items = []
        for index, doc in enumerate(docs):
            doc_id = self.doc_id(doc, index)
            text = predictions.get(doc_id)
            parsed = self.parse("" if text is None else text, doc)
            items.append(Item(doc_id, text, parsed, self.score_item(parsed, doc)))
        metrics = self.aggregate(docs, items)
        metrics.update(n_docs=len(docs), n_missing=sum(it.prediction is None for it in items))
        return metrics, items

    # ---- chance ---------------------------------------------------------------------------------------
    def chance(self, docs: list[dict]) -> dict | None:
        """The primary metric a trivial answerer gets on these rows, as {"value", "answerer"}: the level a
        score must clear to show that the model learned anything. None: the task declares no trivial answerer."""
        return None

    def constant_chance(self, docs: list[dict], answers) -> dict | None:
        """The best primary metric among constant answerers, each giving one of `answers` to every row, scored
        by this task's own parser, scorer and aggregate; None when no answer gets a number (rows without gold)."""
        best = None
        for answer in answers:
            metrics, _ = self.score(docs, {self.doc_id(doc, i): answer for i, doc in enumerate(docs)})
            value = metrics.get(self.primary_metric)
            if isinstance(value, int | float) and not math.isnan(value) and (best is None or value > best["value"]):
                best = {"value": value, "answerer": f'always "{answer}"'}
        return best

    def majority_chance(self, docs: list[dict]) -> dict | None:
        """The constant answerer that gives the most common gold answer of these rows (the "prior" baseline of
        VQA-style benchmarks)."""
        golds = Counter(self.gold_text(doc) for doc in docs)
        if not golds:
            return None
        found = self.constant_chance(docs, [golds.most_common(1)[0][0]])
        if found is None:
            return None
        return found | {"answerer": found["answerer"] + " (the most common answer)"}

    def random_choice_items(self, docs: list[dict], choices) -> list[Item]:
        """Items whose score is the expected score of naming one of `choices(doc)` uniformly at random, each
        choice parsed and scored by this task (None where the row has no gold)."""
        items = []
        for index, doc in enumerate(docs):
            scores = [self.score_item(self.parse(choice, doc), doc) for choice in choices(doc)]
            known = bool(scores) and None not in scores
            items.append(Item(self.doc_id(doc, index), None, None, sum(scores) / len(scores) if known else None))
        return items

    def random_choice_chance(self, docs: list[dict], choices) -> dict | None:
        """The expected primary metric of an answerer that names one of the row's options uniformly at random:
        the expected item scores aggregated as the task aggregates, exact where the metric averages item scores."""
        value = self.aggregate(docs, self.random_choice_items(docs, choices)).get(self.primary_metric)
        if not isinstance(value, int | float) or math.isnan(value):
            return None
        return {"value": value, "answerer": "a uniformly random option letter (expected score)"}

    # ---- data ---------------------------------------------------------------------------------------
    def synthetic_docs(self, n: int, seed: int = 0) -> list[dict]:
        """Rows of this task's schema drawn from the synthetic shapes world, with exact answers."""
        raise NotImplementedError

    def prepare_hub(self, rows, load_config):
        """Hub rows -> rows this task can use; `load_config(config, split)` loads another config of the
        same dataset and revision with images undecoded (GQA joins its images this way). Default: as is."""
        return rows

    def llava_layout_docs(self, root) -> list[dict]:
        """Rows read from the original LLaVA `playground/data/eval` layout under `root`."""
        raise TaskError(f"task {self.name} cannot read the original LLaVA eval layout")

    def match_answer_lines(self, lines: list[dict], docs) -> dict | None:
        """doc id -> text for the lines of an original LLaVA answer file whose `question_id` is not this
        task's doc id (e.g. repeated per image); None: `llava-eval score` matches lines by question_id."""
        return None

    def gold_text(self, doc: dict) -> str:
        """What a perfect model would answer for this row (tests feed it back through the scorer)."""
        raise NotImplementedError

    def submission(self, docs: list[dict], predictions: dict, extra: dict | None = None) -> tuple[str, bytes]:
        """(file suffix, content) of the file an evaluation server accepts for this split. `extra` carries
        optional inputs some servers need (e.g. the full VQAv2 test2015 question list)."""
        raise TaskError(f"task {self.name} has no submission format")

    def prompt_example(self) -> str:
        return self.prompt(self.synthetic_docs(1)[0])


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


# ---- reading the original files ------------------------------------------------------------------------
def read_json(path: Path, what: str | None = None) -> Any:
    """The content of a JSON file; a missing, non-UTF-8 or malformed file is a TaskError naming it (and the
    line), after `what` (a task name) when given."""
    return _parse(read_text(path, what), _where(path, what))


def iter_jsonl(path: Path, what: str | None = None, fields: dict | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON-lines file, streamed; each line must be UTF-8
    and a JSON object carrying `fields` (name -> type or tuple of types, see `require`). Errors name the file
    and line, after `what` (a task name) when given."""
    where = _where(path, what)
    if not path.is_file():
        raise TaskError(f"{where} not found")
    with _open(path, where) as file:
        for number, raw in enumerate(file, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TaskError(f"{where}:{number}: not UTF-8 text (byte {exc.start} of the line)") from None
            if line.strip():
                yield number, require(_parse(line, f"{where}:{number}"), fields or {}, f"{where}:{number}")


def read_jsonl(path: Path, what: str, fields: dict | None = None) -> list[tuple[int, dict]]:
    """All of `iter_jsonl`: the lines of an original question or label file."""
    return list(iter_jsonl(path, what, fields))


def require(obj, fields: dict, where: str) -> dict:
    """`obj` itself when it is a JSON object whose `fields` are present with the given types (a bool is not
    taken for an int); otherwise a TaskError starting with `where`."""
    if not isinstance(obj, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(obj).__name__} {shown(obj)}")
    for key, kinds in fields.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if key not in obj:
            raise TaskError(f"{where}: missing {key!r}")
        value = obj[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and int in kinds and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise TaskError(f"{where}: {key!r} should be {names} but is {type(value).__name__} {shown(value)}")
    return obj


def read_text(path: Path, what: str | None = None) -> str:
    """A UTF-8 text file; a missing or undecodable one is a TaskError naming it (and the line)."""
    if not path.is_file():
        raise TaskError(f"{_where(path, what)} not found")
    with _open(path, _where(path, what)) as file:
        data = file.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TaskError(f"{_where(path, what)}:{line}: not UTF-8 text (byte {exc.start})") from None


def shown(value, width: int = 40) -> str:
    """A value as an error message quotes it: its repr, cut to `width` characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _where(path: Path, what: str | None) -> str:
    return f"{what}: {path}" if what else str(path)


def _open(path: Path, where: str):
    try:
        return path.open("rb")
    except OSError as exc:  # permissions, a broken link, ...
        raise TaskError(f"{where}: cannot read ({exc.strerror or exc})") from None


def _parse(text: str, where: str):
    """JSON text -> value; the error names `where` (with the line of a multi-line document)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = f":{exc.lineno}" if "\n" in text.strip() else ""
        raise TaskError(f"{where}{line}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise TaskError(f"{where}: not valid JSON (nested too deeply)") from None
