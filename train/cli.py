"""The `llava-train` command: run a recipe's stages (stage 1 then stage 2, or one of them) into an
output folder whose final checkpoint `llava-eval run --model DIR` loads. torch and transformers are
imported inside the command, so `--help` answers at once.
"""

from __future__ import annotations

import sys

import click


def _deepspeed_config(value: str | None, recipe_value: str | None) -> str | None:
    from pathlib import Path

    name = value if value is not None else recipe_value
    if not name or name == "none":
        return None
    builtin = Path(__file__).parent / "configs" / f"{name}.json"
    if builtin.is_file():
        return str(builtin)
    if Path(name).is_file():
        return name
    raise click.BadParameter(f"{name!r} is neither zero2, zero3, none nor a DeepSpeed JSON file",
                             param_hint="--deepspeed")


def _parse_overrides(items) -> dict:
    import json

    from llava_types import UserError

    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set takes FIELD=VALUE, got {item!r}")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    return changes


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("recipe")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Output folder (stage1/, stage2/).")
@click.option("--stage", type=click.Choice(["1", "2", "all"]), default="all", show_default=True)
@click.option("--init-from", type=click.Path(), default=None,
              help="Stage-1 result for stage 2 (our trainable.safetensors folder or an mm_projector.bin).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop each stage after N steps.")
@click.option("--deepspeed", default=None, help="zero2, zero3, none, or a DeepSpeed JSON (default: the recipe's).")
@click.option("--data-fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Seeded random fraction of the training data (the paper's data-efficiency study).")
@click.option("--skip-invalid", is_flag=True, help="Drop invalid samples (reported) instead of refusing to start.")
@click.option("--allow-mismatch", is_flag=True,
              help="Mask samples whose label masking does not add up (the original's silent behaviour).")
@click.option("--no-resume", is_flag=True, help="Start every stage afresh, even if its folder holds checkpoints or a finished result.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Override a recipe field for every stage run (JSON value or plain string), "
                   "e.g. --set per_device_batch_size=4 --set data_path=synthetic:stage2:500.")
def main(recipe, out_dir, stage, init_from, max_steps, deepspeed, data_fraction, skip_invalid, allow_mismatch,
         no_resume, overrides):
    """Train a LLaVA-1.5 recipe (llava-v1.5-7b, llava-v1.5-13b, *-lora, tiny-shapes, or a recipe JSON)."""
    import dataclasses
    import logging
    from pathlib import Path

    from llava_types import UserError

    from .recipes import load_recipe
    from .trainer import run_stage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        stages = load_recipe(recipe)
        wanted = [s for s in stages if stage == "all" or str(s.stage) == stage]
        if not wanted:
            raise UserError(f"recipe {recipe!r} has no stage {stage}")
        previous = Path(init_from) if init_from else None
        changes = _parse_overrides(overrides)
        for item in wanted:
            if data_fraction is not None:
                changes["data_fraction"] = data_fraction
            try:
                item = dataclasses.replace(item, **changes)
            except TypeError as exc:
                raise UserError(f"--set: {exc}") from None
            if item.continues:  # a curriculum pass: the previous entry's whole model is where it starts
                item = dataclasses.replace(item, model_init=str(previous))
            elif item.stage == 2 and previous is None and any(s.stage == 1 for s in stages):
                candidate = Path(out_dir) / "stage1" / "final"
                previous = candidate if candidate.is_dir() else None
            result = run_stage(item, Path(out_dir) / item.folder,
                               init_from=previous if item.stage == 2 and not item.continues else None,
                               max_steps=max_steps,
                               deepspeed=_deepspeed_config(deepspeed, item.deepspeed), skip_invalid=skip_invalid,
                               allow_mismatch=allow_mismatch, resume=not no_resume)
            click.echo(f"{item.folder} done: {result}")
            previous = result
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
