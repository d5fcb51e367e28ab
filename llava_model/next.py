"""Load LLaVA-NeXT (1.6) checkpoints into a `LlavaBundle` whose images go through anyres (`anyres.py`).

Formats: a preset of `NEXT_PRESETS` (random weights; the tiny ones have the built-in tokenizer), a llava-hf
directory (`model_type: llava_next`, `LlavaNextForConditionalGeneration`, safetensors), or an original
`liuhaotian/llava-v1.6-*` directory (`LlavaLlamaForCausalLM` / `LlavaMistralForCausalLM` with
`mm_patch_merge_type: spatial_unpad`, `image_aspect_ratio: anyres`, `image_grid_pinpoints`) converted in memory.
Each checkpoint is prompted with the template its release was evaluated with (`next_template`).
Reference: transformers `convert_llava_next_weights_to_hf.py` (key mapping, grids copied unchanged) and
haotian-liu/LLaVA `llava/model/builder.py`, `llava/eval/run_llava.py` (template by model).
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from .anyres import AnyresImages, anyres_image_processor
from .checkpoint import (
    BUNDLE_FILE,
    LlavaBundle,
    check_device,
    check_loading_info,
    convert_original_keys,
    default_device,
    load_state_dict_strict,
    place,
    recorded_setting,
    weights_dtype,
)
from .checkpoint_files import (
    check_safetensors,
    checkpoint_config,
    load_config,
    load_tokenizer,
    one_line,
    quiet_loading,
    read_json_object,
    read_weights,
)
from .config import NEXT_PATCH_MERGE, build_next_config, check_grid_pinpoints, is_next_config
from .conversation import ALL_TEMPLATES, Template, get_template
from .errors import CheckpointError
from .presets import NEXT_PRESETS, TINY_TEXT, next_config
from .vision_tower import tower_dir, vision_tower_weights

ANYRES = "anyres"


def load_next_bundle(spec: str, *, device: str | None = None, dtype: str | None = None, template: str | None = None,
                     vision_tower: str | None = None, seed: int = 0) -> LlavaBundle:
    """Load `spec` (a NEXT_PRESETS name or a checkpoint directory); `template` overrides the checkpoint's own,
    `vision_tower` points an original checkpoint at a local CLIP directory. Every argument is checked before
    anything loads; no code from the checkpoint ever runs."""
    device = check_device(device or default_device())
    torch_dtype = weights_dtype(dtype, device)
    override = get_template(template) if template else None
    path = Path(spec)
    if path.is_dir():
        config_file, config = checkpoint_config(path)
        if not is_next_config(config):
            raise CheckpointError(f"{config_file} is not a LLaVA-NeXT config (model_type llava_next, or an "
                                  "original 1.6 config with image_aspect_ratio anyres)")
        load = _load_hf if config.get("model_type") == "llava_next" else _load_original
        bundle = load(path, config, torch_dtype, override, vision_tower)
    elif spec in NEXT_PRESETS:
        bundle = _load_preset(spec, torch_dtype, seed)
    elif path.exists() or "/" in spec or spec.startswith("."):
        raise CheckpointError(f"model {spec!r} is not a checkpoint directory (missing or a file)")
    else:
        raise CheckpointError(f"unknown model {spec!r}: not a checkpoint directory or a LLaVA-NeXT preset "
                              f"({', '.join(NEXT_PRESETS)})")
    if override:
        bundle.template = override
    return place(bundle, device)


def build_llava_next(config, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A `LlavaNextForConditionalGeneration` with seeded random weights for `config`."""
    from transformers import LlavaNextForConditionalGeneration

    torch.manual_seed(seed)
    return LlavaNextForConditionalGeneration(config).to(dtype).eval()


def vision_of(config) -> AnyresImages:
    """The anyres inputs of a LlavaNextConfig (its grids, tile and patch sizes)."""
    return AnyresImages(config.image_grid_pinpoints, config.vision_config.image_size, config.vision_config.patch_size)


def _load_preset(name: str, torch_dtype: torch.dtype, seed: int) -> LlavaBundle:
    from .tiny_tokenizer import tiny_tokenizer

    preset = NEXT_PRESETS[name]
    if preset.text is not TINY_TEXT:
        raise CheckpointError(f"preset {name!r} has no bundled tokenizer or weights; pass a checkpoint directory "
                              "(build random weights in code with llava_model.presets.next_config for speed tests)")
    tok = tiny_tokenizer()
    cfg = next_config(preset, vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>"),
                      pad_token_id=tok.pad_token_id)
    model = build_llava_next(cfg, seed=seed, dtype=torch_dtype)
    processor = anyres_image_processor(preset.vision["image_size"], cfg.image_grid_pinpoints)
    return LlavaBundle(model, tok, processor, get_template(preset.template), ANYRES, f"preset:{name}", vision_of(cfg))


