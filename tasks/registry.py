"""The task registry: `@register_task("pope")` on a Task class is the only index of benchmarks, and
suites are named lists of registered tasks. Unknown names fail with the nearest valid ones.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from .base import TaskError

TASKS: dict[str, type] = {}

# Reference: the twelve benchmarks of the LLaVA-1.5 paper (Tables 3 and 4) on the splits it reports.
SUITES: dict[str, tuple[str, ...]] = {
    "llava-1.5": (
        "vqav2_testdev", "gqa", "vizwiz_test", "scienceqa_img", "textvqa_val", "pope", "mme",
        "mmbench_en_dev", "mmbench_cn_dev", "seed_image", "llava_bench", "mmvet",
    ),
    # Every split that can be scored here without an evaluation server or a GPT judge.
    "llava-1.5-local": (
        "vqav2_val", "gqa", "vizwiz_val", "scienceqa_img", "textvqa_val", "pope", "mme",
        "mmbench_en_dev", "mmbench_cn_dev", "seed_image", "seed_all",
    ),
}


# What a run of the suite should tell its reader under the table: how its rows relate to the paper's twelve.
SUITE_NOTES: dict[str, str] = {
    "llava-1.5": "rows marked n/a are scored by a server (`llava-eval submit`) or a GPT judge (`llava-eval judge`); "
                 "--suite llava-1.5-local scores every benchmark that can be scored here",
    "llava-1.5-local": "not in this suite: llava_bench (LLaVA-Bench) and mmvet (MM-Vet), which need a GPT judge "
                       "(`--tasks llava_bench,mmvet` with `--judge-config FILE`, or `llava-eval judge RUN_DIR` later); "
                       "VQAv2 and VizWiz are scored on their val splits (test-dev and test: `llava-eval submit`)",
}


class UnknownTaskError(TaskError):
    pass


def register_task(name: str):
    def decorator(cls):
        if name in TASKS and TASKS[name] is not cls:
            raise ValueError(f"task {name!r} registered twice ({TASKS[name].__module__} and {cls.__module__})")
        cls.name = name
        TASKS[name] = cls
        return cls

    return decorator


def load_all() -> dict[str, type]:
    """Import every module of the `tasks` package so that their decorators run."""
    import tasks

    for info in pkgutil.iter_modules(tasks.__path__):
        if not info.name.startswith("_") and info.name not in ("registry", "base"):
            importlib.import_module(f"tasks.{info.name}")
    return TASKS


def _unknown(kind: str, name: str, valid) -> UnknownTaskError:
    near = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else f"; valid: {', '.join(sorted(valid))}"
    return UnknownTaskError(f"unknown {kind} {name!r}{hint}")


def get_task(name: str):
    """A fresh instance of the registered task `name`."""
    load_all()
    if name not in TASKS:
        raise _unknown("task", name, TASKS)
    return TASKS[name]()


def resolve(tasks: str | None = None, suite: str | None = None) -> list[str]:
    """Task names from a comma-separated list or a suite name, validated, in order, without repeats."""
    load_all()
    if suite:
        if suite not in SUITES:
            raise _unknown("suite", suite, SUITES)
        names = list(SUITES[suite])
    else:
        names = [t.strip() for t in (tasks or "").split(",") if t.strip()]
    if not names:
        raise UnknownTaskError("no tasks given: use --tasks T1,T2 or --suite S")
    for name in names:
        if name not in TASKS:
            raise _unknown("task", name, TASKS)
    return list(dict.fromkeys(names))
