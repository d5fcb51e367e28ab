"""Re-scoring a run from its stored answers with the current scorers (`llava-eval rescore RUN`): no model, no
generation, and no rows beyond those each task's recorded data options give. Items, metrics and results are
rewritten with the scoring version used; the answers are left as they are. A judged task is rescored from its
stored verdicts by the judge's `rescore_judged` (no judge is asked), and skipped while it has never been judged.
"""

from __future__ import annotations

from tasks.base import Task, TaskError
from tasks.registry import get_task

from .rundir import RunDir
from .summary import format_row


def rescore(run_dir, names: list[str] | None = None, echo=print) -> dict:
    """Rescore `names` (default: every finished task) of the run at `run_dir`, printing one line per task;
    returns task name -> the scoring version used for every task rescored."""
    run = RunDir(run_dir)
    results = run.read_results()
    wanted = list(names) if names else list(results)
    unknown = [n for n in wanted if n not in results]
    if unknown:
        raise TaskError(f"not finished in {run}: {', '.join(unknown)} (finished here: {', '.join(results) or 'none'})")
    unanswered = [n for n in wanted if not run.predictions(n).is_file()]
    if unanswered:
        raise TaskError(f"{run}: no stored answers for {', '.join(unanswered)}; run the tasks again to answer them")
    used = {}
    with run.lock():
        for name in wanted:
            task = get_task(name)
            if task.needs_judge:
                if not _rescore_judged(run, name, echo):
                    continue
            else:
                run.record(name, rescored_entry(run, task, run.entry(name) or results[name]))
            used[name] = task.scoring_version
            echo(format_row(run.read_results()[name]))
        if used:
            run.record_rescore(_provenance(used))
    return used


def rescored_entry(run: RunDir, task: Task, stored: dict) -> dict:
    """The task's stored entry with metrics recomputed from its stored answers (items rewritten) and the
    scoring version used; everything about generation (options, data, seconds, generated) stays."""
    from .runner import score_task

    _, rows = run.run_docs(task.name)
    return stored | {"scoring_version": task.scoring_version, "scored_locally": task.scores_locally(rows),
                     "metrics": score_task(task, rows, run, stored.get("allow_missing", 0.0))}


def _rescore_judged(run: RunDir, name: str, echo) -> bool:
    """Rescore a judged task from its stored verdicts (the run's lock is held); False when it has never been
    judged, so there is nothing to rescore."""
    from .judge import run as judge_run

    if not (run.entry(name) or {}).get("judged"):
        echo(f"{name:18} judged task: not rescored (never judged); judge it with `llava-eval judge {run} --tasks "
             f"{name}`")
        return False
    judge_run.rescore_judged(run.root, name)
    return True


def _provenance(used: dict) -> dict:
    """What the config's `rescores` list records of one rescore."""
    from .runstate import environment

    env = environment()
    return {k: env[k] for k in ("started", "command", "git_commit", "llava_eval")} | {"scoring_versions": used}
