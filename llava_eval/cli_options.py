"""What the commands of the `llava-eval` command line share: the rule that turns an expected failure into one
`error: ...` line with exit status 2, and the option groups several commands take. Only click is imported
here, so that `llava-eval --help` answers at once.
"""

from __future__ import annotations

import functools
import sys

import click

from .scheduling import STRATEGIES  # the --engine names; no torch behind it, so --help stays fast

ENGINES = list(STRATEGIES)
MODEL_HELP = ("Checkpoint directory (llava-hf or original LLaVA format; the backend is picked by its architecture), "
              "built-in checkpoint (tiny-shapes), preset name (tiny: random weights) or BACKEND:MODEL (llava:DIR; "
              "served:NAME, a model behind --model-base-url; vllm:DIR, vLLM's engine in this process).")


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


def served_options(fn):
    """Options of a model we do not run ourselves: behind an endpoint (served:NAME) or in vLLM (vllm:DIR)."""
    options = [
        click.option("--model-base-url", default=None,
                     help="served:NAME: the server's OpenAI-compatible base URL (http://127.0.0.1:8000/v1; SGLang's "
                          "root URL for --served-mode generate). Not the judge's --base-url."),
        click.option("--model-api-key-env", default=None,
                     help="served:NAME: name of the environment variable holding the server's key (default: none)."),
        click.option("--served-mode", type=click.Choice(["chat", "generate"]), default="chat", show_default=True,
                     help="chat: chat completions (launch the server with our chat template, docs/serving.md); "
                          "generate: SGLang's /generate with the prompt rendered here."),
        click.option("--max-in-flight", type=click.IntRange(min=1), default=64, show_default=True,
                     help="served: requests in flight at most (halved on a 429, grown back on success)."),
        click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=300.0,
                     show_default=True, help="served: seconds per request."),
        click.option("--request-retries", type=click.IntRange(min=0), default=6, show_default=True,
                     help="served: tries after the first for 429 / 5xx / timeouts; then the answer is missing."),
        click.option("--image-size", type=click.IntRange(min=1), default=None,
                     help="served, vllm: the model's input side, images are preprocessed to it (default 336)."),
        click.option("--tensor-parallel", type=click.IntRange(min=1), default=1, show_default=True,
                     help="vllm:DIR: GPUs per engine."),
        click.option("--data-parallel", type=click.IntRange(min=1), default=1, show_default=True,
                     help="vllm:DIR: engine replicas."),
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
                     help="Score a task even if up to this share of its verdicts (or, in run, of its answers a "
                          "served model could not give) is missing."),
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
        click.option("--report", default=None, type=click.Path(),
                     help="Also write the HTML report (as `llava-eval report`) to this file after scoring."),
        click.option("--leaderboard", default=None, type=click.Path(),
                     help="Also write the leaderboard CSV: this run's row and the paper's rows (as `llava-eval "
                          "leaderboard --with-paper`)."),
        click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal)."),
        click.option("--engine", type=click.Choice(ENGINES), default="fast", show_default=True,
                     help="fast: one vision pass and prefix prefill per image, batched decode; reference: the "
                          "batched plain engine (batch size 1 = the original scripts' loop). Same answers on CPU "
                          "float32."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
