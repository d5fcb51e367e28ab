"""The one builder of a `LlavaConfig` (and of a `LlavaNextConfig`): presets, the conversion of original
checkpoints and the trainer's LLM + CLIP tower all make theirs with `build_llava_config` (`build_next_config`),
so they cannot drift apart. `is_next_config` tells a LLaVA-NeXT checkpoint's config.json from a LLaVA-1.5 one.

Besides transformers' fields a config records three of ours: `llava_projector` (which projector module
the model holds), `llava_template` and `image_aspect_ratio` (how the checkpoint is prompted).
"""

from __future__ import annotations

# Reference: haotian-liu/LLaVA `llava/model/multimodal_projector/builder.py` (`mm_projector_type`).
PROJECTORS = ("mlp2x_gelu", "linear")
# transformers' names for the original `mm_vision_select_feature` "patch" (CLS dropped) and "cls_patch".
SELECT_STRATEGIES = ("default", "full")
# Reference: llava/model/llava_arch.py: "spatial_unpad" (with image_aspect_ratio "anyres") is the merge of every
# LLaVA-1.6 release and the only one transformers' LlavaNext implements.
NEXT_PATCH_MERGE = "spatial_unpad"
# Bounds on a checkpoint's grid list (the 1.6 releases: 5 grids of at most 4 tiles), so that a hostile config
# cannot make one image thousands of tower passes.
MAX_GRIDS, MAX_GRID_TILES = 64, 64


def build_llava_config(text_config, vision_config, *, projector: str, template: str, image_mode: str,
                       image_token_id: int | None = None, feature_layer: int = -2,
                       select_strategy: str = "default"):
    """A LlavaConfig joining a `LlamaConfig` and a `CLIPVisionConfig` as LLaVA-1.5 does.

    `image_token_id` defaults to the first id past the text vocabulary, which never reaches the
    embedding table (see `llava_model.model.embed_inputs`): an original checkpoint's vocabulary has no
    image token. The image takes one position per patch, plus the CLS token with the "full" strategy.
    Reference: protocol section 1 (penultimate CLIP layer, CLS dropped, gelu projector with bias, untied
    LM head); haotian-liu/LLaVA `llava/model/llava_arch.py`.
    """
    from transformers import LlavaConfig

    if projector not in PROJECTORS:
        raise ValueError(f"unknown projector {projector!r}; valid: {', '.join(PROJECTORS)}")
    if select_strategy not in SELECT_STRATEGIES:
        raise ValueError(f"unknown feature select strategy {select_strategy!r}; valid: {', '.join(SELECT_STRATEGIES)}")
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    cfg = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=text_config.vocab_size if image_token_id is None else image_token_id,
        image_seq_length=patches + (1 if select_strategy == "full" else 0),
        vision_feature_layer=feature_layer,
        vision_feature_select_strategy=select_strategy,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )
    cfg.llava_projector = projector
    cfg.llava_template = template
    cfg.image_aspect_ratio = image_mode
    return cfg


def check_grid_pinpoints(value, tile: int) -> list[list[int]]:
    """`image_grid_pinpoints` as a list of [width, height] pairs, each a whole number of `tile`-pixel tiles
    (at most MAX_GRID_TILES of them); ValueError names what is wrong."""
    if not isinstance(value, (list, tuple)) or not 0 < len(value) <= MAX_GRIDS:
        raise ValueError(f"image_grid_pinpoints must be a list of 1 to {MAX_GRIDS} [width, height] pairs, got "
                         f"{str(value)[:80]}")
    grids = []
    for pair in value:
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % tile == 0 for v in pair)
        if not ok or (pair[0] // tile) * (pair[1] // tile) > MAX_GRID_TILES:
            raise ValueError(f"image_grid_pinpoints entry {str(pair)[:40]} is not a [width, height] pair of "
                             f"multiples of the {tile} px tile with at most {MAX_GRID_TILES} tiles")
        grids.append([pair[0], pair[1]])
    return grids


def build_next_config(text_config, vision_config, *, grid_pinpoints, template: str, image_token_id: int | None = None,
                      feature_layer: int = -2):
    """A LlavaNextConfig joining a text config and a `CLIPVisionConfig` as LLaVA-NeXT does: LLaVA-1.5's gelu
    projector with bias, CLS dropped, untied LM head, and the anyres grids `grid_pinpoints` ([width, height]
    pairs, multiples of the tower's image size) merged "spatial_unpad" with the `image_newline` vector.
    `image_seq_length` is the whole-image part (one tile); the grid adds a count that depends on the image.
    Reference: haotian-liu/LLaVA `llava/model/llava_arch.py`, liuhaotian/llava-v1.6-* config.json.
    """
    from transformers import LlavaNextConfig

    side = vision_config.image_size // vision_config.patch_size
    cfg = LlavaNextConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=text_config.vocab_size if image_token_id is None else image_token_id,
        image_grid_pinpoints=check_grid_pinpoints(grid_pinpoints, vision_config.image_size),
        image_seq_length=side * side,
        vision_feature_layer=feature_layer,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )
    cfg.llava_projector = "mlp2x_gelu"
    cfg.llava_template = template
    cfg.image_aspect_ratio = "anyres"
    return cfg


def is_next_config(config: dict) -> bool:
    """Whether a config.json is LLaVA-NeXT's: llava-hf (`model_type: llava_next`) or an original 1.6 checkpoint
    (mm_* fields with an anyres image aspect ratio, a spatial patch merge or a Mistral LLM)."""
    archs = config.get("architectures")
    archs = [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []
    if config.get("model_type") == "llava_next" or "LlavaNextForConditionalGeneration" in archs:
        return True
    if "mm_vision_tower" not in config and not any(a.startswith("Llava") and a.endswith("ForCausalLM") for a in archs):
        return False
    aspect, merge = config.get("image_aspect_ratio"), config.get("mm_patch_merge_type")
    return ((isinstance(aspect, str) and aspect.startswith("anyres")) or (isinstance(merge, str) and merge != "flat")
            or "LlavaMistralForCausalLM" in archs)
