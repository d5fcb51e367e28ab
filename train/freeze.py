"""Which parts of LLaVA train in which stage: stage 1 (feature alignment) trains the projector only;
stage 2 (visual instruction tuning) the projector and the whole LLM (and LLaVA-NeXT's image_newline). The
CLIP tower stays frozen in both unless asked otherwise. Works on transformers' `LlavaForConditionalGeneration`
(and `LlavaNextForConditionalGeneration`) and on a peft (LoRA) wrapper of it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

COMPONENTS = ("vision_tower", "multi_modal_projector", "language_model", "lm_head")


def components(model: nn.Module) -> dict[str, nn.Module]:
    """The four parts of a LLaVA model (transformers 5 layout), looking through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model
    try:
        inner = base.model
        return {"vision_tower": inner.vision_tower, "multi_modal_projector": inner.multi_modal_projector,
                "language_model": inner.language_model, "lm_head": base.lm_head}
    except AttributeError as exc:
        raise TypeError(f"not a LlavaForConditionalGeneration (transformers 5 layout): {exc}") from None


def _numel(p) -> int:
    # Under ZeRO-3 a partitioned parameter has numel() 0; ds_numel is its full size.
    return getattr(p, "ds_numel", None) or p.numel()


def freeze_for_stage(model: nn.Module, stage: int, unfreeze_vision: bool = False,
                     log: Callable[[str], object] = print) -> dict[str, bool]:
    """Set requires_grad for `stage` and log one line per component; returns component -> trainable.

    Reference: llava/train/train.py train(): stage 1 (`tune_mm_mlp_adapter`) does
    `model.requires_grad_(False)` then unfreezes `mm_projector`; stage 2 leaves the LLM and projector
    trainable; the CLIP tower is frozen in `CLIPVisionTower.load_model` (`requires_grad_(False)`) in both.
    With a peft model, only the LoRA weights of the LLM train (its base weights and lm_head stay frozen,
    as in finetune_lora.sh) and the projector trains in full (its copy in peft's `modules_to_save`
    when present, the original module then stays frozen).
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    parts = components(model)
    is_peft = hasattr(model, "peft_config")
    wanted = {"vision_tower": unfreeze_vision, "multi_modal_projector": True,
              "language_model": stage == 2, "lm_head": stage == 2}
    model.requires_grad_(False)
    result = {}
    for name in COMPONENTS:
        module = parts[name]
        if wanted[name]:
            for pname, p in module.named_parameters():
                p.requires_grad_(_trains_when_wanted(name, pname, is_peft))
        params = list(module.parameters())
        n_train = sum(_numel(p) for p in params if p.requires_grad)
        n_total = sum(_numel(p) for p in params)
        result[name] = n_train > 0
        if not result[name]:
            log(f"{name}: Frozen ({n_total:,} params)")
        elif n_train == n_total:
            log(f"{name}: Trainable ({n_total:,} params)")
        else:
            log(f"{name}: Trainable ({n_train:,} of {n_total:,} params)")
    newline = _image_newline(model)
    if newline is not None:
        # Reference: train.py: stage 1 unfreezes mm_projector alone; in stage 2 every parameter of the LLaVA model
        # outside the tower trains, LLaVA-NeXT's image_newline included (LoRA trains adapters and the projector).
        newline.requires_grad_(stage == 2 and not is_peft)
        result["image_newline"] = newline.requires_grad
        log(f"image_newline: {'Trainable' if newline.requires_grad else 'Frozen'} ({_numel(newline):,} params)")
    return result


def _image_newline(model: nn.Module):
    """LLaVA-NeXT's row-end vector (None for LLaVA-1.5), looking through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model
    newline = getattr(base.model, "image_newline", None)
    return newline if isinstance(newline, nn.Parameter) else None


def _trains_when_wanted(component: str, param_name: str, is_peft: bool) -> bool:
    if not is_peft:
        return True
    if "lora_" in param_name:
        return True
    if component in ("language_model", "lm_head"):
        return False  # LoRA trains adapters, not the base weights
    # peft's ModulesToSaveWrapper keeps the untouched original next to the trained copy.
    return "original_module" not in param_name
