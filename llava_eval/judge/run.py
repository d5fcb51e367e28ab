"""Judge a run directory's LLaVA-Bench and MM-Vet answers.

Per task, each answered doc is judged `runs` times. Every verdict is appended (flushed, fsynced) to
`<task>/judge.jsonl` the moment it arrives: raw reply, parsed score, attempts, tokens. A verdict that could
not be obtained (the request failed after its retries, or every reply was unparsable) is written as
missing, never as 0 or -1; a rerun asks again for the missing ones only, and the SQLite cache makes every
verdict already obtained free. The metrics record the judge model actually used, missing counts, token use
and cost; a task with missing verdicts gets no score unless their share is within `allow_missing`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tasks.base import TaskError
from tasks.llava_bench import JUDGE_SETTINGS as BENCH_SETTINGS
from tasks.llava_bench import average_runs, parse_review_scores, review_messages, summarize
from tasks.mmvet import JUDGE_SETTINGS as MMVET_SETTINGS
from tasks.mmvet import MAX_TRIES, RETRY_TEMPERATURE_STEP, aggregate_grades, grade_messages, parse_grade

from ..rundir import NO_SCOREABLE_ROWS, RunDir
from .cache import VerdictCache
from .client import JudgeCallError, JudgeClient
from .config import JudgeConfig

# Unparsable LLaVA-Bench reviews: the original records (-1, -1) and averages it in; we ask again, up to this
# many attempts in all, then call the verdict missing (docs/deviations.md).
BENCH_ATTEMPTS = 3


@dataclass(frozen=True)
class Protocol:
    max_tokens: int
    attempts: int

    def messages(self, doc: dict, answer: str, attempt: int) -> list[dict]:
        raise NotImplementedError

    def temperature(self, attempt: int) -> float:
        raise NotImplementedError

    def parse(self, text: str):
        raise NotImplementedError


class BenchProtocol(Protocol):
    """Reference: eval_gpt_review_bench.py: temperature 0.2, max_tokens 1024, the rule.json review prompt."""

    def messages(self, doc, answer, attempt):
        return review_messages(doc, answer)

    def temperature(self, attempt):
        return BENCH_SETTINGS["temperature"]

    def parse(self, text):
        pair = parse_review_scores(text)
        return None if pair is None else list(pair)


class MMVetProtocol(Protocol):
    """Reference: mm-vet_evaluator.py: temperature 0 (+0.5 per retry), max_tokens 3, 5 tries, the retry
    suffix on re-asks."""

    def messages(self, doc, answer, attempt):
        return grade_messages(doc, answer, retry=attempt > 0)

    def temperature(self, attempt):
        return MMVET_SETTINGS["temperature"] + RETRY_TEMPERATURE_STEP * attempt

    def parse(self, text):
        return parse_grade(text)


PROTOCOLS = {"llava_bench": BenchProtocol(BENCH_SETTINGS["max_tokens"], BENCH_ATTEMPTS),
             "mmvet": MMVetProtocol(MMVET_SETTINGS["max_tokens"], MAX_TRIES)}


class IncompleteJudging(TaskError):
    """Raised after judging when a task's missing verdicts exceed the allowed share (metrics are written)."""


def judge_task(run_dir: Path, name: str, config: JudgeConfig, client: JudgeClient, cache: VerdictCache,
               allow_missing: float = 0.0, fresh: bool = False) -> dict:
    """Judge one task of a run; `fresh` asks again for every verdict (stored and cached ones included)."""
    if name not in PROTOCOLS:
        raise TaskError(f"{name} is not judged (judged tasks: {', '.join(PROTOCOLS)})")
    protocol, model = PROTOCOLS[name], config.model_for(name)
    run_files = RunDir(run_dir)
    task, docs = run_files.run_docs(name)
    texts, _ = run_files.answers(name)
    stored = run_files.read_verdicts(name)
    ids = [task.doc_id(d, i) for i, d in enumerate(docs)]
    jobs = [(i, r) for i, doc_id in enumerate(ids) if doc_id in texts for r in range(config.runs)
            if fresh or (stored.get((doc_id, r)) or {}).get("status") != "ok"
            or stored[(doc_id, r)].get("model") != model]
    counters = {"fresh_calls": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0}
    lock = threading.Lock()  # guards the counters and the verdict file
    writer = run_files.verdict_appender(name)

    def judge_one(job):
        index, run = job
        doc, doc_id = docs[index], ids[index]
        row = {"question_id": doc_id, "run": run, "model": model, "status": "missing", "attempts": 0}
        for attempt in range(protocol.attempts):
            messages = protocol.messages(doc, texts[doc_id], attempt)
            temperature = protocol.temperature(attempt)
            key = VerdictCache.key(provider=config.provider, base_url=config.base_url, model=model,
                                   messages=messages, temperature=temperature, max_tokens=protocol.max_tokens,
                                   protocol=f"{name}:v{task.version}", run=run, attempt=attempt)
            hit = cache.get(key)
            row["attempts"] = attempt + 1
            if hit is None:
                try:
                    done = client.complete(messages, model, temperature, protocol.max_tokens)
                except JudgeCallError as exc:
                    row["reason"] = client.scrub(str(exc))
                    break
                text, p_tok, c_tok = client.scrub(done.text), done.prompt_tokens, done.completion_tokens
                cache.put(key, text, p_tok, c_tok)
                with lock:
                    counters["fresh_calls"] += 1
                    counters["prompt_tokens"] += p_tok
                    counters["completion_tokens"] += c_tok
            else:
                text = hit[0]
                with lock:
                    counters["cached"] += 1
            parsed = protocol.parse(text)
            row["raw"] = text
            if parsed is not None:
                row.update(status="ok", parsed=parsed)
                row.pop("reason", None)
                break
            row["reason"] = "unparsable reply"
        with lock:
            writer.write([row])
        return (doc_id, run), row

    try:
        with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            for key, row in pool.map(judge_one, jobs):
                stored[key] = row
    finally:
        writer.close()
    metrics = _metrics(name, task, docs, ids, texts, stored, config, model, allow_missing)
    metrics.update(counters, judge_model=model, judge_provider=config.provider, runs=config.runs,
                   cost_usd=config.cost(model, counters["prompt_tokens"], counters["completion_tokens"]))
    _record(run_dir, name, task, metrics)
    if metrics["status"] == "incomplete":
        raise IncompleteJudging(f"{name}: {metrics['n_missing']} of {metrics['n_expected']} verdicts missing "
                                f"(allowed share {allow_missing:g}); no score. Rerun `llava-eval judge` to fill them")
    return metrics


