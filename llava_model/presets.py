"""Model presets: functions that return transformers configs for LLaVA-1.5 and its paper ablations
(made by `llava_model.config.build_llava_config`); `llava_model.model.build_llava` turns one into a
`LlavaForConditionalGeneration` with random weights.

Reference: protocol (LLaVA-1.5 paper, section 1): CLIP ViT-L/14-336, penultimate layer, CLS dropped,
576 tokens, `mlp2x_gelu` projector, Vicuna-v1.5 LLM; `haotian-liu/LLaVA` `scripts/v1_5/*.sh`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import build_llava_config

# Reference: config.json of lmsys/vicuna-{7,13}b-v1.5 (Llama-2 shapes, vocab 32000, 4096 positions).
VICUNA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5)
VICUNA_13B = dict(VICUNA_7B, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                  num_attention_heads=40, num_key_value_heads=40)
# Reference: openai/clip-vit-large-patch14-336 vision config (and its 224 px sibling).
CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  patch_size=14, image_size=336, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5)
CLIP_L_224 = dict(CLIP_L_336, image_size=224)
# Small enough that a forward pass on CPU takes milliseconds; same image geometry (336 px, 576 tokens)
# so preprocessing and prompt lengths are those of the real model.
TINY_TEXT = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5)
TINY_VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                   patch_size=14, image_size=336, projection_dim=64, hidden_act="quick_gelu", layer_norm_eps=1e-5)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    text: dict = field(repr=False)
    vision: dict = field(repr=False)
    projector: str = "mlp2x_gelu"  # or "linear" (LLaVA v1 / paper ablation)
    template: str = "vicuna_v1"
    image_mode: str = "pad"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("llava-v1.5-7b", "LLaVA-1.5 7B: CLIP-L/336 + mlp2x_gelu + Vicuna-7B v1.5", VICUNA_7B, CLIP_L_336),
        Preset("llava-v1.5-13b", "LLaVA-1.5 13B: CLIP-L/336 + mlp2x_gelu + Vicuna-13B v1.5", VICUNA_13B, CLIP_L_336),
        Preset("llava-v1.5-7b-linear", "paper ablation: linear projector (as LLaVA v1)", VICUNA_7B, CLIP_L_336,
               projector="linear"),
        Preset("llava-v1.5-7b-224", "paper ablation: CLIP-L/224 input (256 image tokens)", VICUNA_7B, CLIP_L_224),
        Preset("tiny", "tiny random LLaVA with the real geometry (336 px, 576 tokens) for tests", TINY_TEXT,
               TINY_VISION),
        Preset("tiny-112", "tiny LLaVA at 112 px (64 image tokens): the base of the shipped tiny-shapes checkpoint, "
               "small enough to train on a laptop CPU in minutes", TINY_TEXT, dict(TINY_VISION, image_size=112)),
    )
}


def get_preset(name: str) -> Preset:
    from .errors import UserError

    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)}") from None


def image_seq_length(vision: dict) -> int:
    return (vision["image_size"] // vision["patch_size"]) ** 2


def llava_config(preset: Preset, vocab_size: int | None = None, image_token_id: int | None = None,
                 pad_token_id: int = 0):
    """LlavaConfig for a preset. `vocab_size` overrides the text vocabulary (the tiny model's comes from
    its tokenizer); `image_token_id` defaults to the first id past the text vocabulary."""
    from transformers import CLIPVisionConfig, LlamaConfig

    text = dict(preset.text)
    if vocab_size is not None:
        text["vocab_size"] = vocab_size
    text_cfg = LlamaConfig(**text, pad_token_id=pad_token_id, bos_token_id=1, eos_token_id=2,
                           tie_word_embeddings=False)
    return build_llava_config(text_cfg, CLIPVisionConfig(**preset.vision), projector=preset.projector,
                              template=preset.template, image_mode=preset.image_mode, image_token_id=image_token_id)


def llava_v15_7b():
    """LlavaConfig of LLaVA-1.5-7B."""
    return llava_config(PRESETS["llava-v1.5-7b"])


def llava_v15_13b():
    """LlavaConfig of LLaVA-1.5-13B."""
    return llava_config(PRESETS["llava-v1.5-13b"])


def llava_v15_7b_linear():
    """LlavaConfig of the paper's linear-projector ablation (7B)."""
    return llava_config(PRESETS["llava-v1.5-7b-linear"])


def llava_v15_7b_224():
    """LlavaConfig of the paper's 224 px ablation (7B, 256 image tokens)."""
    return llava_config(PRESETS["llava-v1.5-7b-224"])
