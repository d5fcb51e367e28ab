"""The request a task hands to a model, and the protocol every model adapter implements.

Tasks build requests and score text; they never see the model. Reference: EleutherAI
lm-evaluation-harness `Instance` / `LM.generate_until` (the shape of this interface).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from llava_model.conversation import ASSISTANT, USER, Message

__all__ = ["ASSISTANT", "USER", "GenerationSettings", "Message", "Model", "Request"]


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. LLaVA-1.5 evaluation is greedy (temperature 0, one beam); only the cap on new
    tokens differs between scripts (128 in `model_vqa_loader.py`, 1024 elsewhere)."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    num_beams: int = 1

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature != 0.0 or self.num_beams != 1:
            raise ValueError("only greedy decoding (temperature 0, num_beams 1) is supported")


@dataclass(frozen=True)
class Request:
    """One generation: a conversation whose last turn is the user's, and the images it refers to.

    `messages` is a tuple of `Message` (role, text) turns; the first user
    turn holds one `<image>` placeholder per image. `images` holds paths, raw bytes or PIL images.
    `image_mode` overrides the checkpoint's preprocessing ("pad" or "crop") when a task's protocol
    demands it.
    """

    doc_id: Any
    messages: tuple
    images: tuple = ()
    settings: GenerationSettings = GenerationSettings()
    image_mode: str | None = None


class Model(Protocol):
    def generate(self, requests: list[Request]) -> list[str]:
        """One decoded answer per request, in request order."""
        ...
