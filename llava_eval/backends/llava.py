"""The LLaVA-1.5 backend: every checkpoint `llava_model.checkpoint.load_bundle` reads (llava-hf directories,
original LLaVA checkpoints, the built-in `tiny-shapes`, presets), answered by `LlavaEngine` with the
scheduling `--engine` picks. Prompts are the paper's (the checkpoint's own LLaVA template, byte-exact).
"""

from __future__ import annotations

from llava_model.checkpoint import BUILTIN_CHECKPOINTS, LlavaBundle, load_bundle
from llava_model.config import is_next_config
from llava_model.fingerprint import device_record, model_fingerprint
from llava_model.presets import PRESETS
from llava_types import Request

from ..engine import LlavaEngine
from ..scheduling import get_strategy
from .entry import BackendEntry, BackendOptions

NAME = "llava"


class LlavaBackend:
    """`Backend` over a loaded bundle and the engine that answers for it; `name` and `details` are what
    config.json records beyond the device and the scheduling (the llava-next backend's, its template and
    anyres settings)."""

    def __init__(self, bundle: LlavaBundle, engine: LlavaEngine, name: str = NAME, details: dict | None = None):
        self.bundle, self.engine, self.name, self.details = bundle, engine, name, details or {}
        self.source = bundle.source
        self.chunk_size = engine.chunk_size

    def generate(self, requests: list[Request]) -> list[str]:
        return self.engine.generate(requests)

    def prompt(self, request: Request) -> str:
        return self.engine.prompt(request)

    def fingerprint(self) -> str:
        return model_fingerprint(self.bundle)

    def record(self) -> dict:
        return device_record(self.bundle) | {"backend": self.name, "strategy": self.engine.strategy.name,
                                             "prompt_mode": "paper"} | self.details


def open_llava(model: str, options: BackendOptions) -> LlavaBackend:
    strategy = get_strategy(options.engine)  # a bad name is refused before the weights load
    bundle = load_bundle(model, device=options.device, dtype=options.dtype, template=options.template,
                         image_mode=options.image_mode, vision_tower=options.vision_tower)
    return LlavaBackend(bundle, LlavaEngine(bundle, strategy, batch_size=options.batch_size))


def claims(config: dict) -> bool:
    """A llava-hf config (model_type llava) or an original LLaVA one (LlavaLlama* architectures, mm_* fields)
    that is not LLaVA-NeXT's; load_bundle checks the rest."""
    if is_next_config(config):
        return False
    archs = config.get("architectures")
    archs = [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []
    return (config.get("model_type") in ("llava", "llava_llama") or "mm_vision_tower" in config
            or "LlavaForConditionalGeneration" in archs or any(a.startswith("LlavaLlama") for a in archs))


ENTRY = BackendEntry(
    open=open_llava,
    architectures="llava (model_type llava, LlavaForConditionalGeneration; original LLaVA: LlavaLlamaForCausalLM "
                  "with mm_* fields)",
    claims=claims,
    names=lambda: (*BUILTIN_CHECKPOINTS, *PRESETS),
)
