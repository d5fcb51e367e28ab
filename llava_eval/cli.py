"""The `llava-eval` command line. torch and transformers are imported inside commands only, so that
`llava-eval --help` answers at once. Bad input ends with one `error: ...` line and exit status 2.
"""

from __future__ import annotations

import click

from .cli_judge import judge
from .cli_options import judge_options, model_options, run_options, served_options, user_errors
from .cli_reports import agree, compare, leaderboard, report

SERVED = ("served_mode", "max_in_flight", "request_timeout", "request_retries", "image_size", "tensor_parallel",
          "data_parallel")  # the served_options a model we do not run takes (cli_options.served_options)


def load_from_options(model, device, dtype, template, image_mode, vision_tower, batch_size, engine,
                      model_base_url=None, model_api_key_env=None, **served):
    """The backend `--model` names (llava_eval.backends.registry), opened with the model, engine and served
    options."""
    from .backends.entry import BackendOptions
    from .backends.registry import open_backend

    return open_backend(model, BackendOptions(device=device, dtype=dtype, template=template, image_mode=image_mode,
                                              vision_tower=vision_tower, batch_size=batch_size, engine=engine,
                                              base_url=model_base_url, api_key_env=model_api_key_env, **served))


def load_model(options, shard):
    """The model a `run` answers with (runner.Answerer): the backend `--model` names, on this rank's device
    under torchrun."""
    from .runner import Answerer

    m = options.model
    backend = load_from_options(m.model, m.device or shard.device(), m.dtype, m.template, m.image_mode,
                                m.vision_tower, options.batch_size, m.engine, m.model_base_url, m.model_api_key_env,
                                **{name: getattr(m, name) for name in SERVED})
    return Answerer(backend, backend.source, backend.fingerprint(), backend.record())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llava-eval")
def main():
    """Paper-exact evaluation of LLaVA-1.5-style models."""


@main.command()
@model_options
@served_options
@click.option("--image", "images", multiple=True, type=click.Path(),
              help="Image file (repeat for several; each needs an <image> in the prompt or one is prepended).")
@click.option("--prompt", required=True, help="The question, as the user turn's text.")
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--show-prompt", is_flag=True, help="Also print the rendered prompt.")
@user_errors
def generate(model, device, dtype, template, image_mode, vision_tower, images, prompt, max_new_tokens, show_prompt,
             **served):
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
    backend = load_from_options(model, device, dtype, template, image_mode, vision_tower, 1, "reference", **served)
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
@served_options
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
def presets():
    """List the model presets (backend, template, image preprocessing) and the checkpoints each backend loads."""
    from llava_model.presets import NEXT_PRESETS, PRESETS

    from .backends.registry import BACKENDS

    click.echo(f"{'preset':24} {'backend':10} {'template':10} {'images':7} description")
    for backend, table in (("llava", PRESETS), ("llava-next", NEXT_PRESETS)):
        for preset in table.values():
            click.echo(f"{preset.name:24} {backend:10} {preset.template:10} {preset.image_mode:7} {preset.description}")
    for entry in BACKENDS.values():
        click.echo(f"backend {entry.architectures}")


for command in (leaderboard, compare, agree, report, judge):
    main.add_command(command)

if __name__ == "__main__":
    main()
