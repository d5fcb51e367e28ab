"""The typed options of `llava-eval run`: built once from the command line (`run_command.run_options`) and
passed down to the runner, so every layer reads one frozen value instead of a dozen loose arguments. The
field names are the command line's parameter names, so building one is a plain mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass(frozen=True)
class ModelOptions:
    """Which model answers, and how it is loaded."""

    model: str = "tiny-shapes"  # checkpoint directory, built-in checkpoint or preset name (--model)
    device: str | None = None  # torch device; None: cuda if available, else cpu (a rank's own GPU under torchrun)
    dtype: str = "auto"  # weights dtype; auto: float16 on GPU, float32 on CPU
    template: str | None = None  # conversation template replacing the checkpoint's own
    image_mode: str | None = None  # image preprocessing (pad, crop) replacing the checkpoint's own
    vision_tower: str | None = None  # local CLIP directory for an original LLaVA checkpoint
    engine: str = "fast"  # fast: prefix sharing per image; reference: the batched plain engine
    model_base_url: str | None = None  # served:NAME: the server's OpenAI-compatible base URL
    model_api_key_env: str | None = None  # served:NAME: NAME of the environment variable holding its key
    served_mode: str = "chat"  # served: chat completions, or SGLang's /generate with the prompt rendered here
    max_in_flight: int = 64  # served: requests in flight at most
    request_timeout: float = 300.0  # served: seconds per request
    request_retries: int = 6  # served: tries after the first; then the answer is missing
    image_size: int | None = None  # served, vllm: the side images are preprocessed to (None: 336)
    tensor_parallel: int = 1  # vllm: GPUs per engine
    data_parallel: int = 1  # vllm: engine replicas


@dataclass(frozen=True)
class JudgeOptions:
    """How the judged tasks of a run are judged once their answers are in (nothing is judged unless one of
    `judge_config`, `provider`, `base_url` is given)."""

    judge_config: str | None = None  # judge YAML file
    provider: str | None = None  # openai | azure | compatible
    base_url: str | None = None  # OpenAI-compatible endpoint
    api_key_env: str | None = None  # name of the environment variable holding the key
    judge_model: str | None = None  # judge model for every judged task
    runs: int | None = None  # judging runs per answer
    concurrency: int | None = None  # requests in flight
    timeout: float | None = None  # seconds per request
    retries: int | None = None  # retries per request
    no_cache: bool = False  # ask again even for cached verdicts
    allow_missing: float = 0.0  # share of missing verdicts (or unanswered requests) a task may have and be scored

    @property
    def configured(self) -> bool:
        return bool(self.judge_config or self.provider or self.base_url)

    def load(self):
        """The judge configuration these options describe (YAML file, then the overrides)."""
        import dataclasses

        from .judge.config import check_endpoint, load_judge_config
        from .judge.run import judged_tasks

        check_endpoint(self.api_key_env, self.base_url)
        models = {t: self.judge_model for t in judged_tasks()} if self.judge_model else None
        config = load_judge_config(self.judge_config, provider=self.provider, base_url=self.base_url,
                                   api_key_env=self.api_key_env, runs=self.runs, concurrency=self.concurrency,
                                   timeout=self.timeout, retries=self.retries)
        if models:
            config = dataclasses.replace(config, models={**config.models, **models})
        return config


@dataclass(frozen=True)
class RunOptions:
    """One `run`: which tasks on which rows into which directory, with which model, how to judge, and what it
    writes beside the run directory."""

    tasks: tuple[str, ...]  # task names, in the order they run
    out: Path  # the run directory
    data: str = "synthetic"  # data source: synthetic | hub[:...] | FILE | DIR | llava:DIR
    data_root: str | None = None  # root for image paths in local rows
    limit: int | None = None  # rows per task (None: all)
    batch_size: int = 8  # requests per model call
    resume: bool = False  # --resume: the run directory must exist
    progress: bool | None = None  # progress bars; None: on a terminal only
    suite: str | None = None  # the suite --suite named (its note is printed under the table)
    report: Path | None = None  # --report: the HTML report written once every task is scored
    leaderboard: Path | None = None  # --leaderboard: the CSV of this run's row and the paper's rows, written then too
    model: ModelOptions = field(default_factory=ModelOptions)
    judge: JudgeOptions = field(default_factory=JudgeOptions)

    @property
    def data_options(self) -> dict:
        """The options that decide a task's rows, as every task's metrics entry records them."""
        return {"data": self.data, "data_root": self.data_root, "limit": self.limit}

    @property
    def image_root(self) -> Path | None:
        from .data import image_root

        return image_root(self.data, self.data_root)


def take(cls, params: dict):
    """An instance of the options dataclass `cls` from the matching entries of `params` (removed from it)."""
    return cls(**{f.name: params.pop(f.name) for f in fields(cls) if f.name in params})
