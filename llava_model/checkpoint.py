"""Load LLaVA checkpoints into one bundle (model, tokenizer, image processor, template, image mode).

Formats: a preset name (random weights; `tiny` has a built-in tokenizer), a llava-hf style directory
(`LlavaForConditionalGeneration`, safetensors, as written by `save_bundle`), or an original LLaVA
checkpoint (`LlavaLlamaForCausalLM` with `mm_*` fields, `model.mm_projector.*` keys, CLIP tower from its
own directory) converted in memory.
Reference: transformers `convert_llava_weights_to_hf.py` (key mapping) and haotian-liu/LLaVA
`llava/model/builder.py` (what an original checkpoint holds).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint_files import (
    check_safetensors,
    checkpoint_config,
    load_config,
    load_tokenizer,
    one_line,
    quiet_loading,
    read_json_object,
    read_weights,
    refuse_remote_code,
)
from .config import is_next_config
from .conversation import TEMPLATES, Template, get_template
from .errors import CheckpointError, UserError
from .images import SQUARE_IMAGES, VisionInputs
from .preprocess import IMAGE_MODES, clip_image_processor
from .vision_tower import tower_dir, vision_tower_weights

BUNDLE_FILE = "llava_eval.json"
# Checkpoints that ship inside the package, loadable by name with no download.
BUILTIN_CHECKPOINTS = {"tiny-shapes": Path(__file__).parent / "assets" / "tiny-shapes"}


@dataclass
class LlavaBundle:
    """Everything needed to prompt a checkpoint the way it was trained."""

    model: object
    tokenizer: object
    image_processor: object
    template: Template
    image_mode: str
    source: str
    vision: VisionInputs = SQUARE_IMAGES  # how images become pixels, prompt positions and features

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_id

    @property
    def image_seq_length(self) -> int:
        return self.model.config.image_seq_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def weights_dtype(name: str | None, device: str) -> torch.dtype:
    if name in (None, "auto"):
        # Reference: llava/model/builder.py loads in float16 for evaluation; CPU kernels want float32.
        return torch.float16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise CheckpointError(f"unknown dtype {name!r}; valid: auto, {', '.join(table)}")
    return table[name]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """Refuse a device this machine lacks (`cuda` without CUDA, `cuda:3` with two GPUs, `mps` off a Mac,
    `gpu7`) before any weights load."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"unknown device {device!r} ({one_line(exc)}); use cpu, cuda, cuda:N or mps") from None
    backend = getattr(torch, parsed.type, None)
    is_available = getattr(backend, "is_available", None)
    if is_available is None:
        raise UserError(f"device {device!r} cannot run a model here; use cpu, cuda, cuda:N or mps")
    if not is_available():
        raise UserError(f"device {device!r} is not available here (no {parsed.type.upper()}); use --device cpu")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if parsed.index is not None and parsed.index >= count:
        raise UserError(f"device {device!r} is not available here: {count} {parsed.type} device(s), "
                        f"{parsed.type}:0 to {parsed.type}:{count - 1}")
    return device


def load_bundle(spec: str, *, device: str | None = None, dtype: str | None = None, template: str | None = None,
                image_mode: str | None = None, vision_tower: str | None = None, seed: int = 0) -> LlavaBundle:
    """Load `spec` (preset name or checkpoint directory). `template`/`image_mode` override what the
    checkpoint records; `vision_tower` points an original checkpoint at a local CLIP directory.
    Every argument is checked before anything loads; no code from the checkpoint ever runs."""
    from .presets import PRESETS

    device = check_device(device or default_device())
    torch_dtype = weights_dtype(dtype, device)
    override = get_template(template) if template else None
    if image_mode and image_mode not in IMAGE_MODES:
        raise CheckpointError(f"unknown image mode {image_mode!r}; valid: {', '.join(IMAGE_MODES)}")
    path = BUILTIN_CHECKPOINTS.get(spec, Path(spec))
    if path.is_dir():
        _, config = checkpoint_config(path)
        if is_next_config(config):
            raise CheckpointError(f"{path} is a LLaVA-NeXT checkpoint (anyres images); load it with the llava-next "
                                  f"backend (--model llava-next:{path})")
        if _is_original(config):
            bundle = _load_original(path, config, vision_tower, torch_dtype)
        else:
            bundle = _load_hf(path, config, torch_dtype, template, image_mode)
    elif spec in PRESETS:
        bundle = _load_preset(spec, torch_dtype, seed)
    elif path.exists() or "/" in spec or spec.startswith("."):
        raise CheckpointError(f"model {spec!r} is not a checkpoint directory (missing or a file)")
    else:
        raise CheckpointError(f"unknown model {spec!r}: not a checkpoint directory, a preset "
                              f"({', '.join(PRESETS)}) or a built-in checkpoint ({', '.join(BUILTIN_CHECKPOINTS)})")
    if override:
        bundle.template = override
    if image_mode:
        bundle.image_mode = image_mode
    return place(bundle, device)


