"""The starting model of a stage is the one its recipe describes: the projector type the recipe names,
its template and image mode recorded in the config, and (for an LLM folder plus a CLIP tower) the same
LlavaConfig as before the one config builder (`llm_and_tower_config.json`, recorded from it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.llava_model.test_config import comparable
from train.recipes import load_recipe
from train.trainer import init_bundle

RECORDS = ("llava_projector", "llava_template", "image_aspect_ratio")
LINEAR_KEYS = ["model.multi_modal_projector.linear_1.bias", "model.multi_modal_projector.linear_1.weight"]


def projector_keys(names) -> list[str]:
    return sorted(k for k in names if k.startswith("model.multi_modal_projector."))


def from_llm(llm_and_tower, stage: int, **changes):
    llm, tower = llm_and_tower
    recipe = load_recipe("tiny-shapes")[stage - 1]
    return dataclasses.replace(recipe, model_init=str(llm), vision_tower=str(tower), **changes)


def test_llm_and_tower_config_is_unchanged(llm_and_tower):
    config = comparable(init_bundle(from_llm(llm_and_tower, 2)).model.config.to_dict())
    recorded = json.loads(Path(__file__).with_name("llm_and_tower_config.json").read_text())
    assert json.loads(json.dumps({k: v for k, v in config.items() if k not in RECORDS})) == recorded


def test_recipe_projector_linear_on_a_preset():
    recipe = dataclasses.replace(load_recipe("tiny-shapes")[0], projector="linear")
    model = init_bundle(recipe).model
    assert projector_keys(model.state_dict()) == LINEAR_KEYS and model.config.llava_projector == "linear"


def test_recipe_projector_linear_on_an_llm_and_tower(llm_and_tower):
    model = init_bundle(from_llm(llm_and_tower, 1, projector="linear")).model
    assert projector_keys(model.state_dict()) == LINEAR_KEYS


def test_llm_and_tower_config_records_the_recipe(llm_and_tower):
    bundle = init_bundle(from_llm(llm_and_tower, 1))
    config = bundle.model.config
    assert (config.llava_projector, config.llava_template, config.image_aspect_ratio) == ("mlp2x_gelu", "plain", "crop")
    assert (bundle.template.name, bundle.image_mode) == ("plain", "crop")


def test_a_trained_projector_is_not_swapped():
    from llava_model.checkpoint import BUILTIN_CHECKPOINTS
    from llava_types import UserError

    recipe = dataclasses.replace(load_recipe("tiny-shapes")[1], model_init=str(BUILTIN_CHECKPOINTS["tiny-shapes"]),
                                 projector="linear")
    with pytest.raises(UserError, match="holds a mlp2x_gelu projector but the recipe asks for linear"):
        init_bundle(recipe)


def test_the_recipe_template_renders_the_samples():
    """Stage 2 with the stage-1 template encodes as stage 1 does; llava_v1 renders its own system prompt."""
    from llava_model.conversation import LLAVA_V1, VICUNA_V1
    from train.data import Sample
    from train.masking import encode_plain
    from train.trainer import ConversationDataset

    sample = Sample("s", "x.png", (("human", "<image>\nDescribe the picture."), ("gpt", "A red circle.")))
    bundle = init_bundle(dataclasses.replace(load_recipe("tiny-shapes")[1], template="plain"))
    expected = encode_plain(sample.turns, bundle.tokenizer, bundle.image_token_id, bundle.image_seq_length, 1024)
    assert ConversationDataset([sample], None, bundle, 1024).encode(sample) == expected
    bundle = init_bundle(dataclasses.replace(load_recipe("tiny-shapes")[1], template="llava_v1"))
    ids = ConversationDataset([sample], None, bundle, 1024).encode(sample).input_ids
    text = bundle.tokenizer.decode([i for i in ids if i != bundle.image_token_id])
    assert LLAVA_V1.system in text and VICUNA_V1.system not in text
