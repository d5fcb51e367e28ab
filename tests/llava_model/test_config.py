"""Every LlavaConfig the project builds (each preset, the conversion of original checkpoints) equals the
recorded one in `llava_configs.jsonl`, key for key: the configs are built in one place, and moving that
place must not change a field. Regenerate the file only for a deliberate config change:
`python -m tests.llava_model.test_config`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava_model.presets import CLIP_L_336, PRESETS, TINY_TEXT, TINY_VISION, VICUNA_7B, get_preset, llava_config

GOLDEN = Path(__file__).with_name("llava_configs.jsonl")
TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)


def original_config(text: dict, vision: dict, **mm) -> dict:
    """config.json of an original LLaVA-1.5 checkpoint (`LlavaLlamaForCausalLM` with mm_* fields)."""
    config = {"architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava", **text, **TOKENS,
              "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "float16",
              "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_hidden_size": vision["hidden_size"],
              "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
              "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "image_aspect_ratio": "pad",
              "use_mm_proj": True, "tune_mm_mlp_adapter": False, "tokenizer_model_max_length": 2048}
    config.update(mm)
    return {k: v for k, v in config.items() if v is not None}


TINY_768 = dict(TINY_TEXT, vocab_size=768)
ORIGINALS = {
    "original:tiny": (TINY_768, TINY_VISION, {}),
    "original:tiny-linear-cls-patch-layer-1-square": (
        TINY_768, TINY_VISION, dict(mm_projector_type="linear", mm_vision_select_feature="cls_patch",
                                    mm_vision_select_layer=-1, image_aspect_ratio=None)),
    "original:tiny-no-projector-type": (TINY_768, TINY_VISION, dict(mm_projector_type=None)),
    "original:vicuna-7b-clip-l-336": (VICUNA_7B, CLIP_L_336, {}),
}


CASES = [*(f"preset:{name}" for name in PRESETS), "preset:tiny-with-tokenizer", *ORIGINALS]


def build(case: str) -> dict:
    """The config of one case, as `to_dict()` minus version stamps."""
    from transformers import CLIPVisionConfig

    from llava_model.checkpoint import _original_llava_config

    if case == "preset:tiny-with-tokenizer":
        cfg = llava_config(get_preset("tiny"), vocab_size=1000, image_token_id=999, pad_token_id=3)
    elif case.startswith("preset:"):
        cfg = llava_config(PRESETS[case.removeprefix("preset:")])
    else:
        text, vision, mm = ORIGINALS[case]
        cfg = _original_llava_config(original_config(text, vision, **mm), CLIPVisionConfig(**vision))
    return comparable(cfg.to_dict())


def comparable(config: dict) -> dict:
    """The config without the transformers version stamps (which change with no field changing)."""
    return {k: comparable(v) if isinstance(v, dict) else v for k, v in config.items() if k != "transformers_version"}


def golden() -> dict[str, dict]:
    rows = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    return {row["case"]: row["config"] for row in rows}


def test_every_case_is_recorded():
    assert sorted(golden()) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_config_equals_the_recorded_one(case):
    # JSON round trip: the recorded file has lists where a config holds tuples.
    assert json.loads(json.dumps(build(case))) == golden()[case]


if __name__ == "__main__":
    GOLDEN.write_text("".join(json.dumps({"case": case, "config": build(case)}, sort_keys=True) + "\n"
                              for case in CASES))