def place(bundle: LlavaBundle, device: str) -> LlavaBundle:
    """The loaded bundle on `device`, in eval mode, decoding only as the protocol says."""
    bundle.model.to(device).eval()
    # Reference: protocol 1.5: greedy, one beam, no penalty. transformers' `generate` fills every setting a call
    # leaves at its default from the model's own generation config, so a checkpoint's generation_config.json
    # (do_sample, temperature, top_p, repetition_penalty, min_new_tokens, ...) would leak into the decoding.
    from transformers import GenerationConfig

    bundle.model.generation_config = GenerationConfig()
    return bundle


def _is_original(config: dict) -> bool:
    archs = config.get("architectures")
    archs = archs if isinstance(archs, list) else []
    return "mm_vision_tower" in config or any(isinstance(a, str) and a.startswith("LlavaLlama") for a in archs)


def _load_preset(name: str, torch_dtype: torch.dtype, seed: int) -> LlavaBundle:
    from .model import build_llava
    from .presets import TINY_TEXT, get_preset, llava_config

    preset = get_preset(name)
    if preset.text is not TINY_TEXT:
        raise CheckpointError(
            f"preset {name!r} has no bundled tokenizer or weights; pass a checkpoint directory "
            "(build random weights in code with llava_model.presets/model for speed tests)")
    from .tiny_tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = llava_config(preset, vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>"),
                       pad_token_id=tok.pad_token_id)
    model = build_llava(cfg, seed=seed, dtype=torch_dtype)
    return LlavaBundle(model, tok, clip_image_processor(preset.vision["image_size"]), get_template(preset.template),
                       preset.image_mode, f"preset:{name}")


def recorded_setting(path: Path, found: tuple, default: str, valid: tuple, flag: str) -> str:
    """The first value set among `found` ((file, key, value), ...), checked against `valid`."""
    for file, key, value in found:
        if value:
            if not isinstance(value, str) or value not in valid:
                raise CheckpointError(f"{path / file} has unknown {key} {value!r}; valid: {', '.join(valid)} "
                                      f"(or override it with {flag})")
            return value
    return default


def _bundle_meta(path: Path, config: dict, template: str | None, image_mode: str | None) -> tuple[Template, str]:
    """The template and image mode the checkpoint records (checked), unless the caller overrides them."""
    meta_file = path / BUNDLE_FILE
    meta = read_json_object(meta_file) if meta_file.is_file() else {}
    # llava-hf checkpoints record neither: LLaVA-1.5 evaluates with vicuna_v1 and pads to square.
    if not template:
        found = ((BUNDLE_FILE, "template", meta.get("template")),
                 ("config.json", "llava_template", config.get("llava_template")))
        template = recorded_setting(path, found, "vicuna_v1", tuple(sorted(TEMPLATES)), "--template")
    if not image_mode:
        found = ((BUNDLE_FILE, "image_mode", meta.get("image_mode")),
                 ("config.json", "image_aspect_ratio", config.get("image_aspect_ratio")))
        image_mode = recorded_setting(path, found, "pad", (*IMAGE_MODES, "square"), "--image-mode")
    return get_template(template), "crop" if image_mode == "square" else image_mode


def recorded_protocol(path: Path, template: str | None = None, image_mode: str | None = None) -> tuple[Template, str]:
    """The conversation template and image mode a checkpoint directory records (or the given overrides), for an
    engine that loads the weights itself (vLLM); no code the directory ships runs."""
    refuse_remote_code(path)
    return _bundle_meta(path, read_json_object(path / "config.json"), template, image_mode)


