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

from .conversation import Template, get_template
from .errors import CheckpointError
from .preprocess import IMAGE_MODES, clip_image_processor

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

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_id

    @property
    def image_seq_length(self) -> int:
        return self.model.config.image_seq_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _dtype(name: str | None, device: str) -> torch.dtype:
    if name in (None, "auto"):
        # Reference: llava/model/builder.py loads in float16 for evaluation; CPU kernels want float32.
        return torch.float16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise CheckpointError(f"unknown dtype {name!r}; valid: auto, {', '.join(table)}")
    return table[name]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_bundle(spec: str, *, device: str | None = None, dtype: str | None = None, template: str | None = None,
                image_mode: str | None = None, vision_tower: str | None = None, seed: int = 0) -> LlavaBundle:
    """Load `spec` (preset name or checkpoint directory). `template`/`image_mode` override what the
    checkpoint records; `vision_tower` points an original checkpoint at a local CLIP directory."""
    from .presets import PRESETS

    device = device or default_device()
    torch_dtype = _dtype(dtype, device)
    path = BUILTIN_CHECKPOINTS.get(spec, Path(spec))
    if path.is_dir():
        config = _read_json(path / "config.json")
        if _is_original(config):
            bundle = _load_original(path, config, vision_tower, torch_dtype)
        else:
            bundle = _load_hf(path, config, torch_dtype)
    elif spec in PRESETS:
        bundle = _load_preset(spec, torch_dtype, seed)
    elif path.exists() or "/" in spec or spec.startswith("."):
        raise CheckpointError(f"model {spec!r} is not a checkpoint directory (missing or a file)")
    else:
        raise CheckpointError(f"unknown model {spec!r}: not a checkpoint directory, a preset "
                              f"({', '.join(PRESETS)}) or a built-in checkpoint ({', '.join(BUILTIN_CHECKPOINTS)})")
    if template:
        bundle.template = get_template(template)
    if image_mode:
        if image_mode not in IMAGE_MODES:
            raise CheckpointError(f"unknown image mode {image_mode!r}; valid: {', '.join(IMAGE_MODES)}")
        bundle.image_mode = image_mode
    bundle.model.to(device).eval()
    return bundle


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def _is_original(config: dict) -> bool:
    archs = config.get("architectures") or []
    return "mm_vision_tower" in config or any(a.startswith("LlavaLlama") for a in archs)


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


def _bundle_meta(path: Path, config: dict) -> tuple[str, str]:
    meta_file = path / BUNDLE_FILE
    meta = _read_json(meta_file) if meta_file.is_file() else {}
    # llava-hf checkpoints record neither: LLaVA-1.5 evaluates with vicuna_v1 and pads to square.
    template = meta.get("template") or config.get("llava_template") or "vicuna_v1"
    image_mode = meta.get("image_mode") or config.get("image_aspect_ratio") or "pad"
    if image_mode == "square":
        image_mode = "crop"
    return template, image_mode


def _load_hf(path: Path, config: dict, torch_dtype: torch.dtype) -> LlavaBundle:
    from transformers import AutoImageProcessor, LlavaConfig, LlavaForConditionalGeneration

    if config.get("model_type") != "llava":
        raise CheckpointError(f"{path}/config.json has model_type {config.get('model_type')!r}; expected 'llava' "
                              "(llava-hf format) or an original LLaVA config with mm_* fields")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"no *.safetensors weights in {path} (only safetensors are loaded for this format)")
    try:
        if config.get("llava_projector") == "linear":
            from .model import apply_projector_type

            cfg = LlavaConfig.from_pretrained(str(path))
            model = LlavaForConditionalGeneration(cfg)
            apply_projector_type(model)
            _load_state_dict_strict(model, _read_safetensors(weights), str(path))
            model.to(torch_dtype)
        else:
            model, info = LlavaForConditionalGeneration.from_pretrained(
                str(path), dtype=torch_dtype, output_loading_info=True, local_files_only=True)
            _check_loading_info(info, str(path))
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load checkpoint {path}: {_first_line(exc)}") from None
    try:
        image_processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError):
        image_processor = clip_image_processor(model.config.vision_config.image_size)
    template, image_mode = _bundle_meta(path, config)
    return LlavaBundle(model, tokenizer, image_processor, get_template(template), image_mode, str(path))


def load_tokenizer(path: Path):
    """The checkpoint's tokenizer. A Llama tokenizer is loaded as `LlamaTokenizer` by name: next to a
    `model_type: llava` config, AutoTokenizer picks a generic backend that converts `tokenizer.model`
    without SentencePiece's dummy-prefix space, which changes the ids after `<image>`."""
    from transformers import AutoTokenizer, LlamaTokenizer

    config_file = path / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if tok_config.get("tokenizer_class") in ("LlamaTokenizer", "LlamaTokenizerFast"):
        return LlamaTokenizer.from_pretrained(str(path), local_files_only=True)
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_loading_info(info: dict, where: str) -> None:
    missing = [k for k in info.get("missing_keys", []) if "inv_freq" not in k]
    unexpected = [k for k in info.get("unexpected_keys", []) if "inv_freq" not in k]
    mismatched = info.get("mismatched_keys", [])
    if missing or unexpected or mismatched:
        raise CheckpointError(f"weights in {where} do not match the model: {_describe_keys(missing, unexpected)}"
                              + (f"; shape mismatches: {_short(mismatched)}" if mismatched else ""))


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


def _load_state_dict_strict(model, state: dict, where: str) -> None:
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


