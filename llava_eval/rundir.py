"""One run directory: where each of its files lives, how it is written and how it is read back. No other
module spells a run file's name (a test checks it).

    <run>/config.json               settings, versions, fingerprints and command line of the first invocation;
                                    `resumes` and `rescores` list the later ones
    <run>/.lock                     held while a run, a judge or a rescore writes here
    <run>/results.json              the metrics entry of every finished task
    <run>/judge-cache.sqlite        the judge's completions (the default cache)
    <run>/<task>/predictions.jsonl  one line per doc (`predictions.rank<r>.jsonl` per rank of a data-parallel run)
    <run>/<task>/items.jsonl        per doc: prediction, parsed answer, gold and score
    <run>/<task>/metrics.json       the task's metrics entry, with the data options that produced it
    <run>/<task>/judge.jsonl        the judge's verdicts
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path

from tasks.base import Task, TaskError
from tasks.registry import get_task

from .data import Docs, load_docs
from .runstate import RunStateError, load_prediction_rows

CONFIG, RESULTS, LOCK, JUDGE_CACHE = "config.json", "results.json", ".lock", "judge-cache.sqlite"
AGREEMENT = "agreement.json"  # written by `llava-eval agree` into the second run
PREDICTIONS, ITEMS, METRICS, VERDICTS = "predictions.jsonl", "items.jsonl", "metrics.json", "judge.jsonl"
DATA_OPTIONS = ("data", "data_root", "limit")  # the options that decide which rows a task has
NO_SCOREABLE_ROWS = "no_scoreable_rows"  # metrics status of a task none of whose docs could be answered
INCOMPLETE = "incomplete"  # metrics status of a task with more unanswered docs than --allow-missing accepts


class RunDir:
    """The files of the run directory at `root`; reading never creates anything, writing creates what it needs."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    # ---- where the files are ----------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.root / CONFIG

    @property
    def results_file(self) -> Path:
        return self.root / RESULTS

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK

    @property
    def judge_cache(self) -> Path:
        return self.root / JUDGE_CACHE

    @property
    def agreement_file(self) -> Path:
        return self.root / AGREEMENT

    def answered_tasks(self) -> list[str]:
        """The tasks with an answer file, finished or not."""
        if not self.root.is_dir():
            raise TaskError(f"{self.root} is not a run directory")
        return sorted(p.parent.name for p in self.root.glob(f"*/{PREDICTIONS}"))

    def task_dir(self, name: str) -> Path:
        return self.root / name

    def predictions(self, name: str, rank: int | None = None) -> Path:
        """The task's answer file, or rank `rank`'s own file in a data-parallel run."""
        return self.root / name / (PREDICTIONS if rank is None else f"predictions.rank{rank}.jsonl")

    def rank_predictions(self, name: str) -> list[Path]:
        """The rank files a data-parallel run left for the task (merged into its answer file, then deleted)."""
        return sorted(self.task_dir(name).glob("predictions.rank*.jsonl"))

    def items(self, name: str) -> Path:
        return self.root / name / ITEMS

    def metrics(self, name: str) -> Path:
        return self.root / name / METRICS

    def verdicts(self, name: str) -> Path:
        return self.root / name / VERDICTS

    # ---- the run as a whole -----------------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.config_file.is_file()

    def lock(self) -> RunLock:
        return RunLock(self.root)

    def read_config(self) -> dict:
        """The run's config.json (an error when the folder is not a run directory)."""
        if not self.is_run():
            raise TaskError(f"{self.root} is not a run directory (no {CONFIG})")
        return read_json(self.config_file)

    def record_invocation(self, fresh: dict, resume_keys: tuple[str, ...]) -> bool:
        """First call: write `fresh` as the config. Resume: keep the first record, add the new tasks and a
        `resumes` entry with `fresh`'s `resume_keys`. Returns whether this was the first call."""
        if not self.is_run():
            write_json(self.config_file, fresh)
            return True
        config = read_json(self.config_file)
        config["tasks"] = {**config.get("tasks", {}), **fresh["tasks"]}
        config.setdefault("resumes", []).append({k: fresh.get(k) for k in resume_keys})
        write_json(self.config_file, config)
        return False

    def record_rescore(self, record: dict) -> None:
        """Add a `rescores` entry (who rescored, with which scoring versions) to the config."""
        config = self.read_config()
        config.setdefault("rescores", []).append(record)
        write_json(self.config_file, config)

    def forget_invocation(self) -> None:
        """Remove the config of a first call that answered nothing: its options never ran."""
        self.config_file.unlink()

    def has_answers(self) -> bool:
        return any(f.stat().st_size for f in self.root.glob("*/predictions*.jsonl"))

    def results(self) -> dict:
        """Task name -> metrics entry of every finished task; empty before the first task finishes."""
        return read_json(self.results_file) if self.results_file.is_file() else {}

    def read_results(self) -> dict:
        """As `results`, but a folder where no task has finished is an error."""
        if not self.results_file.is_file():
            raise TaskError(f"{self.root} has no {RESULTS} (no task of it has finished)")
        return read_json(self.results_file)

    def finished_tasks(self) -> list[str]:
        return list(self.read_results())

    def data_sources(self) -> list[str]:
        """The data sources (`synthetic`, a hub id, a file, ...) the finished tasks were answered on, as each
        task's metrics record them, sorted."""
        return sorted({self.task_data_options(name)["data"] for name in self.finished_tasks()})

    # ---- one task -----------------------------------------------------------------------------------------
    def entry(self, name: str) -> dict | None:
        """The task's stored metrics entry; None before the task was first scored."""
        path = self.metrics(name)
        return read_json(path) if path.is_file() else None

    def record(self, name: str, entry: dict) -> dict:
        """Write the task's metrics entry and put it into results.json; returns every finished task's entry."""
        self.write_entry(name, entry)
        results = self.results()
        results[name] = entry
        write_json(self.results_file, results)
        return results

    def write_entry(self, name: str, entry: dict) -> None:
        self.task_dir(name).mkdir(parents=True, exist_ok=True)
        write_json(self.metrics(name), entry)

    def prediction_rows(self, name: str, repair: bool = False) -> dict:
        """doc id -> the task's last stored answer line for it (see runstate.load_prediction_rows)."""
        return load_prediction_rows(self.predictions(name), repair=repair)

    def answers(self, name: str) -> tuple[dict, dict]:
        """(doc id -> text, doc id -> image error) of the task's stored answers."""
        return read_predictions(self.predictions(name))

    def unanswered(self, name: str) -> dict:
        """doc id -> reason, for the docs whose last line says the model gave no answer (a served request that
        failed after its retries); the next run asks for them again."""
        return {doc_id: row["missing"] for doc_id, row in self.prediction_rows(name).items()
                if "missing" in row and "text" not in row}

    def appender(self, name: str, rank: int | None = None) -> Appender:
        """Appends answer lines to the task's file (or rank `rank`'s file)."""
        return Appender(self.predictions(name, rank))

    def verdict_appender(self, name: str) -> Appender:
        return Appender(self.verdicts(name))

    def read_verdicts(self, name: str) -> dict:
        """(doc id, judging run) -> the last verdict line written for it."""
        out = {}
        path = self.verdicts(name)
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash: that verdict is asked again (the cache answers it)
                out[(row["question_id"], row["run"])] = row
        return out

    def has_items(self, name: str) -> bool:
        return self.items(name).is_file()

    def write_items(self, name: str, task: Task, docs: list[dict], items: list) -> None:
        """The per-doc rows of a scoring, replacing the previous ones at once."""
        path = self.items(name)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for doc, item in zip(docs, items, strict=True):
                f.write(json.dumps({"question_id": item.doc_id, "prediction": item.prediction, "parsed": item.parsed,
                                    "gold": task.gold_text(doc), "score": item.score}, ensure_ascii=False,
                                   default=str) + "\n")
        os.replace(tmp, path)

    def drop_items(self, name: str) -> None:
        self.items(name).unlink(missing_ok=True)

    def read_items(self, name: str) -> list[dict]:
        path = self.items(name)
        if not path.is_file():
            raise TaskError(f"{path} not found (score the run first: llava-eval run into it again)")
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def task_data_options(self, name: str) -> dict:
        """The data options (data, data_root, limit) that produced a task's stored metrics and items: those its
        metrics.json records; for a task not scored yet (or by an older version), the run's first options."""
        options = (self.entry(name) or {}).get("options")
        if not isinstance(options, dict):
            options = self.read_config()  # its top level holds the first invocation's options
        return {"data": options.get("data") or "synthetic", "data_root": options.get("data_root"),
                "limit": options.get("limit")}

    def task_docs(self, name: str, data: str | None = None) -> tuple[Task, Docs]:
        """A task of the run and its rows (images undecoded), loaded with the data options that produced them
        (`data` replaces the recorded source, e.g. a local copy of the split)."""
        task = get_task(name)
        options = self.task_data_options(name)
        return task, load_docs(task, data or options["data"], data_root=options["data_root"], limit=options["limit"])

    def run_docs(self, name: str) -> tuple[Task, list[dict]]:
        """A task of the run and its rows without images: what scoring, judging and comparing read."""
        task, docs = self.task_docs(name)
        return task, list(docs.without_images(task))


