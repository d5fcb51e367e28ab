"""The types every layer shares, with no dependency beyond the standard library: conversation turns and the
image placeholder, the `Request` a task hands to a model, its `GenerationSettings`, the `Model` protocol
(`generate`) and the `Backend` protocol every `--model` backend implements, and `UserError`, the error whose
message the CLI prints as one line.

Tasks, model code, the harness and the judge all import from here, and this module imports none of them,
so the layering rules of `docs/design.md` hold transitively. Reference: EleutherAI lm-evaluation-harness
`Instance` / `LM.generate_until` (the shape of the request interface).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["ASSISTANT", "IMAGE_PLACEHOLDER", "USER", "Backend", "GenerationSettings", "Message", "Model",
           "Request", "Unanswered", "UserError", "digest"]

# Reference: haotian-liu/LLaVA `llava/constants.py` DEFAULT_IMAGE_TOKEN.
IMAGE_PLACEHOLDER = "<image>"

USER = "user"
ASSISTANT = "assistant"


class UserError(Exception):
    """Bad input from the user: a wrong path, name, file or value. The message says what and where."""


@dataclass(frozen=True)
class Message:
    """One turn. `role` is `user` or `assistant`; `text` may hold one `<image>` placeholder."""

    role: str
    text: str


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

    `messages` is a tuple of `Message` (role, text) turns; the first user turn holds one `<image>`
    placeholder per image. `images` holds paths, raw bytes or PIL images. `image_mode` overrides the
    checkpoint's preprocessing ("pad" or "crop") when a task's protocol demands it.
    """

    doc_id: Any
    messages: tuple
    images: tuple = ()
    settings: GenerationSettings = GenerationSettings()
    image_mode: str | None = None


@dataclass(frozen=True)
class Unanswered:
    """What a model returns instead of an answer it could not get (a served request that failed after its
    retries). The run records it as missing: never scored as an empty answer, asked again on the next run."""

    reason: str


class Model(Protocol):
    def generate(self, requests: list[Request]) -> list[str | Unanswered]:
        """One decoded answer per request, in request order (`Unanswered` where none could be had)."""
        ...


@runtime_checkable
class Backend(Model, Protocol):
    """A model as `--model` names it: answers requests and says what a run records about it. The runner
    hands a backend `chunk_size` requests at a time (each chunk's answers are saved before the next);
    a bare `Model` gets the run's batch size. A backend that also has `generate_stream(chunks)` (an iterator
    of each chunk's answers, in order) gets the chunks as a stream, to work on the next one while the runner
    saves this one's answers."""

    source: str  # the model id written with every answer (a checkpoint directory, `preset:tiny`, ...)
    chunk_size: int

    def fingerprint(self) -> str:
        """Hash of everything about the model that can change an answer; a resume refuses a different one."""
        ...

    def record(self) -> dict:
        """What config.json records about the model: backend, scheduling, device, dtype, device name."""
        ...

    def prompt(self, request: Request) -> str:
        """The exact text the model is prompted with (`llava-eval generate --show-prompt`)."""
        ...


def digest(*parts) -> str:
    """Short sha256 over the parts (bytes as they are, anything else as JSON): the one hash rule of every
    fingerprint, whether the model package or the harness computes it."""
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]
