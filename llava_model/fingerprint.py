"""What a run records about a loaded LLaVA model: a fingerprint of everything that can change an answer, and
the device it runs on. The harness stores both; a resume refuses answers made under another fingerprint.
"""

from __future__ import annotations

import hashlib
import platform

import torch

from llava_types import digest


def model_fingerprint(bundle, samples_per_tensor: int = 4096) -> str:
    """Fingerprint of everything about a loaded model that can change an answer: every tensor's name,
    dtype, shape and an evenly strided sample of its values, the vocabulary, the template and the image
    preprocessing (with LLaVA-NeXT's grids). Cheap for a 13B model (a few thousand values per tensor), yet
    any retraining or conversion change shows."""
    h = hashlib.sha256()
    for name, tensor in sorted(bundle.model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // samples_per_tensor)
        sample = flat[::step][:samples_per_tensor].to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        h.update(sample.numpy().tobytes())
    tok = bundle.tokenizer
    h.update(digest(len(tok), sorted(tok.get_vocab().items())[:50000], bundle.template.name,
                    bundle.image_mode).encode())
    vision = bundle.vision.describe()  # empty for LLaVA-1.5, whose fingerprints stay as they were
    if vision:
        h.update(digest(vision).encode())
    return h.hexdigest()[:16]


def device_record(bundle) -> dict:
    """Device, dtype and device name of the model's weights, for config.json."""
    param = next(bundle.model.parameters())
    name = torch.cuda.get_device_name(param.device) if param.device.type == "cuda" else (
        platform.processor() or platform.machine())
    return {"device": str(param.device), "dtype": str(param.dtype).removeprefix("torch."), "device_name": name}
