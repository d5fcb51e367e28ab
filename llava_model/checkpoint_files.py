"""Read a checkpoint directory's files as hostile input. No code a checkpoint ships ever runs: a directory
whose JSON configs carry `auto_map` is refused before anything is loaded, and every transformers loader is
called with `trust_remote_code=False`. A corrupt file (bad JSON or UTF-8, truncated safetensors, garbage
tokenizer, config values of the wrong type) raises one CheckpointError that names the file.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import CheckpointError

# Files whose keys are tokens rather than settings: a token spelled "auto_map" is no code reference, and
# transformers never looks for `auto_map` in them.
VOCABULARY_FILES = frozenset({"tokenizer.json", "vocab.json", "added_tokens.json"})


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message for a one-line error: lines joined, cut at `limit` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def read_json(path: Path):
    """Parse a JSON file; a missing, unreadable, non-UTF-8, malformed or absurdly nested file is a
    CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not UTF-8 text (corrupt or not a JSON file)") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a config") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {one_line(exc)}") from None


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object (every config file does)."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} holds a JSON {type(value).__name__}, not an object; is it a config file?")
    return value


def _holds_key(value, key: str) -> bool:
    """Whether `key` names a field of any object inside `value` (iterative: a hostile file may nest deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if key in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def refuse_remote_code(directory: Path) -> None:
    """Refuse a checkpoint whose configs point transformers at Python files of its own (`auto_map`, at the
    top level or nested as in `text_config`), however transformers would resolve it."""
    for path in sorted(directory.glob("*.json")):
        if path.name in VOCABULARY_FILES or not path.is_file():
            continue
        if _holds_key(read_json(path), "auto_map"):
            raise CheckpointError(f"checkpoint {directory} ships its own code (auto_map in {path.name}); "
                                  "llava-eval never runs code from a checkpoint")


CONFIG_FILE = "config.json"


def checkpoint_config(directory: Path) -> tuple[Path, dict]:
    """(path, content) of a checkpoint directory's config.json, read only after the directory is known to ship
    no code (`refuse_remote_code`): what a model's architecture is read from."""
    refuse_remote_code(directory)
    path = directory / CONFIG_FILE
    return path, read_json_object(path)


@contextmanager
def quiet_loading():
    """Silence transformers' progress bars and load reports while a checkpoint loads: a bad checkpoint
    ends in one CheckpointError line that names the same keys, not in a table plus a traceback."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hub_logger.setLevel(hub_level)
        if bars:
            hf_logging.enable_progress_bar()


def load_config(config_class, directory: Path):
    """`config_class.from_pretrained(directory)` for a local directory; any failure names the directory."""
    try:
        return config_class.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - config validation raises many types on hostile values
        raise CheckpointError(f"cannot load the config in {directory}: {one_line(exc)}") from None


def check_safetensors(files) -> None:
    """Open each file's header (cheap: no tensor is read), so that a truncated, empty or garbage file is
    named before transformers reaches it."""
    from safetensors import SafetensorError, safe_open

    for f in files:
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read weights {f}: {one_line(exc)}") from None


def read_weight_file(path: Path) -> dict:
    """The tensors of one `.safetensors` file, or of a `.bin` file unpickled with `weights_only=True`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read weights {path}: {one_line(exc)}") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise CheckpointError(f"cannot read weights {path}: {one_line(exc)}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path} does not hold a dictionary of named tensors")
    return state


def read_weights(path: Path) -> dict:
    """All tensors of a checkpoint directory: safetensors, else `*.bin` read with `weights_only=True`."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        files = sorted(p for p in path.glob("*.bin") if p.name not in ("training_args.bin",))
    if not files:
        raise CheckpointError(f"no weights (*.safetensors or *.bin) in {path}")
    state = {}
    for f in files:
        state.update(read_weight_file(f))
    return state


def load_tokenizer(path: Path):
    """The checkpoint's tokenizer. A Llama tokenizer is loaded as `LlamaTokenizer` by name: next to a
    `model_type: llava` config, AutoTokenizer picks a generic backend that converts `tokenizer.model`
    without SentencePiece's dummy-prefix space, which changes the ids after `<image>`."""
    from transformers import AutoTokenizer, LlamaTokenizer

    config_file = path / "tokenizer_config.json"
    tok_config = read_json_object(config_file) if config_file.is_file() else {}
    llama = tok_config.get("tokenizer_class") in ("LlamaTokenizer", "LlamaTokenizerFast")
    loader = LlamaTokenizer if llama else AutoTokenizer
    try:
        with quiet_loading():
            return loader.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - tokenizers raise KeyError, TypeError, ... on corrupt files
        raise CheckpointError(f"cannot load the tokenizer of {path}: {one_line(exc)}") from None
