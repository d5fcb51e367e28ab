"""The judge's commands: `llava-eval judge RUN_DIR` grades a run's judged tasks, `llava-eval judge calibrate`
measures a substitute judge against the verdicts the protocol's judge published (docs/judge.md).
"""

from __future__ import annotations

import sys

import click

from .cli_options import judge_options, user_errors


@click.command("calibrate")
@click.option("--task", "task_name", required=True, help="The judged task (llava_bench, mmvet).")
@click.option("--data", required=True, help="The task's rows, as `run --data` reads them (llava:DIR: eval.zip).")
@click.option("--data-root", default=None, type=click.Path(), help="Root for image paths in local rows.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Only the first rows.")
@click.option("--answers", required=True, type=click.Path(), help="The released answers those verdicts graded.")
@click.option("--reference", "references", required=True, multiple=True, type=click.Path(),
              help="A released verdict file (LLaVA-Bench: one review .jsonl per run; MM-Vet: a grade .json).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for verdicts and calibration.")
@judge_options
@user_errors
def judge_calibrate(**params):
    """Re-judge the answers the protocol's judge published verdicts on, with the configured judge: the headline
    offset (ours - original, 95% bootstrap interval), per-category offsets, per-answer correlation and exact
    agreement go to OUT/TASK/calibration.json (docs/judge.md). Exit status 3 when verdicts are missing."""
    from .judge.calibrate import calibrate_command
    from .judge.run import IncompleteJudging

    try:
        calibrate_command(params, echo=click.echo)
    except IncompleteJudging as exc:
        click.echo(f"incomplete: {exc}", err=True)
        sys.exit(3)


class JudgeCommand(click.Command):
    """`judge RUN_DIR`, and its subcommand `judge calibrate` (a run directory named calibrate: ./calibrate)."""

    def make_context(self, info_name, args, parent=None, **extra):
        if args and args[0] == "calibrate":
            return judge_calibrate.make_context(f"{info_name} calibrate", args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command(cls=JudgeCommand)
@click.argument("run_dir", type=click.Path())
@click.option("--tasks", "task_list", default=None, help="Comma-separated judged tasks (default: all in the run).")
@judge_options
@user_errors
def judge(run_dir, task_list, **params):
    """Judge a run's LLaVA-Bench and MM-Vet answers with a GPT judge (cached; reruns fill only what is
    missing). Exit status 3 when a task is left incomplete. `judge calibrate` measures a substitute judge."""
    from pathlib import Path

    from .judge.run import IncompleteJudging, judge_run
    from .options import JudgeOptions

    options = JudgeOptions(**params)
    config = options.load()
    try:
        results = judge_run(Path(run_dir), task_list.split(",") if task_list else None, config,
                            no_cache=options.no_cache, allow_missing=options.allow_missing, echo=click.echo)
    except IncompleteJudging as exc:
        click.echo(f"incomplete: {exc}", err=True)
        sys.exit(3)
    if not results:
        click.echo("nothing to judge: the run has no LLaVA-Bench or MM-Vet answers")
