"""Judge a run directory's judged tasks: those whose class declares a `judge` protocol (tasks.judging).

Per task, each answered doc is judged `runs` times. Every verdict is appended (flushed, fsynced) to
`<task>/judge.jsonl` the moment it arrives: raw reply, parsed verdict, attempts, tokens. A verdict that could
not be obtained (the request failed after its retries, or every reply was unparsable) is written as
missing, never as 0 or -1; a rerun asks again for the missing ones only, and the SQLite cache makes every
verdict already obtained free. The metrics record the judge model actually used, the protocol's own judge
model, the calibration of that judge the judge config names (if any), missing counts, token use and cost; a
task with missing verdicts gets no score unless their share is within `allow_missing`.
`rescore_judged` recomputes a task's metrics from its verdict file alone.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tasks.base import Task, TaskError
from tasks.registry import get_task, load_all

from ..rundir import NO_SCOREABLE_ROWS, Appender, RunDir
from .cache import VerdictCache
from .calibration import find_calibration
from .client import JudgeCallError, JudgeClient, LazyJudgeClient
from .config import JudgeConfig

# What judging adds to a task's metrics besides the verdict counts and the task's own numbers.
USAGE = ("fresh_calls", "cached", "prompt_tokens", "completion_tokens")
JUDGE_RECORD = (*USAGE, "judge_model", "judge_provider", "runs", "cost_usd", "judge_protocol_model",
                "judge_calibration")


class IncompleteJudging(TaskError):
    """Raised after judging when a task's missing verdicts exceed the allowed share (metrics are written)."""


def judged_tasks(names=None) -> list[str]:
    """The tasks among `names` (default: every registered task) that a judge grades, in order."""
    registered = load_all()
    wanted = registered if names is None else names
    return [n for n in wanted if n in registered and registered[n].judge is not None]


@dataclass
class Judging:
    """One task's judging: what every verdict request shares, and the running usage counts."""

    name: str
    task: Task
    model: str
    config: JudgeConfig
    client: LazyJudgeClient
    cache: VerdictCache
    writer: Appender
    usage: dict = field(default_factory=lambda: dict.fromkeys(USAGE, 0))
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards the usage counts and the verdict file

    def verdict(self, doc: dict, doc_id, answer: str, run: int) -> dict:
        """The verdict line for one answer in one judging run, written to the verdict file before it returns:
        the attempts of the task's protocol until a reply parses, or missing."""
        protocol = self.task.judge
        row = {"question_id": doc_id, "run": run, "model": self.model, "status": "missing", "attempts": 0}
        for attempt, temperature in enumerate(protocol.temperatures):
            row["attempts"] = attempt + 1
            try:
                text = self._reply(protocol.messages(doc, answer, attempt), temperature, run, attempt)
            except JudgeCallError as exc:
                row["reason"] = self.client.scrub(str(exc))
                break
            parsed = protocol.parse(text)
            row["raw"] = text
            if parsed is not None:
                row.update(status="ok", parsed=parsed)
                row.pop("reason", None)
                break
            row["reason"] = "unparsable reply"
        with self.lock:
            self.writer.write([row])
        return row

    def _reply(self, messages: list[dict], temperature: float, run: int, attempt: int) -> str:
        """The judge's reply: from the cache, or asked (and cached)."""
        max_tokens = self.task.judge.max_tokens
        key = VerdictCache.key(provider=self.config.provider, base_url=self.config.base_url, model=self.model,
                               messages=messages, temperature=temperature, max_tokens=max_tokens,
                               protocol=f"{self.name}:v{self.task.version}", run=run, attempt=attempt)
        hit = self.cache.get(key)
        if hit is not None:
            with self.lock:
                self.usage["cached"] += 1
            return hit[0]
        done = self.client.complete(messages, self.model, temperature, max_tokens)
        text = self.client.scrub(done.text)
        self.cache.put(key, text, done.prompt_tokens, done.completion_tokens)
        with self.lock:
            self.usage["fresh_calls"] += 1
            self.usage["prompt_tokens"] += done.prompt_tokens
            self.usage["completion_tokens"] += done.completion_tokens
        return text


def is_verdict(row: dict | None, model: str) -> bool:
    """Whether a stored verdict line holds a verdict of `model` (one that is missing is asked again)."""
    return row is not None and row.get("status") == "ok" and row.get("model") == model


