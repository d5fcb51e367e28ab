"""`llava-eval run`: the command line becomes one RunOptions, bad input is refused in the order a user meets it
(task names, judge endpoint and key, run directory, report and leaderboard files, data, a directory in use)
before the model loads, then the runner answers and scores, the judged tasks are judged when a judge is
configured, and the report and leaderboard asked for are written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from llava_types import UserError

from .judge.run import judged_tasks
from .options import JudgeOptions, ModelOptions, RunOptions, take
from .rundir import CONFIG, INCOMPLETE, RunDir
from .shard import Shard, shard_from_env
from .summary import counted


def run_command(params: dict, load) -> None:
    """Run the `run` command with click's `params`; `load(options, shard)` loads the model (a runner.Answerer)."""
    from .runner import load_task_docs

    shard = shard_from_env()  # data-parallel under torchrun: rank r answers the r-th block of the docs
    options = run_options(params, shard)
    say = click.echo if shard.main else (lambda *a, **k: None)
    docs = load_task_docs(options)  # bad data: one error line before the model loads
    if shard.main and options.out.is_dir():
        with RunDir(options.out).lock():  # a directory a live run or judge holds is refused before the model loads
            pass
    answerer = load(options, shard)
    say(f"model {answerer.model_id} (fingerprint {answerer.fingerprint}); {counted(len(options.tasks), 'task')}; data "
        f"{options.data}; run directory {options.out}" + (f"; {shard.world} processes" if shard.world > 1 else ""))
    results = _answer_and_score(answerer, options, shard, docs, say)
    if shard.main:
        _notes(options, results)
        _judge(options)
        _write_outputs(options)
        _exit_if_unanswered(results, options)


def run_options(params: dict, shard: Shard) -> RunOptions:
    """The typed options of one call from click's parameters: task names resolved, the judge settings and the
    run directory checked."""
    from tasks.registry import resolve

    model, judge = take(ModelOptions, params), take(JudgeOptions, params)
    tasks = tuple(resolve(params.pop("task_list"), params["suite"]))
    judge_config(judge, tasks)  # a bad endpoint or a missing key stops here, before the model loads
    out = _run_dir(params.pop("out_dir"), params["resume"], shard)
    for name in ("report", "leaderboard"):
        params[name] = _output_file(params[name], f"--{name}")
    return RunOptions(tasks=tasks, out=out, model=model, judge=judge, **params)


def judge_config(judge: JudgeOptions, names):
    """The judge configuration for the judged tasks among `names`; None when none is judged or no judge is
    configured. The endpoint options are refused even then: the command line is recorded."""
    from .judge.config import check_endpoint

    check_endpoint(judge.api_key_env, judge.base_url)
    if not (judge.configured and judged_tasks(names)):
        return None
    config = judge.load()
    config.api_key()  # a missing key stops here
    return config


def _run_dir(out_dir: str | None, resume: bool, shard: Shard):
    from .errors import check_output

    if resume and not (out_dir and RunDir(out_dir).is_run()):
        raise UserError(f"--resume needs --out naming an existing run directory (with {CONFIG})")
    if shard.world > 1 and not out_dir:
        raise UserError("a data-parallel run (torchrun) needs --out: every rank must write to the same directory")
    return check_output(out_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}", "--out", folder=True)


def _output_file(path: str | None, option: str) -> Path | None:
    """A file the run writes once it has scored: refused now if it cannot be written; its folder may be missing
    (it is created then, as --out is, so the file can go inside the run directory)."""
    from .errors import check_output

    if path is None:
        return None
    if Path(path).is_dir():
        raise UserError(f"{option} {path}: is a folder; name a file to write")
    check_output(Path(path).parent, option, folder=True)
    return Path(path)


def _answer_and_score(answerer, options: RunOptions, shard: Shard, docs: dict, say) -> dict:
    from .errors import DISK_FULL, disk_full_in_run
    from .runner import evaluate

    try:
        return evaluate(answerer, options, echo=say, shard=shard, docs=docs)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every finished batch is saved in {options.out}; run the same command again "
                   "(or add --resume) to continue", err=True)
        sys.exit(130)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise disk_full_in_run(exc, options.out) from None


def _notes(options: RunOptions, results: dict) -> None:
    """The lines under the table: what the empty and degenerate counts mean when a task has some, and the suite's
    note (which benchmarks it leaves to a server or a judge)."""
    from tasks.registry import SUITE_NOTES

    from .summary import ANSWER_NOTE

    counted = (results.get(name, {}).get("metrics", {}) for name in options.tasks)
    if any(m.get("n_empty") or m.get("n_degenerate") for m in counted):
        click.echo(ANSWER_NOTE)
    if options.suite in SUITE_NOTES:
        click.echo(f"note: {SUITE_NOTES[options.suite]}")


def _write_outputs(options: RunOptions) -> None:
    """The HTML report and the leaderboard CSV (this run's row, then the paper's) the command line asked for."""
    if options.report:
        from .report import write_report

        options.report.parent.mkdir(parents=True, exist_ok=True)
        click.echo(f"report: {write_report(options.out, options.report)}")
    if options.leaderboard:
        from .leaderboard import table

        options.leaderboard.parent.mkdir(parents=True, exist_ok=True)
        table([options.out], with_paper=True).to_csv(options.leaderboard, index=False)
        click.echo(f"leaderboard: {options.leaderboard} (this run and the paper's rows)")


def _judge(options: RunOptions) -> None:
    """Judge the judged tasks when a judge is configured; otherwise say how to judge them later."""
    judged = judged_tasks(options.tasks)
    config = judge_config(options.judge, options.tasks)
    if config is not None:
        from .judge.run import judge_run

        judge_run(options.out, judged, config, no_cache=options.judge.no_cache,
                  allow_missing=options.judge.allow_missing, echo=click.echo)
    elif judged:
        click.echo(f"not judged (no judge configured): {', '.join(judged)}; answers are saved, judge them later "
                   f"with `llava-eval judge {options.out} --judge-config FILE`")
    click.echo(f"results: {RunDir(options.out).results_file}")


def _exit_if_unanswered(results: dict, options: RunOptions) -> None:
    """Exit status 3 when a task has more answers a served model could not give than --allow-missing accepts:
    it has no score, and the same command asks for those answers only."""
    names = [n for n in options.tasks if results.get(n, {}).get("metrics", {}).get("status") == INCOMPLETE]
    if names:
        click.echo(f"incomplete: {', '.join(names)} (answers missing after their retries, more than "
                   f"--allow-missing {options.judge.allow_missing:g}); run the same command again to ask only for "
                   "them", err=True)
        sys.exit(3)
