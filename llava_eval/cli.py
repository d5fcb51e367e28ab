"""The `llava-eval` command line. torch and transformers are imported inside commands only, so that
`llava-eval --help` answers at once. Bad input ends with one `error: ...` line and exit status 2.
"""

from __future__ import annotations

import functools
import sys

import click

MODEL_HELP = "Checkpoint directory (llava-hf or original LLaVA format) or preset name (e.g. tiny)."


def user_errors(fn):
    """Turn the project's user-facing errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from llava_model.errors import UserError

        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def model_options(fn):
    options = [
        click.option("--model", "model", default="tiny", show_default=True, help=MODEL_HELP),
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


def load_from_options(model, device, dtype, template, image_mode, vision_tower):
    from llava_model.checkpoint import load_bundle

    return load_bundle(model, device=device, dtype=dtype, template=template, image_mode=image_mode,
                       vision_tower=vision_tower)


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
    from llava_model.conversation import IMAGE_PLACEHOLDER, USER, Message, move_image_to_front
    from llava_model.preprocess import load_image

    from .engine import LlavaEngine
    from .request import GenerationSettings, Request

    loaded = [load_image(path) for path in images]  # fail on a bad image before loading the model
    text = prompt
    missing = len(loaded) - text.count(IMAGE_PLACEHOLDER)
    if missing > 0:
        text = IMAGE_PLACEHOLDER * missing + "\n" + text
    if len(loaded) == 1:
        text = move_image_to_front(text)
    bundle = load_from_options(model, device, dtype, template, image_mode, vision_tower)
    engine = LlavaEngine(bundle, batch_size=1)
    request = Request("cli", (Message(USER, text),), tuple(loaded), GenerationSettings(max_new_tokens))
    if show_prompt:
        click.echo(engine.prompt(request), err=True)
    click.echo(engine.generate([request])[0])


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

    bundle = load_bundle(src, device="cpu", dtype=dtype, vision_tower=vision_tower)
    save_bundle(bundle, dst)
    click.echo(f"wrote {dst} (template {bundle.template.name}, image mode {bundle.image_mode})")


@main.command()
def presets():
    """List the model presets."""
    from llava_model.presets import PRESETS

    for preset in PRESETS.values():
        click.echo(f"{preset.name:24} {preset.description}")


if __name__ == "__main__":
    main()