def judge_all(judging: Judging, jobs: list[tuple]) -> dict:
    """(doc id, judging run) -> verdict line for each (doc, doc id, answer, run) of `jobs`, asked `concurrency`
    at a time; the verdict file is closed when they are done or one fails."""
    def judge_one(job):
        doc, doc_id, answer, run = job
        return (doc_id, run), judging.verdict(doc, doc_id, answer, run)

    try:
        with ThreadPoolExecutor(max_workers=judging.config.concurrency) as pool:
            return dict(pool.map(judge_one, jobs))
    finally:
        judging.writer.close()


def judged_task(name: str) -> Task:
    task = get_task(name)
    if task.judge is None:
        raise TaskError(f"{name} is not judged (judged tasks: {', '.join(judged_tasks())})")
    return task


def judge_task(run_dir: Path, name: str, config: JudgeConfig, client: LazyJudgeClient, cache: VerdictCache,
               allow_missing: float = 0.0, fresh: bool = False) -> dict:
    """Judge one task of a run; `fresh` asks again for every verdict (stored and cached ones included)."""
    judged_task(name)
    run = RunDir(run_dir)
    task, docs = run.run_docs(name)
    model = config.model_for(task)
    texts, _ = run.answers(name)
    stored = run.read_verdicts(name)
    ids = [task.doc_id(d, i) for i, d in enumerate(docs)]
    jobs = [(docs[i], doc_id, texts[doc_id], r) for i, doc_id in enumerate(ids) if doc_id in texts
            for r in range(config.runs) if fresh or not is_verdict(stored.get((doc_id, r)), model)]
    judging = Judging(name, task, model, config, client, cache, run.verdict_appender(name))
    stored.update(judge_all(judging, jobs))
    metrics = _metrics(name, task, docs, ids, texts, stored, config, model, allow_missing)
    metrics.update(judging.usage, judge_model=model, judge_provider=config.provider, runs=config.runs,
                   cost_usd=config.cost(model, judging.usage["prompt_tokens"], judging.usage["completion_tokens"]),
                   judge_protocol_model=task.judge.model)
    calibration = find_calibration(config.calibrations, name, model)
    if calibration is not None:
        metrics["judge_calibration"] = calibration
    _record(run, name, task, metrics)
    if metrics["status"] == "incomplete":
        raise IncompleteJudging(f"{name}: {metrics['n_missing']} of {metrics['n_expected']} verdicts missing "
                                f"(allowed share {allow_missing:g}); no score. Rerun `llava-eval judge` to fill them")
    return metrics


def _metrics(name, task, docs, ids, texts, stored, config, model, allow_missing) -> dict:
    """Verdict counts and status, then the task's own metrics (its protocol's `aggregate`) over the docs
    every run has a verdict for; none when the missing share exceeds `allow_missing`."""
    runs = config.runs
    verdicts = {k: v for k, v in stored.items() if v.get("status") == "ok" and v.get("model") == model and k[1] < runs}
    n_expected = len(docs) * runs
    n_missing = n_expected - len(verdicts)
    out = {"n_docs": len(docs), "n_unanswered": sum(d not in texts for d in ids), "n_expected": n_expected,
           "n_verdicts": len(verdicts), "n_missing": n_missing}
    if n_missing and n_missing / max(1, n_expected) > allow_missing:
        out["status"] = "incomplete"
        return out
    complete = [i for i, d in enumerate(ids) if all((d, r) in verdicts for r in range(runs))]
    out["status"] = "complete" if not n_missing else "scored_with_missing"
    out["n_scored_docs"] = len(complete)
    if not complete:
        out["status"] = "incomplete"
        return out
    parsed = [[verdicts[(ids[i], r)]["parsed"] for r in range(runs)] for i in complete]
    out.update(task.judge.aggregate([docs[i] for i in complete], parsed))
    return out


