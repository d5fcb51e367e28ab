"""Judge configuration: one YAML file, every field also a CLI flag.

```yaml
provider: openai            # openai | azure | compatible (any OpenAI-compatible base_url: vLLM, Ollama, ...)
base_url: null              # required for compatible; optional for openai (a proxy)
api_key_env: OPENAI_API_KEY # the NAME of the environment variable holding the key (the key is never stored)
azure_api_version: null     # azure only
models: {llava_bench: gpt-4-0314, mmvet: gpt-4-0613}   # per task; absent: the model the task's protocol names
runs: 3                     # judging runs per answer (LLaVA-Bench and MM-Vet report the mean of 3)
concurrency: 8
timeout: 60                 # seconds per request
retries: 6                  # per request, for 429 / 5xx / timeouts / connection errors
prices: {gpt-4-0613: {input: 30.0, output: 60.0}}     # USD per 1M tokens, for the cost line
cache: null                 # SQLite file; default <run dir>/judge-cache.sqlite
calibrations: []            # calibration.json files of `llava-eval judge calibrate` (relative to this file)
```
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from llava_types import UserError
from tasks.base import Task

from ..redact import looks_secret
from .calibration import read_calibration

PROVIDERS = ("openai", "azure", "compatible")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class JudgeConfigError(UserError):
    pass


@dataclass(frozen=True)
class JudgeConfig:
    provider: str = "openai"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    azure_api_version: str | None = None
    models: dict = field(default_factory=dict)
    runs: int = 3
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 6
    prices: dict = field(default_factory=dict)
    cache: str | None = None
    calibrations: tuple = ()

    def __post_init__(self):
        check_endpoint(self.api_key_env, self.base_url, "judge config")
        if self.provider not in PROVIDERS:
            raise JudgeConfigError(f"judge provider must be one of {', '.join(PROVIDERS)}; got {self.provider!r}")
        if self.provider == "compatible" and not self.base_url:
            raise JudgeConfigError("judge provider 'compatible' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if self.provider == "azure" and not (self.base_url and self.azure_api_version):
            raise JudgeConfigError("judge provider 'azure' needs base_url (the endpoint) and azure_api_version")
        for name in ("runs", "concurrency", "retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "retries" else 1):
                raise JudgeConfigError(f"judge {name} must be a positive integer, got {value!r}")
        if not _non_negative_number(self.timeout) or self.timeout == 0:
            raise JudgeConfigError(f"judge timeout must be a positive number of seconds, got {self.timeout!r}")
        if not isinstance(self.calibrations, list | tuple) or not all(isinstance(p, str) for p in self.calibrations):
            raise JudgeConfigError("judge calibrations must be a list of calibration.json paths")
        if not isinstance(self.models, dict) or not isinstance(self.prices, dict):
            raise JudgeConfigError("judge models and prices must be mappings")
        for model, price in self.prices.items():
            if not (isinstance(price, dict) and set(price) == {"input", "output"}):
                raise JudgeConfigError(f"judge price of {model!r} needs exactly input and output (USD per 1M tokens)")
            for side, value in price.items():
                if not _non_negative_number(value):
                    raise JudgeConfigError(f"judge price of {model!r}: {side} must be a number of USD per 1M tokens "
                                           f"(0 or more), got {value!r}")

    def model_for(self, task: Task) -> str:
        """The judge model of a judged task: the one configured for it, else the one its protocol names."""
        return self.models.get(task.name) or task.judge.model

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise JudgeConfigError(f"the judge needs an API key in the environment variable {self.api_key_env}, "
                                   "which is not set")
        return key

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.prices.get(model)
        if price is None:
            return None
        return (prompt_tokens * price["input"] + completion_tokens * price["output"]) / 1e6


def _non_negative_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_endpoint(api_key_env, base_url, source: str = "command line") -> None:
    """Refuse a key where the name of its environment variable belongs, and a base_url that carries
    credentials; the message never repeats the value, which may be a secret."""
    option = "--api-key-env" if source == "command line" else f"{source}: api_key_env"
    if api_key_env is not None and (not isinstance(api_key_env, str) or not ENV_NAME.fullmatch(api_key_env)
                                    or looks_secret(api_key_env)):
        raise JudgeConfigError(f"{option} must name an environment variable (letters, digits, _), not hold a "
                               "key; the value given is not shown")
    option = "--base-url" if source == "command line" else f"{source}: base_url"
    if base_url is not None and (not isinstance(base_url, str) or looks_secret(base_url)):
        raise JudgeConfigError(f"{option} must be a plain URL without credentials (user:password@, key "
                               "parameters); put the key in the environment variable named by api_key_env. The "
                               "value given is not shown")


def load_judge_config(path: str | Path | None = None, **overrides) -> JudgeConfig:
    """The config from a YAML file (optional) with CLI overrides (None values ignored)."""
    import yaml

    values: dict = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise JudgeConfigError(f"judge config {path} is a folder; name the YAML file")
        if not path.is_file():
            raise JudgeConfigError(f"judge config not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise JudgeConfigError(f"judge config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise JudgeConfigError(f"judge config {path}: expected a mapping of settings")
        if isinstance(loaded.get("calibrations"), list):  # relative to the config file, wherever it is used from
            loaded["calibrations"] = [str(path.parent / p) if isinstance(p, str) else p for p in loaded["calibrations"]]
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "api_key" in values:
        raise JudgeConfigError("the judge config holds no key: put it in an environment variable and name that "
                               "variable with api_key_env")
    known = {f.name for f in dataclasses.fields(JudgeConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise JudgeConfigError(f"unknown judge settings: {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    config = JudgeConfig(**values)
    for calibration in config.calibrations:
        read_calibration(Path(calibration))  # a wrong file stops here, before anything is judged
    return config