def next_template(path: Path, config: dict, text_type: str | None, tokenizer) -> Template:
    """The template a checkpoint records (our llava_eval.json or config `llava_template`), else the one its
    release was evaluated with: chatml_direct for a ChatML tokenizer (llava-v1.6-34b, Nous-Hermes-2-Yi),
    mistral_instruct for a Mistral LLM, vicuna_v1 for a Llama (Vicuna) one.
    Reference: llava/eval/run_llava.py (mistral -> mistral_instruct, v1.6-34b -> chatml_direct) and the v1.5
    eval scripts (`--conv-mode vicuna_v1`)."""
    meta_file = path / BUNDLE_FILE
    meta = read_json_object(meta_file) if meta_file.is_file() else {}
    found = ((BUNDLE_FILE, "template", meta.get("template")), ("config.json", "llava_template",
                                                               config.get("llava_template")))
    recorded = recorded_setting(path, found, "", tuple(sorted(ALL_TEMPLATES)), "--template")
    if recorded:
        return get_template(recorded)
    if "<|im_start|>" in tokenizer.get_vocab():
        return get_template("chatml_direct")
    inferred = {"mistral": "mistral_instruct", "llama": "vicuna_v1"}.get(text_type)
    if inferred is None:
        raise CheckpointError(f"{path}: cannot tell which conversation template a {text_type!r} LLaVA-NeXT was "
                              f"evaluated with; pass --template NAME ({', '.join(sorted(ALL_TEMPLATES))})")
    return get_template(inferred)


def _check_anyres_mode(path: Path, config: dict) -> None:
    meta_file = path / BUNDLE_FILE
    meta = read_json_object(meta_file) if meta_file.is_file() else {}
    found = ((BUNDLE_FILE, "image_mode", meta.get("image_mode")),
             ("config.json", "image_aspect_ratio", config.get("image_aspect_ratio")))
    for file, key, value in found:
        if value not in (None, "", ANYRES):
            raise CheckpointError(f"{path / file} has {key} {str(value)[:60]!r}; a LLaVA-NeXT checkpoint's images "
                                  f"go through {ANYRES}")


