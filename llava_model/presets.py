"""Model presets: functions that return transformers configs for LLaVA-1.5 and its paper ablations
(made by `llava_model.config.build_llava_config`; `llava_model.model.build_llava` turns one into a
`LlavaForConditionalGeneration` with random weights), and, in `NEXT_PRESETS`, models on transformers'
LLaVA-NeXT machinery (`build_next_config`): the paper's LLaVA-1.5-HD and LLaVA-NeXT shapes.

Reference: protocol (LLaVA-1.5 paper, section 1): CLIP ViT-L/14-336, penultimate layer, CLS dropped,
576 tokens, `mlp2x_gelu` projector, Vicuna-v1.5 LLM; `haotian-liu/LLaVA` `scripts/v1_5/*.sh`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import build_llava_config, build_next_config

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
    grid_pinpoints: tuple = ()  # anyres grids as [width, height] pairs (NEXT_PRESETS); empty: one square image


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
        Preset("tiny-112", "tiny LLaVA at 112 px (64 image tokens), small enough to train on a laptop CPU in "
               "minutes", TINY_TEXT, dict(TINY_VISION, image_size=112)),
        Preset("tiny-112-p28", "tiny LLaVA at 112 px with 28 px patches (16 image tokens): the base of the shipped "
               "tiny-shapes checkpoint; fewer image tokens make the question-to-image lookup learnable on a CPU "
               "(docs/benchmarks.md)", TINY_TEXT, dict(TINY_VISION, image_size=112, patch_size=28)),
    )
}




def _grids(tile: int, most: int) -> tuple:
    """Every grid of at most `most` tiles and at most 3 tiles along a side, one tile first, as
    [width, height] pairs (a single tile keeps small images from tying between mirrored grids)."""
    shapes = sorted(((c, r) for c in (1, 2, 3) for r in (1, 2, 3) if c * r <= most), key=lambda s: (s[0] * s[1], -s[0]))
    return tuple((c * tile, r * tile) for c, r in shapes)


# Reference: liuhaotian/llava-v1.6-* config.json image_grid_pinpoints (2x1, 1x2, 2x2, 3x1 and 1x3 tiles of 336).
NEXT_GRIDS_336 = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))
# Reference: protocol section 4 (paper appendix, LLaVA-1.5-HD): CLIP-ViT-L/14-224 tiles, up to 6 of them and at
# most 672x448, plus the whole image at 224 px; the paper's table lists it at 448 px (the 2x2 grid).
HD_GRIDS_224 = _grids(224, 6)
NEXT_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("llava-v1.5-13b-hd", "LLaVA-1.5-13B-HD (paper): CLIP-L/224 tiles, up to 6 of them (672x448) + the "
               "whole image, spatial_unpad + image_newline, mlp2x_gelu, Vicuna-13B v1.5", VICUNA_13B, CLIP_L_224,
               image_mode="anyres", grid_pinpoints=HD_GRIDS_224),
        Preset("llava-v1.6-vicuna-7b", "LLaVA-NeXT 7B shapes: CLIP-L/336 anyres over the five 1.6 grids, "
               "mlp2x_gelu, Vicuna-7B v1.5", VICUNA_7B, CLIP_L_336, image_mode="anyres",
               grid_pinpoints=NEXT_GRIDS_336),
        Preset("tiny-hd", "tiny random LLaVA-1.5-HD: the tiny LLaVA's 112 px tower as tiles, up to 6 (336x224) + "
               "the whole image", TINY_TEXT, dict(TINY_VISION, image_size=112), image_mode="anyres",
               grid_pinpoints=_grids(112, 6)),
        Preset("tiny-next", "tiny random LLaVA-NeXT with the real geometry (336 px tiles, the five 1.6 grids)",
               TINY_TEXT, TINY_VISION, image_mode="anyres", grid_pinpoints=NEXT_GRIDS_336),
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


def next_config(preset: Preset, vocab_size: int | None = None, image_token_id: int | None = None,
                pad_token_id: int = 0):
    """LlavaNextConfig for a preset of NEXT_PRESETS (arguments as `llava_config`)."""
    from transformers import CLIPVisionConfig, LlamaConfig

    text = dict(preset.text) | ({"vocab_size": vocab_size} if vocab_size is not None else {})
    text_cfg = LlamaConfig(**text, pad_token_id=pad_token_id, bos_token_id=1, eos_token_id=2,
                           tie_word_embeddings=False)
    return build_next_config(text_cfg, CLIPVisionConfig(**preset.vision), grid_pinpoints=list(preset.grid_pinpoints),
                             template=preset.template, image_token_id=image_token_id)


def llava_v15_13b_hd():
    """LlavaNextConfig of the paper's LLaVA-1.5-13B-HD."""
    return next_config(NEXT_PRESETS["llava-v1.5-13b-hd"])


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
