"""The `llava-eval` command line. torch and transformers are imported inside commands only, so that
`llava-eval --help` answers at once. Bad input ends with one `error: ...` line and exit status 2.
"""

from __future__ import annotations

import functools
import sys

import click

from .scheduling import STRATEGIES  # the --engine names; no torch behind it, so --help stays fast

ENGINES = list(STRATEGIES)
MODEL_HELP = ("Checkpoint directory (llava-hf or original LLaVA format; the backend is picked by its architecture), "
              "built-in checkpoint (tiny-shapes), preset name (tiny: random weights) or BACKEND:MODEL (llava:DIR).")


def user_errors(fn):
    """Turn an expected failure (the project's user-facing errors, a file-system error on a path the user gave,
    a file that is not UTF-8) into one line on stderr and exit status 2. Anything else is a bug and keeps its
    traceback; click's usage errors never reach here."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import EXPECTED, explain
        from .redact import redact_text

        try:
            return fn(*args, **kwargs)
        except EXPECTED as exc:
            message = explain(exc)
            if message is None:
                raise
            click.echo(f"error: {redact_text(' '.join(message.split()), random_tokens=False)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def model_options(fn):
    options = [
        click.option("--model", "model", default="tiny-shapes", show_default=True, help=MODEL_HELP),
        click.option("--device", default=None, help="torch device (default: cuda if available, else cpu)."),
        click.option("--dtype", default="auto", show_default=True,
                     type=click.Choice(["auto", "float32", "float16", "bfloat16"]),
                     help="Weights dtype; auto = float16 on GPU (as the original eval), float32 on CPU."),
        click.option("--template", default=None, help="Override the checkpoint's conversation template "
                     "(vicuna_v1, llava_v1, plain)."),
        click.option("--image-mode", default=None, type=click.Choice(["pad", "crop"]),
                     help="Override the checkpoint's image preprocessing."),
        click.option("--vision-tower", default=None, type=click.Path(),
                     help="Local CLIP directory for an original LLaVA checkpoint (instead of mm_vision_tower)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def judge_options(fn):
    options = [
        click.option("--judge-config", type=click.Path(), default=None,
                     help="Judge YAML (provider, base_url, api_key_env, models, runs, ...); see docs/judge.md."),
        click.option("--provider", type=click.Choice(["openai", "azure", "compatible"]), default=None),
        click.option("--base-url", default=None, help="OpenAI-compatible endpoint (vLLM, Ollama, a proxy)."),
        click.option("--api-key-env", default=None, help="Name of the environment variable holding the key."),
        click.option("--judge-model", default=None, help="Judge model for every judged task of this call."),
        click.option("--runs", type=click.IntRange(min=1), default=None, help="Judging runs per answer (3)."),
        click.option("--concurrency", type=click.IntRange(min=1), default=None),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, help="Seconds."),
        click.option("--retries", type=click.IntRange(min=0), default=None),
        click.option("--no-cache", is_flag=True, help="Ask the judge again even for cached verdicts."),
        click.option("--allow-missing", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                     help="Score a task even if up to this share of its verdicts is missing."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def run_options(fn):
    options = [
        click.option("--tasks", "task_list", default=None, help="Comma-separated task names."),
        click.option("--suite", default=None, help="Suite name (llava-1.5, llava-1.5-local)."),
        click.option("--data", default="synthetic", show_default=True,
                     help="synthetic | hub | hub:OWNER/NAME[:CONFIG][@REV] | FILE.jsonl/.parquet | DIR | llava:DIR"),
        click.option("--data-root", default=None, type=click.Path(), help="Root for image paths in local rows."),
        click.option("--limit", default=None, type=click.IntRange(min=1),
                     help="Rows per task (synthetic: rows drawn)."),
        click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1)),
        click.option("--out", "out_dir", default=None, type=click.Path(), help="Run directory (default runs/<time>)."),
        click.option("--resume", is_flag=True, help="Continue the run in --out (which must exist); a rerun into the "
                     "same directory resumes too. Refused when the model, settings or prompts changed."),
        click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal)."),
        click.option("--engine", type=click.Choice(ENGINES), default="fast", show_default=True,
                     help="fast: one vision pass and prefix prefill per image, batched decode; reference: the "
                          "batched plain engine (batch size 1 = the original scripts' loop). Same answers on CPU "
                          "float32."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_from_options(model, device, dtype, template, image_mode, vision_tower, batch_size, engine):
    """The backend `--model` names (llava_eval.backends.registry), opened with the model and engine options."""
    from .backends.entry import BackendOptions
    from .backends.registry import open_backend

    return open_backend(model, BackendOptions(device=device, dtype=dtype, template=template, image_mode=image_mode,
                                              vision_tower=vision_tower, batch_size=batch_size, engine=engine))


def load_model(options, shard):
    """The model a `run` answers with (runner.Answerer): the backend `--model` names, on this rank's device
    under torchrun."""
    from .runner import Answerer

    m = options.model
    backend = load_from_options(m.model, m.device or shard.device(), m.dtype, m.template, m.image_mode,
                                m.vision_tower, options.batch_size, m.engine)
    return Answerer(backend, backend.source, backend.fingerprint(), backend.record())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llava-eval")
def main():
    """Paper-exact evaluation of LLaVA-1.5-style models."""


@main.command()
@model_options
@click.option("--image", "images", multiple=True, type=click.Path(),
              help="Image file (repeat for several; each needs an <image> in the prompt or one is prepended).")
@click.option("--prompt", required=True, help="The question, as the user turn's text.")
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--show-prompt", is_flag=True, help="Also print the rendered prompt.")
@user_errors
def generate(model, device, dtype, template, image_mode, vision_tower, images, prompt, max_new_tokens, show_prompt):
    """Answer one question about an image, greedily, with the checkpoint's own template."""
    from llava_model.conversation import move_image_to_front
    from llava_model.preprocess import load_image
    from llava_types import IMAGE_PLACEHOLDER, USER, GenerationSettings, Message, Request

    loaded = [load_image(path) for path in images]  # fail on a bad image before loading the model
    text = prompt
    missing = len(loaded) - text.count(IMAGE_PLACEHOLDER)
    if missing > 0:
        text = IMAGE_PLACEHOLDER * missing + "\n" + text
    if len(loaded) == 1:
        text = move_image_to_front(text)
    backend = load_from_options(model, device, dtype, template, image_mode, vision_tower, 1, "reference")
    request = Request("cli", (Message(USER, text),), tuple(loaded), GenerationSettings(max_new_tokens))
    if show_prompt:
        click.echo(backend.prompt(request), err=True)
    click.echo(backend.generate([request])[0])