def _metrics(name, task, docs, ids, texts, stored, config, model, allow_missing) -> dict:
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
    if name == "llava_bench":
        per_run = []
        for r in range(runs):
            by_category: dict = {}
            for i in complete:
                by_category.setdefault(docs[i]["category"], []).append(tuple(verdicts[(ids[i], r)]["parsed"]))
            per_run.append(summarize(by_category))
        out["relative_score"] = average_runs([s["all"]["relative"] for s in per_run])
        out["runs_relative"] = [s["all"]["relative"] for s in per_run]
        out["categories"] = {c: average_runs([s[c]["relative"] for s in per_run])
                             for c in sorted(per_run[0]) if c not in ("all", "n_unparsed")}
        out["per_run"] = per_run
    else:
        grades = [[verdicts[(ids[i], r)]["parsed"] for r in range(runs)] for i in complete]
        out.update(aggregate_grades([docs[i] for i in complete], grades))
    return out


def _record(run_dir: Path, name: str, task, metrics: dict) -> None:
    """Put the judged metrics into the task's metrics entry and the run's results."""
    run_files = RunDir(run_dir)
    entry = run_files.entry(name) or {"task": name, "version": task.version}
    entry.update(primary_metric=task.primary_metric, scored_locally=False, judged=True, metrics=metrics)
    for key in ("judged_stale", "stale_judged_metrics"):  # judged again: the numbers now cover every answer
        entry.pop(key, None)
    run_files.record(name, entry)


def judge_run(run_dir: Path, names: list[str] | None, config: JudgeConfig, *, no_cache: bool = False,
              allow_missing: float = 0.0, echo=print) -> dict:
    """Judge every judged task of a run (or `names`): probe first, then judge; returns metrics per task. The
    run directory's lock is held throughout, so a live `run` and a `judge` never write the same files."""
    run_dir = Path(run_dir)
    RunDir(run_dir).finished_tasks()  # not a run directory: refused before a lock file is made there
    with RunDir(run_dir).lock():
        return _judge_locked(run_dir, names, config, no_cache, allow_missing, echo)


def _judge_locked(run_dir: Path, names, config: JudgeConfig, no_cache: bool, allow_missing: float, echo) -> dict:
    results_now = RunDir(run_dir).read_results()
    available = [n for n in results_now if n in PROTOCOLS]
    wanted = names or available
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise TaskError(f"not judged or not in {run_dir}: {', '.join(unknown)} (judged tasks here: "
                        f"{', '.join(available) or 'none'})")
    empty = [n for n in wanted if results_now[n]["metrics"].get("status") == NO_SCOREABLE_ROWS]
    for name in empty:
        echo(f"{name:18} no scoreable rows (every image failed): nothing to judge")
    wanted = [n for n in wanted if n not in empty]
    if not wanted:
        return {}
    client = JudgeClient(config)
    client.probe(config.model_for(wanted[0]))
    cache = VerdictCache(Path(config.cache) if config.cache else RunDir(run_dir).judge_cache, enabled=not no_cache)
    results, incomplete = {}, []
    try:
        for name in wanted:
            try:
                results[name] = judge_task(run_dir, name, config, client, cache, allow_missing, fresh=no_cache)
            except IncompleteJudging as exc:
                incomplete.append(str(exc))
                results[name] = RunDir(run_dir).entry(name)["metrics"]
            echo(format_judged(name, results[name]))
    finally:
        cache.close()
    if incomplete:
        raise IncompleteJudging("; ".join(incomplete))
    return results


def format_judged(name: str, m: dict) -> str:
    metric = "relative_score" if name == "llava_bench" else "total"
    value = f"{m[metric]:.1f}" if metric in m else "no score (incomplete)"
    cost = f", ${m['cost_usd']:.4f}" if m.get("cost_usd") is not None else ""
    return (f"{name:18} {metric:14} {value:>22}  verdicts {m['n_verdicts']}/{m['n_expected']}, missing "
            f"{m['n_missing']}; {m.get('fresh_calls', 0)} calls, {m.get('cached', 0)} cached, tokens "
            f"{m.get('prompt_tokens', 0)}+{m.get('completion_tokens', 0)}{cost}; judge {m.get('judge_model')}")
