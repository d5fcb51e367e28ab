"""Vision-language checkpoints of the families transformers ships natively (Qwen2-VL, Idefics3, BLIP-2, ...):
loaded with no checkpoint code, with the family's own processor on transformers' PIL image backend (the same
pixels with or without torchvision), and generated greedily in left-padded batches with per-row stopping.
Prompt construction is the harness's. Reference: transformers `AutoModelForImageTextToText` and
`AutoProcessor` (what they build from the same directory), `ProcessorMixin.apply_chat_template` (BOS rule).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import check_device, check_loading_info, default_device, weights_dtype
from .checkpoint_files import (
    check_safetensors,
    one_line,
    quiet_loading,
    read_json_object,
    refuse_remote_code,
)
from .errors import CheckpointError

# model_type -> family name. A literal allow-list: a directory is claimed only by one of these types, each a
# family whose transformers processor and generation class this module drives unchanged.
FAMILIES = {
    "qwen2_vl": "Qwen2-VL",
    "qwen2_5_vl": "Qwen2.5-VL",
    "idefics3": "Idefics3",
    "blip-2": "BLIP-2",
    "instructblip": "InstructBLIP",
    "llava_onevision": "LLaVA-OneVision",
    "paligemma": "PaliGemma",
    "internvl": "InternVL",
}
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


@dataclass
class VlmBundle:
    """A loaded checkpoint: model, processor (its tokenizer pads on the left), family and stopping ids."""

    model: object
    processor: object
    model_type: str
    eos_ids: tuple[int, ...]
    source: str
    generation: object = field(repr=False)  # the greedy GenerationConfig every call starts from

    @property
    def family(self) -> str:
        return FAMILIES[self.model_type]

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_processor_backend(self) -> str:
        return type(self.processor.image_processor).__name__


def load_vlm(spec: str, *, device: str | None = None, dtype: str | None = None) -> VlmBundle:
    """Load the checkpoint directory `spec` of one of FAMILIES. Device, dtype, files and processor are checked
    before the weights load; no code from the checkpoint ever runs."""
    device = check_device(device or default_device())
    weights_dtype(dtype, device)  # an unknown name is refused before any file is read
    path = Path(spec)
    if not path.is_dir():
        raise CheckpointError(f"model {spec!r} is not a checkpoint directory (missing or a file)")
    refuse_remote_code(path)
    config = read_json_object(path / "config.json")
    torch_dtype = family_dtype(dtype, device, config)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise CheckpointError(f"{path / 'config.json'}: model_type {model_type!r} is not a supported transformers "
                              f"family; supported: {', '.join(FAMILIES)}")
    processor = load_processor(path, model_type)
    model = _load_model(path, torch_dtype)
    eos_ids = _eos_ids(model.generation_config, processor.tokenizer)
    if processor.tokenizer.pad_token_id is None and eos_ids:  # batches pad; padded positions are masked out
        processor.tokenizer.pad_token = processor.tokenizer.convert_ids_to_tokens(eos_ids[0])
    generation = greedy_config(model.generation_config, eos_ids, processor.tokenizer.pad_token_id)
    force_greedy(model, generation)
    model.to(device).eval()
    return VlmBundle(model, processor, model_type, eos_ids, str(path), generation)


def family_dtype(name: str | None, device: str, config: dict) -> torch.dtype:
    """The weights' dtype: as named, or for `auto` float32 off a GPU and, on one, the dtype the release
    records in config.json (Qwen2-VL and Idefics3 ship bfloat16, whose range float16 lacks), else float16."""
    if name in (None, "auto") and device.startswith("cuda"):
        recorded = config.get("dtype") or config.get("torch_dtype")
        name = recorded if recorded in ("float16", "bfloat16", "float32") else name
    return weights_dtype(name, device)


def image_only(processor_class):
    """`processor_class` without its video processor. Qwen2-VL's, Qwen2.5-VL's, LLaVA-OneVision's and
    InternVL's processors take one, whose class needs torchvision; evaluation never sends video, and the
    rest of the processor (image-token expansion, chat template, padding) is transformers' own, unchanged."""
    # ProcessorMixin pairs its constructor's arguments with `get_attributes()`, so the `video_processor=None` a
    # family's __init__ still passes on is dropped, and its class is never looked up.
    attributes = [a for a in processor_class.get_attributes() if a != "video_processor"]
    if len(attributes) == len(processor_class.get_attributes()):
        return processor_class
    return type(processor_class.__name__, (processor_class,),
                {"get_attributes": classmethod(lambda cls: list(attributes)), "__doc__": image_only.__doc__})