@main.command()
@click.argument("src", type=click.Path())
@click.argument("dst", type=click.Path())
@click.option("--vision-tower", default=None, type=click.Path(),
              help="Local CLIP directory (instead of the checkpoint's mm_vision_tower).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16", "bfloat16"]))
@user_errors
def convert(src, dst, vision_tower, dtype):
    """Convert an original LLaVA checkpoint (SRC) to a llava-eval/llava-hf directory (DST)."""
    from llava_model.checkpoint import load_bundle, save_bundle

    from .errors import check_output

    check_output(dst, "DST", folder=True)
    bundle = load_bundle(src, device="cpu", dtype=dtype, vision_tower=vision_tower)
    save_bundle(bundle, dst)
    click.echo(f"wrote {dst} (template {bundle.template.name}, image mode {bundle.image_mode})")


@main.command()
@click.option("--show", "show", default=None, metavar="TASK", help="Print one task's contract.")
@user_errors
def tasks(show):
    """List tasks and suites, or show one task's source, split, doc-id rule, prompt, metrics, version."""
    from .task_info import task_contract, task_list

    click.echo("\n".join(task_contract(show) if show else task_list()))


@main.command()
@model_options
@run_options
@judge_options
@user_errors
def run(**params):
    """Generate answers for tasks and score them into a run directory."""
    from .run_command import run_command

    run_command(params, load_model)


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--tasks", "task_list", default=None, help="Comma-separated tasks (default: every finished task).")
@user_errors
def rescore(run_dir, task_list):
    """Score a run's stored answers again with the current scorers (no model, nothing regenerated) and
    rewrite its items, metrics and results with the scoring versions used."""
    from .rescore import rescore as rescore_run
    from .rundir import RunDir

    rescore_run(run_dir, task_list.split(",") if task_list else None, echo=click.echo)
    click.echo(f"results: {RunDir(run_dir).results_file}")


@main.command()
@click.option("--task", "task_name", required=True)
@click.option("--data", required=True, type=click.Path(), help="Rows in the task's schema (.jsonl/.parquet).")
@click.option("--predictions", required=True, type=click.Path(),
              help="JSONL answer file: question_id and text per line (original LLaVA format).")
