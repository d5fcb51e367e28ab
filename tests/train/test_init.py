"""The starting model of a stage is the one its recipe describes: the projector type the recipe names,
its template and image mode recorded in the config, and (for an LLM folder plus a CLIP tower) the same
LlavaConfig as before the one config builder (`llm_and_tower_config.json`, recorded from it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tests.llava_model.test_config import comparable
from train.recipes import load_recipe
from train.trainer import init_bundle

RECORDS = ("llava_projector", "llava_template", "image_aspect_ratio")


def from_llm(llm_and_tower, stage: int, **changes):
    llm, tower = llm_and_tower
    recipe = load_recipe("tiny-shapes")[stage - 1]
    return dataclasses.replace(recipe, model_init=str(llm), vision_tower=str(tower), **changes)


def test_llm_and_tower_config_is_unchanged(llm_and_tower):
    config = comparable(init_bundle(from_llm(llm_and_tower, 2)).model.config.to_dict())
    recorded = json.loads(Path(__file__).with_name("llm_and_tower_config.json").read_text())
    assert json.loads(json.dumps({k: v for k, v in config.items() if k not in RECORDS})) == recorded
