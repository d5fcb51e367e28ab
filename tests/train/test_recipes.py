"""Recipes: every bundled recipe loads; the paper recipes carry exactly the numbers of
scripts/v1_5/{pretrain,finetune,finetune_lora}.sh; bad names, files and values fail with a UserError."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from llava_types import UserError
from train.recipes import (
    RECIPE_DIR,
    LoraSpec,
    StageRecipe,
    deepspeed_config_path,
    load_recipe,
    read_recipe,
    recipe_names,
)

PAPER = ["llava-v1.5-7b", "llava-v1.5-13b", "llava-v1.5-7b-lora", "llava-v1.5-13b-lora"]


def test_bundled_recipes():
    assert recipe_names() == sorted([*PAPER, "tiny-shapes", "tiny-hd"])
    for name in recipe_names():
        recipe = read_recipe(name)
        assert recipe.name == name and recipe.description
        assert [s.stage for s in recipe.stages if not s.continues] == [1, 2]
        assert all(isinstance(s, StageRecipe) for s in load_recipe(name))


@pytest.mark.parametrize("name", PAPER)
def test_paper_stage1(name):
    size = "13b" if "13b" in name else "7b"
    s1 = load_recipe(name)[0]
    assert (s1.stage, s1.template, s1.image_mode) == (1, "plain", "crop")
    assert s1.data_path == "playground/data/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json"
    assert s1.image_folder == "playground/data/LLaVA-Pretrain/images"
    assert s1.model_init == f"lmsys/vicuna-{size}-v1.5"
    assert s1.vision_tower == "openai/clip-vit-large-patch14-336"
    assert s1.projector == "mlp2x_gelu"
    assert (s1.global_batch_size, s1.per_device_batch_size, s1.gradient_accumulation_steps) == (256, 32, 1)
    assert s1.world_size == 8
    assert s1.learning_rate == 1e-3 and s1.projector_lr is None
    assert (s1.lr_scheduler, s1.warmup_ratio, s1.weight_decay, s1.epochs) == ("cosine", 0.03, 0.0, 1)
    assert s1.max_length == 2048
    assert s1.group_by_modality_length is False
    assert s1.deepspeed == "zero2"
    assert s1.bf16 is True and s1.gradient_checkpointing is True
    assert s1.lora is None and s1.save_steps == 24000
    assert s1.unfreeze_vision is False and s1.data_fraction == 1.0 and s1.seed == 42


@pytest.mark.parametrize("name", PAPER)
def test_paper_stage2(name):
    size = "13b" if "13b" in name else "7b"
    s2 = load_recipe(name)[1]
    assert (s2.stage, s2.template, s2.image_mode) == (2, "vicuna_v1", "pad")
    assert s2.data_path == "playground/data/llava_v1_5_mix665k.json" and s2.image_folder == "playground/data"
    assert s2.model_init == f"lmsys/vicuna-{size}-v1.5"
    assert s2.vision_tower == "openai/clip-vit-large-patch14-336"
    assert (s2.global_batch_size, s2.per_device_batch_size, s2.gradient_accumulation_steps) == (128, 16, 1)
    assert s2.world_size == 8
    assert (s2.lr_scheduler, s2.warmup_ratio, s2.weight_decay, s2.epochs) == ("cosine", 0.03, 0.0, 1)
    assert s2.max_length == 2048 and s2.group_by_modality_length is True
    assert s2.deepspeed == "zero3"
    assert s2.bf16 is True and s2.gradient_checkpointing is True
    assert s2.save_steps == 50000 and s2.unfreeze_vision is False and s2.seed == 42
    if name.endswith("-lora"):
        assert s2.lora == LoraSpec(r=128, alpha=256, dropout=0.05)
        assert s2.learning_rate == 2e-4 and s2.projector_lr == 2e-5
    else:
        assert s2.lora is None
        assert s2.learning_rate == 2e-5 and s2.projector_lr is None


def test_lora_recipe_differs_from_full_only_in_lora_settings():
    for size in ("7b", "13b"):
        full, lora = load_recipe(f"llava-v1.5-{size}"), load_recipe(f"llava-v1.5-{size}-lora")
        assert lora[0] == full[0]
        assert replace(lora[1], lora=None, learning_rate=2e-5, projector_lr=None) == full[1]


def test_tiny_recipe():
    s1, s2, existence, finish = load_recipe("tiny-shapes")
    assert s1.data_path.startswith("synthetic:stage1:") and s2.data_path.startswith("synthetic:stage2:")
    assert s1.model_init == s2.model_init == "tiny-112-p28"  # 16 image tokens: the lookup is learnable
    assert (s1.template, s1.image_mode, s2.template, s2.image_mode) == ("plain", "crop", "vicuna_v1", "pad")
    for s in (s1, s2, existence, finish):
        assert s.deepspeed is None and s.bf16 is False and s.unfreeze_vision is True and s.world_size == 1
        assert s.learning_rate == 3e-4  # 1e-3 blocks the existence lookup (docs/benchmarks.md)
    # The curriculum: an existence-heavy pass at a constant rate, then a mixed pass annealed to zero.
    assert [s.folder for s in (existence, finish)] == ["stage2-existence", "stage2-finish"]
    assert existence.continues and existence.data_path.endswith(":existence") and existence.lr_scheduler == "constant"
    assert finish.continues and finish.data_path.endswith(":finish") and finish.lr_scheduler == "cosine"
    assert finish.warmup_ratio == existence.warmup_ratio == 0
    assert "unfreeze_vision" in read_recipe("tiny-shapes").description


def test_unknown_name_lists_valid_names():
    with pytest.raises(UserError) as info:
        load_recipe("llava-v2")
    for name in recipe_names():
        assert name in str(info.value)


def _write(tmp_path, stages, **extra):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "mine", "description": "d", "stages": stages, **extra}))
    return path


def _stage1() -> dict:
    return json.loads((RECIPE_DIR / "tiny-shapes.json").read_text())["stages"][0]


def test_recipe_from_path(tmp_path):
    stage = _stage1()
    stage.pop("seed")  # defaults fill what is left out
    (s,) = load_recipe(_write(tmp_path, [stage]))
    assert s.seed == 42 and isinstance(s.epochs, float)
    assert load_recipe(str(_write(tmp_path, [stage])))[0] == s


@pytest.mark.parametrize("change,message", [
    ({"stage": 3}, "stage must be one of"),
    ({"template": "v1"}, "template must be one of"),
    ({"image_mode": "square"}, "image_mode must be one of"),
    ({"deepspeed": "zero1"}, "deepspeed must be one of"),
    ({"global_batch_size": 20}, "not a multiple"),
    ({"learning_rate": "1e-3"}, "learning_rate must be float"),
    ({"bf16": 1}, "bf16 must be bool"),
    ({"epochs": True}, "epochs must be float"),
    ({"data_fraction": 0}, "data_fraction must be in"),
    ({"lora": {"r": 8, "alpha": 16, "dropout": 0.1}}, "lora is for stage 2"),
    ({"lr": 1e-3}, "unknown fields lr"),
])
def test_invalid_values(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        load_recipe(_write(tmp_path, [{**_stage1(), **change}]))


def test_invalid_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_recipe(tmp_path / "none.json")
    stage = _stage1()
    del stage["learning_rate"]
    with pytest.raises(UserError, match="learning_rate"):
        load_recipe(_write(tmp_path, [stage]))
    with pytest.raises(UserError, match="non-empty"):
        load_recipe(_write(tmp_path, []))
    with pytest.raises(UserError, match="unknown keys"):
        load_recipe(_write(tmp_path, [_stage1()], stage_count=1))
    with pytest.raises(UserError, match="in order"):
        load_recipe(_write(tmp_path, [{**_stage1(), "stage": 2, "template": "vicuna_v1"}, _stage1()]))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="invalid JSON"):
        load_recipe(tmp_path / "bad.json")


def test_deepspeed_configs():
    for name, stage in (("zero2", 2), ("zero3", 3)):
        config = json.loads(deepspeed_config_path(name).read_text())
        assert config["zero_optimization"]["stage"] == stage
        assert config["zero_allow_untested_optimizer"] is True
        assert config["train_micro_batch_size_per_gpu"] == config["train_batch_size"] == "auto"
        assert config["gradient_accumulation_steps"] == "auto"
        assert config["bf16"]["enabled"] == config["fp16"]["enabled"] == "auto"
    with pytest.raises(UserError):
        deepspeed_config_path("zero1")
