"""The CLIP vision tower of an original LLaVA checkpoint (or of a training run built from an LLM and a
tower): a local directory (given, or next to the checkpoint), the Hugging Face cache, or the hub. The hub
is asked once, without retries, before downloading, so a missing tower fails in one line at once rather
than after half a minute of retried requests.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint_files import one_line, quiet_loading, read_weights, refuse_remote_code
from .errors import CheckpointError

HINT = "pass --vision-tower DIR with a local CLIP checkpoint"


def _looks_like_path(spec: str) -> bool:
    # Hub ids are `name` or `owner/name`; anything else can only mean a directory.
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def tower_dir(tower_src: str, checkpoint: Path | None = None, need_weights: bool = True) -> Path:
    """A local directory holding the tower's config (and weights when `need_weights`). A relative
    `tower_src` is also looked up inside `checkpoint`."""
    local = Path(tower_src).expanduser()
    if checkpoint is not None and not local.is_absolute() and not local.is_dir() and (checkpoint / tower_src).is_dir():
        local = checkpoint / tower_src
    if local.is_dir():
        directory = local
    elif _looks_like_path(tower_src):
        raise CheckpointError(f"vision tower directory {tower_src!r} not found; {HINT}")
    else:
        directory = _from_hub(tower_src, need_weights)
    refuse_remote_code(directory)
    return directory


def _from_hub(repo_id: str, need_weights: bool) -> Path:
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, snapshot_download

    patterns = ["*.json", "*.safetensors"] if need_weights else ["*.json"]
    try:
        cached = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
        if not need_weights or any(cached.glob("*.safetensors")):
            return cached
    except ValueError as exc:  # HFValidationError: not a repo id either
        raise CheckpointError(f"vision tower {repo_id!r} is neither a local directory nor a hub id "
                              f"({one_line(exc)}); {HINT}") from None
    except OSError:  # not in the cache
        pass
    if constants.HF_HUB_OFFLINE:
        raise CheckpointError(f"vision tower {repo_id!r} is neither a local directory nor in the Hugging Face "
                              f"cache, and HF_HUB_OFFLINE is set; {HINT}")
    with quiet_loading():
        try:
            # One request without retries: offline, the download would retry every file for ~25 s.
            get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=10)
            return Path(snapshot_download(repo_id, allow_patterns=patterns))
        except Exception as exc:  # noqa: BLE001 - hub and HTTP errors come in many types
            raise CheckpointError(f"cannot fetch vision tower {repo_id!r}: {one_line(exc)}; {HINT}") from None


def vision_tower_weights(directory: Path) -> dict:
    """CLIP vision weights from the tower's own checkpoint, under the converted key names."""
    out = {}
    # Full CLIP checkpoints (openai/clip-vit-*) prefix the tower with `vision_model.`; a CLIPVisionModel
    # saved by transformers 5 does not. Text tower and projections are not part of LLaVA.
    for key, value in read_weights(directory).items():
        key = key.removeprefix("vision_model.")
        if key.split(".", 1)[0] in ("embeddings", "pre_layrnorm", "encoder", "post_layernorm"):
            out["model.vision_tower." + key] = value
    if not out:
        raise CheckpointError(f"no CLIP vision weights in the vision tower checkpoint {directory}")
    return out