def load_processor(path: Path, model_type: str):
    """The family's processor over the PIL image processor and the checkpoint's tokenizer(s), with the
    checkpoint's processor settings and chat template; its tokenizer pads on the left."""
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    if not any((path / name).is_file() for name in PROCESSOR_FILES):
        raise CheckpointError(f"{path} has no image processor config ({' or '.join(PROCESSOR_FILES)}); copy it "
                              "from the model's release next to config.json")
    processor_class = image_only(getattr(transformers, PROCESSOR_MAPPING_NAMES[model_type]))
    for name in PROCESSOR_FILES:
        if (path / name).is_file():
            read_json_object(path / name)  # not JSON, not UTF-8, not an object: named here, not deep in transformers
    try:
        with quiet_loading():
            settings, _ = processor_class.get_processor_dict(str(path), local_files_only=True)
            parts = [_sub_processor(path, name) for name in processor_class.get_attributes()]
            processor = processor_class.from_args_and_dict(parts, settings)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - processor construction raises many types on hostile files
        raise CheckpointError(f"cannot load the processor of {path}: {one_line(exc)}") from None
    processor.tokenizer.padding_side = "left"
    return processor


def _sub_processor(path: Path, name: str):
    """One part of a processor: the image processor on the PIL backend, or a tokenizer (`tokenizer`, or a
    second one in its subfolder, as InstructBLIP's `qformer_tokenizer`)."""
    from transformers import AutoImageProcessor, AutoTokenizer

    if name == "image_processor":
        image_processor = AutoImageProcessor.from_pretrained(str(path), backend="pil", local_files_only=True,
                                                             trust_remote_code=False)
        if not type(image_processor).__name__.endswith("Pil"):
            raise CheckpointError(f"the image processor of {path} ({type(image_processor).__name__}) has no PIL "
                                  "backend in this transformers; torchvision is not used here")
        return image_processor
    if "tokenizer" in name:
        try:
            return AutoTokenizer.from_pretrained(str(path), subfolder="" if name == "tokenizer" else name,
                                                 local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - tokenizers raise KeyError, TypeError, ... on corrupt files
            where = path if name == "tokenizer" else path / name
            raise CheckpointError(f"cannot load the tokenizer of {where}: {one_line(exc)}") from None
    raise CheckpointError(f"{path}: the processor needs a {name}, which llava-eval does not load")


def _load_model(path: Path, torch_dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForImageTextToText

    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"no *.safetensors weights in {path} (only safetensors are loaded for this format)")
    check_safetensors(weights)
    try:
        with quiet_loading():
            config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
            model, info = AutoModelForImageTextToText.from_pretrained(
                str(path), config=config, dtype=torch_dtype, output_loading_info=True, local_files_only=True,
                trust_remote_code=False, ignore_mismatched_sizes=True)  # mismatches are reported below, by name
    except Exception as exc:  # noqa: BLE001 - config validation and loading raise many types on hostile files
        raise CheckpointError(f"cannot load checkpoint {path}: {one_line(exc)}") from None
    check_loading_info(info, str(path))
    return model


def _eos_ids(generation_config, tokenizer) -> tuple[int, ...]:
    """The checkpoint's stopping ids: its generation config's `eos_token_id` (one id or a list, e.g.
    Qwen2-VL-Instruct's `<|im_end|>` and `<|endoftext|>`), else the tokenizer's EOS."""
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise CheckpointError(f"eos_token_id {eos!r} in the generation config is not a token id or a list of them")
    return tuple(dict.fromkeys(ids))


def greedy_config(checkpoint_config, eos_ids: tuple[int, ...], pad_id: int | None):
    """Greedy decoding as the protocol fixes it (one beam, no sampling, no penalty, no minimum length),
    keeping from the checkpoint's generation config only its special token ids."""
    from transformers import GenerationConfig

    keep = {name: getattr(checkpoint_config, name, None) for name in ("bos_token_id", "decoder_start_token_id")}
    return GenerationConfig(do_sample=False, num_beams=1, eos_token_id=list(eos_ids) or None, pad_token_id=pad_id,
                            **{k: v for k, v in keep.items() if v is not None})


def force_greedy(model, generation) -> None:
    """transformers' `generate` fills every setting a call leaves unset from the model's own generation config,
    and BLIP-2-style models call their language model's `generate`, which reads that one's: every module that
    generates gets the greedy config, so no sampling, penalty or beam setting of the checkpoint leaks in."""
    for module in model.modules():
        if getattr(module, "generation_config", None) is not None:
            module.generation_config = generation


def image_token_count(bundle: VlmBundle, text: str, image) -> int | None:
    """How many of the model's image tokens the processor puts in `text` with `image` (None where the config
    names no image token). Zero means the image would be ignored: BLIP-2's processor expands nothing without
    `num_query_tokens`, and transformers 5's model then scatters the image features nowhere."""
    token = getattr(bundle.model.config, "image_token_id", None)
    if token is None:
        return None
    return int((bundle.processor(text=[text], images=[image], return_tensors="pt")["input_ids"] == token).sum())


def _cut(tokens: list[int], cap: int, eos_ids: tuple[int, ...]) -> list[int]:
    # Greedy decoding is causal, so cutting a row at its own cap equals generating with that cap.
    tokens = tokens[:cap]
    stops = [i for i, t in enumerate(tokens) if t in eos_ids]
    return tokens[:stops[0]] if stops else tokens


@torch.inference_mode()
def generate_batch(bundle: VlmBundle, texts: list[str], images: list, caps: list[int]) -> list[list[int]]:
    """New token ids per prompt (EOS and what follows removed): `texts` rendered prompts, `images` the flat list
    of their images in order; the processor expands the image tokens and left-pads, `generate` decodes greedily
    up to the largest cap and each row is cut at its own. Reference: transformers `apply_chat_template` with
    `tokenize=True` skips the tokenizer's special tokens when the rendered prompt starts with BOS."""
    tokenizer, model = bundle.tokenizer, bundle.model
    bos = tokenizer.bos_token
    add_special = not (bos and all(t.startswith(bos) for t in texts))
    inputs = bundle.processor(text=texts, images=images or None, padding=True, return_tensors="pt",
                              add_special_tokens=add_special)
    inputs = inputs.to(bundle.device)
    floats = {k: v.to(model.dtype) for k, v in inputs.items() if torch.is_tensor(v) and v.is_floating_point()}
    config = copy.deepcopy(bundle.generation)
    config.max_new_tokens = max(caps)
    out = model.generate(**{**inputs, **floats}, generation_config=config)
    # Decoder-only models return prompt + new tokens; an encoder-decoder (BLIP-2 with Flan-T5) returns the
    # decoder's start token + new tokens.
    encoder_decoder = model.config.get_text_config().is_encoder_decoder
    start = 1 if encoder_decoder else inputs["input_ids"].shape[1]
    return [_cut(row[start:].tolist(), cap, bundle.eos_ids) for row, cap in zip(out, caps, strict=True)]