# ---- files ------------------------------------------------------------------------------------------------
class RunLock:
    """An exclusive `flock` on the run directory's lock file: a second run (or judge, or rescore) into the same
    directory is refused while the first is alive. The kernel drops the lock when its holder dies, even by
    SIGKILL, so a killed run never leaves a stale lock behind."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = RunDir(run_dir).lock_file
        self.file = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a+")
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            self.file = None
            raise RunStateError(f"run directory {self.path.parent} is in use by {holder}; wait for it to finish "
                                "or choose another --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()
            self.file = None


class Appender:
    """Append JSON lines durably: each batch is flushed and fsynced before the next starts."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", encoding="utf-8")

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def read_predictions(path: Path) -> tuple[dict, dict]:
    """(doc id -> text, doc id -> error) from a predictions file; later lines win, a torn last line is
    ignored. Docs the model left unanswered (`missing` lines) are in neither."""
    texts, errors = {}, {}
    for doc_id, row in load_prediction_rows(path).items():
        if "error" in row:
            errors[doc_id] = row["error"]
        elif "text" in row:
            texts[doc_id] = row["text"]
    return texts, errors


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return str(obj)


def read_json(path: Path) -> dict:
    """A JSON object this package wrote; a damaged file is one error naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaskError(f"{path}: not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(value, dict):
        raise TaskError(f"{path}: expected a JSON object")
    return value
