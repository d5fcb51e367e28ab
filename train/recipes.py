"""Training recipes: the settings of each stage of a two-stage LLaVA run as typed, validated values.

A recipe file (bundled in `train/recipes/`, or any path) is a JSON object
`{"name", "description", "stages": [{...StageRecipe fields...}, ...]}`.
Reference: haotian-liu/LLaVA `scripts/v1_5/{pretrain,finetune,finetune_lora}.sh` for the paper recipes.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from llava_model.config import PROJECTORS
from llava_model.conversation import TEMPLATES
from llava_types import UserError

RECIPE_DIR = Path(__file__).parent / "recipes"
DEEPSPEED_DIR = Path(__file__).parent / "configs"

IMAGE_MODES = ("crop", "pad", "anyres")
DEEPSPEED_CONFIGS = ("zero2", "zero3")


class RecipeError(UserError):
    """A recipe that does not exist, cannot be parsed, or holds an invalid value."""


@dataclass(frozen=True)
class LoraSpec:
    r: int  # LoRA rank
    alpha: int  # LoRA scaling numerator (the update is scaled by alpha / r)
    dropout: float  # dropout on the LoRA branch's input


@dataclass(frozen=True, kw_only=True)
class StageRecipe:
    stage: int  # 1 = feature alignment (projector only), 2 = visual instruction tuning (projector + LLM)
    template: str  # the samples' conversation template, recorded in the result: "plain" (stage 1, the original's
    # --version plain), "vicuna_v1" (stage 2, --version v1) or "llava_v1"
    image_mode: str  # "crop" (resize + center crop, the original's "square"), "pad" (expand to square first) or
    # "anyres" (LLaVA-NeXT's grid of tiles + the whole image: the tiny-hd recipe)
    data_path: str  # LLaVA JSON/JSONL file, or "synthetic:stage1" / "synthetic:stage2" (the trainer generates it)
    image_folder: str | None  # folder the samples' "image" paths are relative to (None for synthetic data)
    model_init: str  # LLM to start from: HF id or local path (the stage-1 projector is chained in), or a preset name
    vision_tower: str | None  # CLIP vision tower: HF id or local path; None when model_init is a preset (it has one)
    projector: str = "mlp2x_gelu"  # projector the model is built with: "mlp2x_gelu" (LLaVA-1.5) or "linear" (ablation)
    global_batch_size: int  # samples per optimizer step over all ranks
    per_device_batch_size: int  # samples per forward pass on one rank
    gradient_accumulation_steps: int = 1  # forward passes per optimizer step
    learning_rate: float  # peak LR (of the LoRA weights when lora is set)
    projector_lr: float | None = None  # separate peak LR of the projector (the original's mm_projector_lr, LoRA)
    lr_scheduler: str = "cosine"  # HF Trainer lr_scheduler_type
    warmup_ratio: float = 0.03  # fraction of the steps with linear warmup
    weight_decay: float = 0.0  # AdamW weight decay
    epochs: float = 1.0  # passes over the data
    max_length: int = 2048  # token limit per sample (model_max_length), image tokens included
    group_by_modality_length: bool = False  # single-modality steps (train/sampler.py) instead of a plain shuffle
    deepspeed: str | None = None  # DeepSpeed config in train/configs ("zero2", "zero3"), or None for none
    bf16: bool = False  # bfloat16 mixed precision (float32 otherwise)
    gradient_checkpointing: bool = False  # recompute activations in backward to save memory
    lora: LoraSpec | None = None  # LoRA on the LLM's linear layers instead of full fine-tuning (stage 2)
    save_steps: int = 500  # checkpoint every this many optimizer steps
    unfreeze_vision: bool = False  # also train the CLIP tower (frozen in both stages of the paper)
    data_fraction: float = 1.0  # train on a seeded random subset of this fraction of the data
    logging_steps: int = 10  # log loss and learning rate every this many optimizer steps
    pad_to_multiple_of: int = 1  # pad batch length up to a multiple of this (1 = longest, as the original)
    seed: int = 42  # seed of the Trainer, the data subset and the sampler
    continues: bool = False  # a further stage-2 pass (a curriculum) from the previous entry's final model, which
    # replaces model_init; it needs its own `name`
    name: str | None = None  # output folder of the stage (default "stage1" / "stage2")

    def __post_init__(self):
        _check_choice("stage", self.stage, (1, 2))
        _check_choice("template", self.template, tuple(TEMPLATES))
        _check_choice("image_mode", self.image_mode, IMAGE_MODES)
        _check_choice("projector", self.projector, PROJECTORS)
        _check_choice("deepspeed", self.deepspeed, (None, *DEEPSPEED_CONFIGS))
        for name in ("global_batch_size", "per_device_batch_size", "gradient_accumulation_steps", "max_length",
                     "save_steps", "learning_rate", "epochs"):
            if getattr(self, name) <= 0:
                raise RecipeError(f"{name} must be positive, got {getattr(self, name)}")
        step = self.per_device_batch_size * self.gradient_accumulation_steps
        if self.global_batch_size % step:
            raise RecipeError(f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size"
                              f" x gradient_accumulation_steps = {step}")
        if not 0 < self.data_fraction <= 1:
            raise RecipeError(f"data_fraction must be in (0, 1], got {self.data_fraction}")
        if not 0 <= self.warmup_ratio < 1:
            raise RecipeError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lora is not None and self.stage != 2:
            raise RecipeError("lora is for stage 2 (stage 1 trains the projector only)")
        if self.continues and (self.stage != 2 or not self.name):
            raise RecipeError("continues is for a further stage-2 entry, which needs its own name")
        if self.name is not None and not self.name.replace("-", "").replace("_", "").isalnum():
            raise RecipeError(f"name must be a folder name of letters, digits, - and _; got {self.name!r}")

    @property
    def folder(self) -> str:
        """The stage's output folder under the run's --out."""
        return self.name or f"stage{self.stage}"

    @property
    def world_size(self) -> int:
        """Number of processes the global batch assumes (8 GPUs for the paper recipes)."""
        return self.global_batch_size // (self.per_device_batch_size * self.gradient_accumulation_steps)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    stages: tuple[StageRecipe, ...]


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise RecipeError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def recipe_names() -> list[str]:
    """Names of the bundled recipes."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def deepspeed_config_path(name: str) -> Path:
    """Path of a bundled DeepSpeed config ("zero2" or "zero3")."""
    _check_choice("deepspeed", name, DEEPSPEED_CONFIGS)
    return DEEPSPEED_DIR / f"{name}.json"