def _read_safetensors(files) -> dict:
    from safetensors.torch import load_file

    state = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def read_weights(path: Path) -> dict:
    """All tensors of a checkpoint directory: safetensors, else `*.bin` read with `weights_only=True`."""
    files = sorted(path.glob("*.safetensors"))
    if files:
        return _read_safetensors(files)
    files = sorted(p for p in path.glob("*.bin") if p.name not in ("training_args.bin",))
    if not files:
        raise CheckpointError(f"no weights (*.safetensors or *.bin) in {path}")
    state = {}
    for f in files:
        try:
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
            raise CheckpointError(f"cannot read {f}: {_first_line(exc)}") from None
    return state


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
    from transformers import LlamaConfig, LlavaConfig

    text_keys = set(LlamaConfig().to_dict()) - {"architectures", "model_type", "transformers_version"}
    text = {k: v for k, v in config.items() if k in text_keys}
    text["tie_word_embeddings"] = False
    text_cfg = LlamaConfig(**text)
    projector = config.get("mm_projector_type", "linear")
    if projector not in ("mlp2x_gelu", "linear"):
        raise CheckpointError(f"unsupported mm_projector_type {projector!r} (supported: mlp2x_gelu, linear)")
    strategy = {"patch": "default", "cls_patch": "full"}.get(config.get("mm_vision_select_feature", "patch"))
    if strategy is None:
        raise CheckpointError(f"unsupported mm_vision_select_feature {config['mm_vision_select_feature']!r}")
    if config.get("mm_use_im_start_end") or config.get("mm_use_im_patch_token"):
        raise CheckpointError("checkpoints with mm_use_im_start_end/mm_use_im_patch_token are not supported "
                              "(LLaVA-1.5 sets both to false)")
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    cfg = LlavaConfig(
        vision_config=vision_config, text_config=text_cfg,
        # The original vocabulary has no image token: use the first id past it (never embedded).
        image_token_id=text_cfg.vocab_size,
        image_seq_length=patches + (1 if strategy == "full" else 0),
        vision_feature_layer=config.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy=strategy, projector_hidden_act="gelu", multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )
    cfg.llava_projector = projector
    cfg.llava_template = "vicuna_v1"
    cfg.image_aspect_ratio = "crop" if config.get("image_aspect_ratio", "square") == "square" else "pad"
    return cfg


def _load_original(path: Path, config: dict, vision_tower: str | None, torch_dtype: torch.dtype) -> LlavaBundle:
    from transformers import CLIPVisionConfig, LlavaForConditionalGeneration

    from .model import apply_projector_type

    state = convert_original_keys(read_weights(path))
    tower_src = vision_tower or config.get("mm_vision_tower")
    if not tower_src:
        raise CheckpointError(f"{path}/config.json names no mm_vision_tower; pass --vision-tower DIR")
    tower_dir = Path(tower_src)
    if not tower_dir.is_absolute() and not tower_dir.is_dir() and (path / tower_src).is_dir():
        tower_dir = path / tower_src
    try:
        vision_config = CLIPVisionConfig.from_pretrained(str(tower_dir) if tower_dir.is_dir() else tower_src)
    except OSError as exc:
        raise CheckpointError(f"cannot load the vision tower config {tower_src!r}: {_first_line(exc)}; "
                              "pass --vision-tower DIR with a local CLIP checkpoint") from None
    if not any(k.startswith("model.vision_tower.") for k in state):
        state.update(vision_tower_weights(tower_dir, tower_src))
    cfg = _original_llava_config(config, vision_config)
    model = LlavaForConditionalGeneration(cfg)
    apply_projector_type(model)
    _load_state_dict_strict(model, state, str(path))
    model.to(torch_dtype)
    try:
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the tokenizer of {path}: {_first_line(exc)}") from None
    template, image_mode = "vicuna_v1", cfg.image_aspect_ratio
    return LlavaBundle(model, tokenizer, clip_image_processor(vision_config.image_size), get_template(template),
                       image_mode, str(path))


def vision_tower_weights(tower_dir: Path, tower_src: str) -> dict:
    """CLIP vision weights from the tower's own checkpoint, under the converted key names."""
    if not tower_dir.is_dir():
        from huggingface_hub import snapshot_download

        try:
            tower_dir = Path(snapshot_download(tower_src, allow_patterns=["*.json", "*.safetensors"]))
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types
            raise CheckpointError(f"cannot fetch vision tower {tower_src!r}: {_first_line(exc)}; "
                                  "pass --vision-tower DIR with a local CLIP checkpoint") from None
    out = {}
    # Full CLIP checkpoints (openai/clip-vit-*) prefix the tower with `vision_model.`; a CLIPVisionModel
    # saved by transformers 5 does not. Text tower and projections are not part of LLaVA.
    for key, value in read_weights(tower_dir).items():
        key = key.removeprefix("vision_model.")
        if key.split(".", 1)[0] in ("embeddings", "pre_layrnorm", "encoder", "post_layernorm"):
            out["model.vision_tower." + key] = value
    if not out:
        raise CheckpointError(f"no CLIP vision weights in the vision tower checkpoint {tower_dir}")
    return out


def save_bundle(bundle: LlavaBundle, out: str | Path) -> Path:
    """Write a directory that `load_bundle` (and, for the MLP projector, transformers) reloads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bundle.model.config.llava_template = bundle.template.name
    bundle.model.config.image_aspect_ratio = bundle.image_mode
    bundle.model.save_pretrained(str(out), safe_serialization=True)
    bundle.tokenizer.save_pretrained(str(out))
    bundle.image_processor.save_pretrained(str(out))
    (out / BUNDLE_FILE).write_text(json.dumps({"template": bundle.template.name, "image_mode": bundle.image_mode,
                                               "source": bundle.source}, indent=2) + "\n")
    return out