def _load_hf(path: Path, config: dict, torch_dtype: torch.dtype, override: Template | None, _tower) -> LlavaBundle:
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    _check_anyres_mode(path, config)
    cfg = load_config(LlavaNextConfig, path)
    _check_next_config(cfg, path / "config.json")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"no *.safetensors weights in {path} (only safetensors are loaded for this format)")
    check_safetensors(weights)
    tokenizer = load_tokenizer(path)
    template = override or next_template(path, config, cfg.text_config.model_type, tokenizer)
    processor = _image_processor(path, cfg)
    try:
        with quiet_loading():
            model, info = LlavaNextForConditionalGeneration.from_pretrained(
                str(path), config=cfg, dtype=torch_dtype, output_loading_info=True, local_files_only=True,
                trust_remote_code=False, ignore_mismatched_sizes=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load checkpoint {path}: {one_line(exc)}") from None
    check_loading_info(info, str(path))
    return LlavaBundle(model, tokenizer, processor, template, ANYRES, str(path), vision_of(cfg))


def _check_next_config(cfg, where: Path) -> None:
    """What this loader computes anyres for: CLS dropped, one feature layer, grids of whole tiles."""
    if cfg.vision_feature_select_strategy != "default" or not isinstance(cfg.vision_feature_layer, int):
        raise CheckpointError(f"{where}: LLaVA-NeXT with vision_feature_select_strategy "
                              f"{cfg.vision_feature_select_strategy!r} and vision_feature_layer "
                              f"{cfg.vision_feature_layer!r} is not supported (the 1.6 releases: 'default', -2)")
    if getattr(cfg.vision_config, "model_type", None) != "clip_vision_model":
        raise CheckpointError(f"{where}: vision tower {cfg.vision_config.model_type!r} is not supported (CLIP only)")
    try:
        check_grid_pinpoints(cfg.image_grid_pinpoints, cfg.vision_config.image_size)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def _image_processor(path: Path, cfg):
    """The checkpoint's preprocessing settings on transformers' PIL backend (the CLIP tower's when the
    directory has none); its tiles must be the tower's image size."""
    from transformers import LlavaNextImageProcessorPil

    tile = cfg.vision_config.image_size
    if not (path / "preprocessor_config.json").is_file():
        return anyres_image_processor(tile, cfg.image_grid_pinpoints)
    try:
        with quiet_loading():
            processor = LlavaNextImageProcessorPil.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - processor construction raises many types on hostile values
        raise CheckpointError(f"cannot load the image processor of {path}: {one_line(exc)}") from None
    sizes = (processor.crop_size.height, processor.size.shortest_edge)
    if sizes != (tile, tile):
        raise CheckpointError(f"{path}/preprocessor_config.json: crop_size {sizes[0]} and shortest_edge {sizes[1]} "
                              f"must both be the vision tower's image size {tile}")
    processor.image_grid_pinpoints = cfg.image_grid_pinpoints
    return processor


def _original_next_config(path: Path, config: dict, vision_config):
    """LlavaNextConfig of an original 1.6 config.json, every mm_* field checked."""
    from transformers import LlamaConfig, MistralConfig

    where = path / "config.json"
    merge, aspect = config.get("mm_patch_merge_type"), config.get("image_aspect_ratio")
    if merge != NEXT_PATCH_MERGE:
        raise CheckpointError(f"{where}: unsupported mm_patch_merge_type {merge!r} (supported: {NEXT_PATCH_MERGE}, "
                              "the merge of every LLaVA-1.6 release)")
    if aspect != ANYRES:
        raise CheckpointError(f"{where}: unsupported image_aspect_ratio {aspect!r} with {NEXT_PATCH_MERGE} "
                              f"(supported: {ANYRES})")
    if config.get("mm_projector_type", "linear") != "mlp2x_gelu":
        raise CheckpointError(f"{where}: unsupported mm_projector_type {config.get('mm_projector_type')!r} for "
                              "LLaVA-NeXT (supported: mlp2x_gelu)")
    if config.get("mm_vision_select_feature", "patch") != "patch" or config.get("mm_use_im_start_end"):
        raise CheckpointError(f"{where}: mm_vision_select_feature must be 'patch' and mm_use_im_start_end false "
                              "(as in the 1.6 releases)")
    grids = config.get("image_grid_pinpoints")
    if isinstance(grids, str):  # Reference: mm_utils.py accepts the list written as a Python literal
        try:
            grids = ast.literal_eval(grids)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise CheckpointError(f"{where}: image_grid_pinpoints {grids[:60]!r} is not a list") from None
    archs = config.get("architectures")
    mistral = isinstance(archs, list) and "LlavaMistralForCausalLM" in archs
    text_class = MistralConfig if mistral else LlamaConfig
    text_keys = set(text_class().to_dict()) - {"architectures", "model_type", "transformers_version"}
    text_cfg = text_class(**({k: v for k, v in config.items() if k in text_keys} | {"tie_word_embeddings": False}))
    try:
        return build_next_config(text_cfg, vision_config, grid_pinpoints=grids, template="",
                                 feature_layer=config.get("mm_vision_select_layer", -2))
    except ValueError as exc:
        raise CheckpointError(f"{where}: {one_line(exc)}") from None


def _load_original(path: Path, config: dict, torch_dtype: torch.dtype, override: Template | None,
                   vision_tower: str | None) -> LlavaBundle:
    from transformers import CLIPVisionConfig, LlavaNextForConditionalGeneration

    tower_src = vision_tower or config.get("mm_vision_tower")
    if not isinstance(tower_src, str) or not tower_src:
        raise CheckpointError(f"{path}/config.json: mm_vision_tower is {tower_src!r}; pass --vision-tower DIR")
    state = convert_original_keys(read_weights(path))
    # The 1.6 releases train the tower, so its weights are in the checkpoint; only its config is read elsewhere.
    need_tower_weights = not any(k.startswith("model.vision_tower.") for k in state)
    directory = tower_dir(tower_src, path, need_weights=need_tower_weights)
    vision_config = load_config(CLIPVisionConfig, directory)
    if need_tower_weights:
        state.update(vision_tower_weights(directory))
    try:
        cfg = _original_next_config(path, config, vision_config)
        model = LlavaNextForConditionalGeneration(cfg)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - config validation raises many types on hostile values
        raise CheckpointError(f"cannot build a model from {path}/config.json: {one_line(exc)}") from None
    load_state_dict_strict(model, state, str(path))
    model.to(torch_dtype)
    tokenizer = load_tokenizer(path)
    template = override or next_template(path, config, cfg.text_config.model_type, tokenizer)
    cfg.llava_template = template.name
    processor = anyres_image_processor(vision_config.image_size, cfg.image_grid_pinpoints)
    return LlavaBundle(model, tokenizer, processor, template, ANYRES, str(path), vision_of(cfg))