def load_recipe(name_or_path: str | Path) -> list[StageRecipe]:
    """The stages of a bundled recipe (by name) or of a recipe file (by path)."""
    return list(read_recipe(name_or_path).stages)


def read_recipe(name_or_path: str | Path) -> Recipe:
    path = _resolve(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise RecipeError(f"recipe {path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise RecipeError(f"recipe {path}: expected a JSON object with a non-empty \"stages\" list")
    unknown = set(data) - {"name", "description", "stages"}
    if unknown:
        raise RecipeError(f"recipe {path}: unknown keys {', '.join(sorted(unknown))}")
    stages = tuple(_stage(s, f"recipe {path}, stage entry {i}") for i, s in enumerate(data["stages"]))
    numbers = [s.stage for s in stages if not s.continues]
    if numbers != sorted(set(numbers)) or stages[0].continues:
        raise RecipeError(f"recipe {path}: stages must be listed once each in order (a `continues` entry after "
                          f"the stage it continues), got {[s.stage for s in stages]}")
    folders = [s.folder for s in stages]
    if len(set(folders)) != len(folders):
        raise RecipeError(f"recipe {path}: two stages write to the same folder: {folders}")
    return Recipe(name=str(data.get("name", path.stem)), description=str(data.get("description", "")),
                  stages=stages)


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".json") or "/" in text or "\\" in text:
        path = Path(name_or_path)
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        return path
    if text not in recipe_names():
        raise RecipeError(f"unknown recipe {text!r}; valid recipes: {', '.join(recipe_names())} "
                          "(or give the path of a recipe .json file)")
    return RECIPE_DIR / f"{text}.json"


def _stage(raw, where: str) -> StageRecipe:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a JSON object")
    hints = typing.get_type_hints(StageRecipe)
    known = {f.name for f in fields(StageRecipe)}
    unknown = set(raw) - known
    if unknown:
        raise RecipeError(f"{where}: unknown fields {', '.join(sorted(unknown))}; valid: {', '.join(sorted(known))}")
    values = {name: _typed(name, value, hints[name], where) for name, value in raw.items()}
    if isinstance(values.get("lora"), dict):
        lora = values["lora"]
        if set(lora) != {"r", "alpha", "dropout"}:
            raise RecipeError(f"{where}: lora needs exactly the keys r, alpha, dropout; got {sorted(lora)}")
        values["lora"] = LoraSpec(r=_typed("lora.r", lora["r"], int, where),
                                  alpha=_typed("lora.alpha", lora["alpha"], int, where),
                                  dropout=_typed("lora.dropout", lora["dropout"], float, where))
    try:
        return StageRecipe(**values)
    except TypeError as exc:  # a required field is missing
        raise RecipeError(f"{where}: {exc}") from None
    except RecipeError as exc:
        raise RecipeError(f"{where}: {exc}") from None


def _typed(name: str, value, hint, where: str):
    """`value` checked against a field's type; an int where a float is expected becomes a float."""
    allowed = typing.get_args(hint) or (hint,)
    allowed = tuple(dict if a is LoraSpec else a for a in allowed)  # lora arrives as a JSON object
    if isinstance(value, bool) and bool not in allowed:
        raise RecipeError(f"{where}: {name} must be {_type_names(allowed)}, got {value!r}")
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, allowed):
        raise RecipeError(f"{where}: {name} must be {_type_names(allowed)}, got {value!r}")
    return value


def _type_names(types: tuple) -> str:
    return " or ".join("null" if t is type(None) else "an object" if t is dict else t.__name__ for t in types)
