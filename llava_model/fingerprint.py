"""What a run records about a loaded LLaVA model: a fingerprint of everything that can change an answer, and
the device it runs on. The harness stores both; a resume refuses answers made under another fingerprint.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import torch

from llava_types import digest

from .errors import CheckpointError

SAMPLES = 64  # byte samples per weight file in checkpoint_files_fingerprint (with its full safetensors header)


def model_fingerprint(bundle, samples_per_tensor: int = 4096) -> str:
    """Fingerprint of everything about a loaded model that can change an answer: every tensor's name,
    dtype, shape and an evenly strided sample of its values, the vocabulary, the template and the image
    preprocessing (with LLaVA-NeXT's grids). Cheap for a 13B model (a few thousand values per tensor), yet
    any retraining or conversion change shows."""
    h = hashlib.sha256()
    hash_weights(h, bundle.model, samples_per_tensor)
    h.update(digest(*vocabulary(bundle.tokenizer), bundle.template.name, bundle.image_mode).encode())
    vision = bundle.vision.describe()  # empty for LLaVA-1.5, whose fingerprints stay as they were
    if vision:
        h.update(digest(vision).encode())
    return h.hexdigest()[:16]


def hash_weights(h, model, samples_per_tensor: int = 4096) -> None:
    """Feed `h` every tensor's name, dtype, shape and an evenly strided sample of its values."""
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // samples_per_tensor)
        sample = flat[::step][:samples_per_tensor].to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        h.update(sample.numpy().tobytes())


def vocabulary(tokenizer) -> tuple:
    """What a fingerprint records of a tokenizer: its size and (the first 50,000 of) its sorted vocabulary."""
    return len(tokenizer), sorted(tokenizer.get_vocab().items())[:50000]


def device_record(bundle) -> dict:
    """Device, dtype and device name of the model's weights, for config.json."""
    param = next(bundle.model.parameters())
    name = torch.cuda.get_device_name(param.device) if param.device.type == "cuda" else (
        platform.processor() or platform.machine())
    return {"device": str(param.device), "dtype": str(param.dtype).removeprefix("torch."), "device_name": name}


def checkpoint_files_fingerprint(path: Path) -> str:
    """Config, tokenizer files, and each safetensors file's name, size, header (names, dtypes, shapes, offsets)
    and evenly spaced byte samples: cheap for a 13B checkpoint, and any conversion or retraining shows."""
    parts: list = []
    names = ("config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
             "preprocessor_config.json", "generation_config.json")
    for name in names:
        if (path / name).is_file():
            parts += [name, (path / name).read_bytes()]
    for weights in sorted(path.glob("*.safetensors")):
        size = weights.stat().st_size
        with weights.open("rb") as f:
            header = f.read(8)
            length = int.from_bytes(header, "little") if len(header) == 8 else 0
            if not 0 < length < min(size, 100_000_000):
                raise CheckpointError(f"cannot read weights {weights}: not a safetensors file")
            parts += [weights.name, size, f.read(length)]
            start, span = 8 + length, max(0, size - 8 - length - 64)
            for k in range(SAMPLES):  # the first and the last 64 bytes of the data, and evenly between
                f.seek(start + span * k // (SAMPLES - 1))
                parts.append(f.read(64))
    return digest(*parts)