def rescore_judged(run_dir: Path, name: str) -> dict:
    """Recompute a judged task's metrics from its verdict file alone (no judge is asked), with the judge model
    and runs its metrics record, and record them as judging does. The missing share accepted is the one the
    recorded judging accepted; the recorded usage and cost are kept (they paid for these verdicts). The caller
    holds the run directory's lock (`llava-eval rescore` does)."""
    run = RunDir(run_dir)
    run.read_config()  # not a run directory: one error line
    judged_task(name)
    recorded = _recorded_judging(run, name)
    allow_missing = 0.0
    if recorded.get("status") == "scored_with_missing":
        allow_missing = recorded["n_missing"] / max(1, recorded["n_expected"])
    task, docs = run.run_docs(name)
    texts, _ = run.answers(name)
    stored = run.read_verdicts(name)
    ids = [task.doc_id(d, i) for i, d in enumerate(docs)]
    metrics = _metrics(name, task, docs, ids, texts, stored, JudgeConfig(runs=recorded["runs"]),
                       recorded["judge_model"], allow_missing)
    metrics.update({key: recorded[key] for key in JUDGE_RECORD if key in recorded})  # an older judging has fewer
    _record(run, name, task, metrics)
    return metrics


def _recorded_judging(run: RunDir, name: str) -> dict:
    """The judged metrics a task's entry records; an error when it records no judging (model, runs)."""
    recorded = (run.entry(name) or {}).get("metrics")
    counts = ("n_missing", "n_expected")
    if not (isinstance(recorded, dict) and isinstance(recorded.get("judge_model"), str)
            and _count(recorded.get("runs")) and all(_count(recorded.get(k), 0) for k in counts)):
        raise TaskError(f"{name} in {run} has no judged metrics to rescore (no judge model, runs and verdict "
                        f"counts in {run.metrics(name)}); judge it with `llava-eval judge {run}`")
    return recorded


def _count(value, least: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _record(run: RunDir, name: str, task, metrics: dict) -> None:
    """Put the judged metrics into the task's metrics entry and the run's results."""
    entry = run.entry(name) or {"task": name, "version": task.version}
    entry.update(primary_metric=task.primary_metric, scored_locally=False, judged=True, metrics=metrics)
    for key in ("judged_stale", "stale_judged_metrics"):  # judged again: the numbers now cover every answer
        entry.pop(key, None)
    run.record(name, entry)


def judge_run(run_dir: Path, names: list[str] | None, config: JudgeConfig, *, no_cache: bool = False,
              allow_missing: float = 0.0, echo=print) -> dict:
    """Judge every judged task of a run (or `names`); returns metrics per task. The endpoint is probed before the
    first request that must be sent, and not at all when every verdict is stored or cached. The run directory's
    lock is held throughout, so a live `run` and a `judge` never write the same files."""
    run = RunDir(run_dir)
    run.finished_tasks()  # not a run directory: refused before a lock file is made there
    with run.lock():
        return _judge_locked(run, names, config, no_cache, allow_missing, echo)


def _judge_locked(run: RunDir, names, config: JudgeConfig, no_cache: bool, allow_missing: float, echo) -> dict:
    results_now = run.read_results()
    available = judged_tasks(list(results_now))
    wanted = names or available
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise TaskError(f"not judged or not in {run}: {', '.join(unknown)} (judged tasks here: "
                        f"{', '.join(available) or 'none'})")
    empty = [n for n in wanted if results_now[n]["metrics"].get("status") == NO_SCOREABLE_ROWS]
    for name in empty:
        echo(f"{name:18} no scoreable rows (every image failed): nothing to judge")
    wanted = [n for n in wanted if n not in empty]
    if not wanted:
        return {}
    client = LazyJudgeClient(config, JudgeClient)
    cache = VerdictCache(Path(config.cache) if config.cache else run.judge_cache, enabled=not no_cache)
    results, incomplete = {}, []
    try:
        for name in wanted:
            try:
                results[name] = judge_task(run.root, name, config, client, cache, allow_missing, fresh=no_cache)
            except IncompleteJudging as exc:
                incomplete.append(str(exc))
                results[name] = run.entry(name)["metrics"]
            echo(format_judged(name, results[name]))
    finally:
        cache.close()
    if incomplete:
        raise IncompleteJudging("; ".join(incomplete))
    return results


def format_judged(name: str, m: dict) -> str:
    metric = get_task(name).primary_metric
    value = f"{m[metric]:.1f}" if metric in m else "no score (incomplete)"
    cost = f", ${m['cost_usd']:.4f}" if m.get("cost_usd") is not None else ""
    return (f"{name:18} {metric:14} {value:>22}  verdicts {m['n_verdicts']}/{m['n_expected']}, missing "
            f"{m['n_missing']}; {m.get('fresh_calls', 0)} calls, {m.get('cached', 0)} cached, tokens "
            f"{m.get('prompt_tokens', 0)}+{m.get('completion_tokens', 0)}{cost}; judge {m.get('judge_model')}")
