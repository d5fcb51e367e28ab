"""What a backend module hands the registry (`BackendEntry`: how to open it, which checkpoints and names it
takes) and what it is opened with (`BackendOptions`: the command line's model and engine options). A backend
reads the options that apply to it and ignores the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from llava_types import Backend


@dataclass(frozen=True)
class BackendOptions:
    """How to load and drive a model."""

    device: str | None = None  # torch device; None: cuda if available, else cpu
    dtype: str = "auto"  # weights dtype: auto (float16 on GPU, float32 on CPU), float32, float16, bfloat16
    template: str | None = None  # conversation template instead of the checkpoint's own
    image_mode: str | None = None  # image preprocessing (pad, crop) instead of the checkpoint's own
    vision_tower: str | None = None  # local CLIP directory for an original LLaVA checkpoint
    batch_size: int = 8  # rows per generation batch
    engine: str = "fast"  # scheduling: fast (prefix sharing) or reference (sorted batches)
    base_url: str | None = None  # served: the OpenAI-compatible base URL (http://127.0.0.1:8000/v1)
    api_key_env: str | None = None  # served: NAME of the environment variable holding its key (None: no key)
    served_mode: str = "chat"  # served: chat (chat completions) or generate (SGLang's raw-prompt /generate)
    max_in_flight: int = 64  # served: requests in flight at most (the window shrinks on 429)
    request_timeout: float = 300.0  # served: seconds per request
    request_retries: int = 6  # served: tries after the first, for 429 / 5xx / timeouts / malformed replies
    image_size: int | None = None  # served, vllm: side the images are preprocessed to (None: 336, LLaVA-1.5)
    tensor_parallel: int = 1  # vllm: GPUs per engine
    data_parallel: int = 1  # vllm: engine replicas


def _claims_nothing(config: dict) -> bool:
    return False


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend. `open(model, options)` loads the model (heavy imports inside it, so that the
    registry stays cheap to import); `claims(config)` says whether a checkpoint directory whose config.json
    holds `config` is one this backend loads, and `architectures` names those for the error that lists
    them; `names()` are model names it loads without a path (presets, checkpoints shipped in the package)."""

    open: Callable[[str, BackendOptions], Backend]
    architectures: str = ""
    claims: Callable[[dict], bool] = _claims_nothing
    names: Callable[[], Iterable[str]] = tuple
