"""Stage freezing: stage 1 trains the projector only, stage 2 the projector and the whole LLM, the
vision tower only on request; one log line per component; a peft (LoRA) wrapper trains adapters only."""

from __future__ import annotations

import pytest
from torch import nn

from llava_model.model import build_llava
from llava_model.presets import get_preset, llava_config
from train.freeze import COMPONENTS, components, freeze_for_stage


@pytest.fixture(scope="module")
def model():
    return build_llava(llava_config(get_preset("tiny"), vocab_size=64))


def _trainable_prefixes(model) -> set[str]:
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    prefixes = ("model.vision_tower.", "model.multi_modal_projector.", "model.language_model.", "lm_head.")
    return {next(pre for pre in prefixes if n.startswith(pre)) for n in names}


def _all_trainable(module: nn.Module) -> bool:
    return all(p.requires_grad for p in module.parameters())


def test_stage1_trains_projector_only(model):
    lines = []
    result = freeze_for_stage(model, 1, log=lines.append)
    assert result == {"vision_tower": False, "multi_modal_projector": True, "language_model": False, "lm_head": False}
    assert _trainable_prefixes(model) == {"model.multi_modal_projector."}
    assert _all_trainable(model.model.multi_modal_projector)
    n_proj = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    assert lines[1] == f"multi_modal_projector: Trainable ({n_proj:,} params)"
    n_vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    assert lines[0] == f"vision_tower: Frozen ({n_vision:,} params)"


def test_stage2_trains_projector_and_whole_llm(model):
    lines = []
    result = freeze_for_stage(model, 2, log=lines.append)
    assert result == {"vision_tower": False, "multi_modal_projector": True, "language_model": True, "lm_head": True}
    assert _trainable_prefixes(model) == {"model.multi_modal_projector.", "model.language_model.", "lm_head."}
    lm = model.model.language_model
    # Embeddings, every layer and the final norm: the whole LLM.
    assert _all_trainable(lm) and lm.embed_tokens.weight.requires_grad and lm.norm.weight.requires_grad
    assert model.lm_head.weight.requires_grad
    assert [line.split(":")[0] for line in lines] == list(COMPONENTS)
    assert lines[0].startswith("vision_tower: Frozen") and all("Trainable" in line for line in lines[1:])


@pytest.mark.parametrize("stage", [1, 2])
def test_unfreeze_vision(model, stage):
    result = freeze_for_stage(model, stage, unfreeze_vision=True, log=lambda _: None)
    assert result["vision_tower"] and _all_trainable(model.model.vision_tower)
    assert result["language_model"] == (stage == 2)


def test_stage_switch_refreezes(model):
    freeze_for_stage(model, 2, unfreeze_vision=True, log=lambda _: None)
    freeze_for_stage(model, 1, log=lambda _: None)
    assert _trainable_prefixes(model) == {"model.multi_modal_projector."}


def test_bad_input(model):
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        freeze_for_stage(model, 3, log=lambda _: None)
    with pytest.raises(TypeError, match="LlavaForConditionalGeneration"):
        components(nn.Linear(2, 2))


def test_peft_lora_trains_adapters_and_projector():
    from peft import LoraConfig, get_peft_model

    base = build_llava(llava_config(get_preset("tiny"), vocab_size=64))
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05,
                        target_modules=r".*language_model.*\.(q|k|v|o|gate|up|down)_proj",
                        modules_to_save=["multi_modal_projector"])
    wrapped = get_peft_model(base, config)
    lines = []
    result = freeze_for_stage(wrapped, 2, log=lines.append)
    assert result == {"vision_tower": False, "multi_modal_projector": True, "language_model": True, "lm_head": False}
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any("modules_to_save" in n for n in trainable) and any("lora_" in n for n in trainable)
    assert " of " in lines[2]  # language_model: only the adapters of its parameters train