def _load_hf(path: Path, config: dict, torch_dtype: torch.dtype, template: str | None = None,
             image_mode: str | None = None) -> LlavaBundle:
    from transformers import LlavaConfig

    if config.get("model_type") != "llava":
        raise CheckpointError(f"{path}/config.json has model_type {config.get('model_type')!r}; expected 'llava' "
                              "(llava-hf format) or an original LLaVA config with mm_* fields")
    recorded_template, recorded_mode = _bundle_meta(path, config, template, image_mode)  # fail before the weights
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"no *.safetensors weights in {path} (only safetensors are loaded for this format)")
    check_safetensors(weights)
    cfg = load_config(LlavaConfig, path)
    try:
        with quiet_loading():
            model = _hf_model(path, cfg, torch_dtype, config.get("llava_projector"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load checkpoint {path}: {one_line(exc)}") from None
    return LlavaBundle(model, load_tokenizer(path), _image_processor(path, model), recorded_template, recorded_mode,
                       str(path))


def _hf_model(path: Path, cfg, torch_dtype: torch.dtype, projector: str | None):
    from .model import llava_class

    model, info = llava_class(projector).from_pretrained(
        str(path), config=cfg, dtype=torch_dtype, output_loading_info=True, local_files_only=True,
        trust_remote_code=False, ignore_mismatched_sizes=True)  # mismatches are reported below, by name
    check_loading_info(info, str(path))
    return model


def _image_processor(path: Path, model):
    from transformers import AutoImageProcessor

    try:
        with quiet_loading():
            return AutoImageProcessor.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError):
        # No processor config (or one naming a backend this install lacks): LLaVA-1.5 preprocesses as CLIP.
        return clip_image_processor(model.config.vision_config.image_size)
    except Exception as exc:  # noqa: BLE001 - processor construction raises many types on hostile values
        raise CheckpointError(f"cannot load the image processor of {path}: {one_line(exc)}") from None


def check_loading_info(info: dict, where: str) -> None:
    missing = [k for k in info.get("missing_keys", []) if "inv_freq" not in k]
    unexpected = [k for k in info.get("unexpected_keys", []) if "inv_freq" not in k]
    # transformers lists a mismatch as (key, shape in the file, shape the config asks for).
    mismatched = sorted(f"{m[0]} {tuple(m[1])} vs {tuple(m[2])}" if isinstance(m, tuple) and len(m) == 3 else str(m)
                        for m in info.get("mismatched_keys", []))
    parts = [_describe_keys(missing, unexpected)] if missing or unexpected else []
    if mismatched:
        parts.append(f"wrong shapes (file vs config.json): {_short(mismatched)}")
    if parts:
        raise CheckpointError(f"weights in {where} do not match the model: {'; '.join(parts)}")


def _short(keys, n: int = 6) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(str(k) for k in keys[:n]) + more


def _describe_keys(missing, unexpected) -> str:
    parts = []
    if missing:
        parts.append(f"missing keys: {_short(sorted(missing))}")
    if unexpected:
        parts.append(f"unexpected keys: {_short(sorted(unexpected))}")
    return "; ".join(parts)


def load_state_dict_strict(model, state: dict, where: str) -> None:
    own = model.state_dict()
    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    if missing or unexpected:
        raise CheckpointError(f"weights in {where} do not match the model: {_describe_keys(missing, unexpected)}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise CheckpointError(f"weights in {where} have wrong shapes: "
                              + _short(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in bad))
    model.load_state_dict(state, strict=True)


# Reference: transformers convert_llava_weights_to_hf.py KEYS_TO_MODIFY_MAPPING, in the key layout of
# transformers 5 (`model.language_model`, `model.vision_tower` = a CLIPVisionModel without the
# `vision_model.` level, `model.multi_modal_projector`, `lm_head`).
_ORIGINAL_KEY_RULES = (
    (r"^model\.vision_tower\.vision_tower\.vision_model\.", "model.vision_tower."),
    (r"^model\.mm_projector\.0\.", "model.multi_modal_projector.linear_1."),
    (r"^model\.mm_projector\.2\.", "model.multi_modal_projector.linear_2."),
    (r"^model\.mm_projector\.(weight|bias)$", r"model.multi_modal_projector.linear_1.\1"),
    (r"^model\.(embed_tokens|layers|norm)", r"model.language_model.\1"),
)


def convert_original_keys(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        if key.endswith("rotary_emb.inv_freq"):
            continue
        for pattern, repl in _ORIGINAL_KEY_RULES:
            new, n = re.subn(pattern, repl, key)
            if n:
                key = new
                break
        out[key] = value
    return out


def _original_llava_config(config: dict, vision_config):
    from transformers import LlamaConfig

    from .config import PROJECTORS, build_llava_config

    text_keys = set(LlamaConfig().to_dict()) - {"architectures", "model_type", "transformers_version"}
    text = {k: v for k, v in config.items() if k in text_keys}
    text["tie_word_embeddings"] = False
    text_cfg = LlamaConfig(**text)
    projector = config.get("mm_projector_type", "linear")
    if projector not in PROJECTORS:
        raise CheckpointError(f"unsupported mm_projector_type {projector!r} (supported: {', '.join(PROJECTORS)})")
    strategy = {"patch": "default", "cls_patch": "full"}.get(config.get("mm_vision_select_feature", "patch"))
    if strategy is None:
        raise CheckpointError(f"unsupported mm_vision_select_feature {config['mm_vision_select_feature']!r}")
    if config.get("mm_use_im_start_end") or config.get("mm_use_im_patch_token"):
        raise CheckpointError("checkpoints with mm_use_im_start_end/mm_use_im_patch_token are not supported "
                              "(LLaVA-1.5 sets both to false)")
    # An original config records no template: LLaVA-1.5 is evaluated with vicuna_v1.
    return build_llava_config(
        text_cfg, vision_config, projector=projector, template="vicuna_v1",
        image_mode="crop" if config.get("image_aspect_ratio", "square") == "square" else "pad",
        feature_layer=config.get("mm_vision_select_layer", -2), select_strategy=strategy)


def _load_original(path: Path, config: dict, vision_tower: str | None, torch_dtype: torch.dtype) -> LlavaBundle:
    from transformers import CLIPVisionConfig, LlavaForConditionalGeneration

    from .model import apply_projector_type

    state = convert_original_keys(read_weights(path))
    tower_src = vision_tower or config.get("mm_vision_tower")
    if not tower_src:
        raise CheckpointError(f"{path}/config.json names no mm_vision_tower; pass --vision-tower DIR")
    if not isinstance(tower_src, str):
        raise CheckpointError(f"{path}/config.json: mm_vision_tower is {tower_src!r}, not a path or hub id")
    need_tower_weights = not any(k.startswith("model.vision_tower.") for k in state)
    directory = tower_dir(tower_src, path, need_weights=need_tower_weights)
    vision_config = load_config(CLIPVisionConfig, directory)
    if need_tower_weights:
        state.update(vision_tower_weights(directory))
    try:
        cfg = _original_llava_config(config, vision_config)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - config validation raises many types on hostile values
        raise CheckpointError(f"cannot build a model from {path}/config.json: {one_line(exc)}") from None
    try:
        model = LlavaForConditionalGeneration(cfg)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot build a model from {path}/config.json: {one_line(exc)}") from None
    apply_projector_type(model)
    load_state_dict_strict(model, state, str(path))
    model.to(torch_dtype)
    return LlavaBundle(model, load_tokenizer(path), clip_image_processor(vision_config.image_size),
                       get_template("vicuna_v1"), cfg.image_aspect_ratio, str(path))


def save_bundle(bundle: LlavaBundle, out: str | Path) -> Path:
    """Write a directory that `load_bundle` (and, for the MLP projector, transformers) reloads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bundle.model.config.llava_template = bundle.template.name
    bundle.model.config.image_aspect_ratio = bundle.image_mode
    bundle.model.save_pretrained(str(out), safe_serialization=True)
    # The protocol's decoding and the tokenizer's stop token replace the (empty, see `place`) generation config
    # the model carries, so that transformers' own `generate` on the saved folder stops at EOS too.
    from transformers import GenerationConfig

    tok = bundle.tokenizer
    GenerationConfig(do_sample=False, num_beams=1, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id).save_pretrained(str(out))
    bundle.tokenizer.save_pretrained(str(out))
    bundle.image_processor.save_pretrained(str(out))
    (out / BUNDLE_FILE).write_text(json.dumps({"template": bundle.template.name, "image_mode": bundle.image_mode,
                                               "source": bundle.source}, indent=2) + "\n")
    return out
