"""The one builder of a `LlavaConfig`: presets, the conversion of original checkpoints and the trainer's
LLM + CLIP tower all make theirs with `build_llava_config`, so the three cannot drift apart.

Besides transformers' fields a config records three of ours: `llava_projector` (which projector module
the model holds), `llava_template` and `image_aspect_ratio` (how the checkpoint is prompted).
"""

from __future__ import annotations

# Reference: haotian-liu/LLaVA `llava/model/multimodal_projector/builder.py` (`mm_projector_type`).
PROJECTORS = ("mlp2x_gelu", "linear")
# transformers' names for the original `mm_vision_select_feature` "patch" (CLS dropped) and "cls_patch".
SELECT_STRATEGIES = ("default", "full")


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
