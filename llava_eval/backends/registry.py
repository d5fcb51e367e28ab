"""Which backend answers for a `--model` value, and opening it. Resolution, first match wins:

    NAME:MODEL      a registered backend by name (`llava:DIR`, `served:NAME`, `vllm:DIR`), given MODEL
    a model name    the backend that lists it (`tiny-shapes`, the presets `tiny`, `tiny-112`, ...: llava)
    DIR             the backend that claims the architecture in DIR/config.json (model_type, architectures)

Anything else is one error line that lists what is valid. Adding a backend: one module with its
`BackendEntry` and one line in `BACKENDS`. Reference: torchtune's literal builder dicts. A backend's module is
imported when its entry is first used: `served:NAME` never imports torch (a second and a half of startup).
"""

from __future__ import annotations

import importlib
import re
import reprlib
from collections import UserDict
from pathlib import Path

from llava_model.errors import CheckpointError
from llava_types import Backend, UserError

from .entry import BackendEntry, BackendOptions


class LazyEntries(UserDict):
    """Backend name -> its `BackendEntry`; a value given as a module name is imported on first access."""

    def __getitem__(self, name: str) -> BackendEntry:
        value = self.data[name]
        if isinstance(value, str):
            value = self.data[name] = importlib.import_module(value, __package__).ENTRY
        return value


BACKENDS: LazyEntries = LazyEntries({
    "llava": ".llava",
    "llava-next": ".llava_next",
    "transformers": ".transformers_vlm",
    "served": ".served",
    "vllm": ".vllm_engine",
})

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9_.+-]*):(.*)", re.DOTALL)


def open_backend(model: str, options: BackendOptions) -> Backend:
    """The backend for `model`, loaded with `options`."""
    name, rest = resolve(model)
    return BACKENDS[name].open(rest, options)


def resolve(model: str) -> tuple[str, str]:
    """(backend name, the model as that backend takes it) for a `--model` value."""
    if not model.strip():
        raise UserError("--model is empty; name a checkpoint directory, a model name or BACKEND:MODEL")
    scheme = _SCHEME.fullmatch(model)
    if scheme and scheme[1] in BACKENDS:
        if not scheme[2]:
            raise UserError(f"--model {model!r} names the {scheme[1]} backend but no model after the colon")
        return scheme[1], scheme[2]
    for name, entry in BACKENDS.items():
        if model in entry.names():
            return name, model
    path = Path(model)
    if path.is_dir():
        return by_architecture(path), model
    if scheme and not path.exists():
        raise UserError(f"unknown backend {scheme[1]!r} in --model {model!r}; registered backends: "
                        f"{', '.join(BACKENDS)}")
    if path.exists() or "/" in model or model.startswith("."):
        raise CheckpointError(f"model {model!r} is not a checkpoint directory (missing or a file)")
    names = [n for entry in BACKENDS.values() for n in entry.names()]
    raise UserError(f"unknown model {model!r}: not a checkpoint directory, a model name ({', '.join(names)}) or "
                    f"BACKEND:MODEL with a registered backend ({', '.join(BACKENDS)})")


def by_architecture(path: Path) -> str:
    """The backend that claims the checkpoint in `path` by its config.json. No code a checkpoint ships runs,
    whichever backend would load it."""
    from llava_model.checkpoint_files import checkpoint_config

    config_file, config = checkpoint_config(path)
    for name, entry in BACKENDS.items():
        if entry.claims(config):
            return name
    found = reprlib.Repr()  # a hostile config.json may hold any value: show it short
    found.maxstring, found.maxlist, found.maxother = 40, 3, 40
    supported = "; ".join(entry.architectures for entry in BACKENDS.values() if entry.architectures)
    raise CheckpointError(f"{config_file}: unsupported model architecture (model_type "
                          f"{found.repr(config.get('model_type'))}, architectures "
                          f"{found.repr(config.get('architectures'))}); supported: {supported}")