@user_errors
def score(task_name, data, predictions):
    """Score an existing answer file without a model; prints the metrics as one JSON object."""
    import json
    from pathlib import Path

    from tasks.registry import get_task

    from .data import load_docs
    from .scoring import read_answer_file

    task = get_task(task_name)
    docs = load_docs(task, data).without_images(task)
    answers = read_answer_file(Path(predictions), task, docs)
    metrics, _ = task.score(list(docs), answers)
    click.echo(json.dumps(metrics, ensure_ascii=False, default=str))


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--task", "task_name", required=True)
@click.option("--out", "out_file", required=True, type=click.Path())
@click.option("--data", default=None, help="Data source of the run (default: the one recorded in the run).")
@click.option("--extra", "extra_items", multiple=True, metavar="KEY=VALUE",
              help="Extra input a server needs, e.g. test2015_questions=PATH for vqav2_testdev; allow_partial=1.")
@user_errors
def submit(run_dir, task_name, out_file, data, extra_items):
    """Write the evaluation-server file of a task from a run directory."""
    from .submission import write_submission

    click.echo(write_submission(run_dir, task_name, out_file, data, extra_items))


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_file", required=True, type=click.Path(), help="CSV file to write.")
@click.option("--with-paper", is_flag=True,
              help="Append the LLaVA-1.5 paper's rows (leaderboards/llava-1.5-paper.csv).")
@click.option("--markdown", "markdown_file", default=None, type=click.Path(), help="Also write a Markdown table.")
@click.option("--plot", "plot_file", default=None, type=click.Path(), help="Also write a chart (PNG).")
@user_errors
def leaderboard(run_dirs, out_file, with_paper, markdown_file, plot_file):
    """One row per run in the paper's columns; benchmarks a run did not score stay empty."""
    from pathlib import Path

    from . import leaderboard as lb
    from .errors import check_output

    for path, option in ((out_file, "--out"), (markdown_file, "--markdown"), (plot_file, "--plot")):
        if path:
            check_output(path, option)
    frame = lb.table(run_dirs, with_paper=with_paper)
    frame.to_csv(out_file, index=False)
    click.echo(f"wrote {out_file} ({len(run_dirs)} runs{', with the paper rows' if with_paper else ''})")
    if markdown_file:
        Path(markdown_file).write_text(lb.to_markdown(frame), encoding="utf-8")
        click.echo(f"wrote {markdown_file}")
    if plot_file:
        lb.plot(frame, Path(plot_file), n_runs=len(run_dirs))
        click.echo(f"wrote {plot_file}")


@main.command()
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
@click.option("--tasks", "task_list", default=None, help="Comma-separated tasks (default: all finished in both).")
@click.option("--csv", "csv_file", default=None, type=click.Path(), help="Also write the table as CSV.")
@user_errors
def compare(run_a, run_b, task_list, csv_file):
    """Per benchmark, B - A on the docs both runs answered, with a paired bootstrap 95% interval and
    p-value, and McNemar's exact test where every score is right or wrong."""
    from .errors import check_output
    from .stats import compare_runs
    from .summary import compare_lines

    if csv_file:
        check_output(csv_file, "--csv")
    rows = compare_runs(run_a, run_b, task_list.split(",") if task_list else None)
    if not rows:
        click.echo("no locally scored task finished in both runs")
        return
    click.echo("\n".join(compare_lines(rows, run_a, run_b)))
    if csv_file:
        import pandas as pd

        pd.DataFrame(rows).to_csv(csv_file, index=False)
        click.echo(f"wrote {csv_file}")


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", "out_file", default=None, type=click.Path(), help="HTML file (default RUN_DIR/report.html).")
@click.option("--max-samples", default=500, show_default=True, type=click.IntRange(min=1),
              help="Samples listed per task (failures first).")
@user_errors
def report(run_dir, out_file, max_samples):
    """Write a static HTML report: summary with intervals and paper deltas, and browsable samples."""
    from pathlib import Path

    from .errors import check_output
    from .report import write_report

    if out_file:
        check_output(out_file, "--out")
    path = write_report(Path(run_dir), Path(out_file) if out_file else None, max_samples=max_samples)
    click.echo(f"wrote {path}")


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


@main.command(cls=JudgeCommand)
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


@main.command()
def presets():
    """List the model presets."""
    from llava_model.presets import PRESETS

    for preset in PRESETS.values():
        click.echo(f"{preset.name:24} {preset.description}")


if __name__ == "__main__":
    main()
