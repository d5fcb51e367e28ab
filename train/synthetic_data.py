"""The built-in synthetic training data (`synthetic:stage1[:N]`, `synthetic:stage2[:N[:MIX]]` data paths): the
shapes-world records written as a LLaVA JSON file and image folder, with progress lines, and only as many records
as a `--max-steps` run can draw (a 2-step run renders 32 images, not 40,000).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from llava_types import UserError
from synthetic.conversations import MIXES, stage1_records, stage2_records, write_dataset

from .progress import Progress

log = logging.getLogger("llava_train")


def samples_needed(recipe, max_steps: int | None) -> int | None:
    """How many records a run of `max_steps` optimizer steps can draw (None: no step limit, all of them);
    with a data fraction, enough that the kept subset still fills those steps."""
    if max_steps is None:
        return None
    return math.ceil(max_steps * recipe.global_batch_size / recipe.data_fraction)


def synthetic_data(spec: str, work_dir: Path, max_samples: int | None = None) -> tuple[str, str]:
    """`synthetic:stage1[:N]` / `synthetic:stage2[:N[:MIX]]` -> a LLaVA JSON file and its image folder; only
    the first `max_samples` of the N records are generated when fewer will be used."""
    _, kind, *rest = spec.split(":")
    count, mix = (rest + [None, None])[:2]
    ok = kind in ("stage1", "stage2") and len(rest) <= (2 if kind == "stage2" else 1)
    if not ok or (count is not None and not count.isdigit()) or (mix is not None and mix not in MIXES):
        raise UserError(f"bad synthetic data {spec!r}; use synthetic:stage1[:N] or synthetic:stage2[:N[:MIX]] "
                        f"(MIX: {', '.join(MIXES)})")
    n = int(count) if count else 2000
    used = n if max_samples is None else min(n, max_samples)
    if used < n:
        log.info("%s: generating %d of %d records (all that the run's steps can draw)", spec, used, n)
    progress = Progress(f"{spec}: generating records", used, log)
    records = stage1_records(used) if kind == "stage1" else stage2_records(used, mix=mix or "default")
    progress.finish()
    # Named by N, not by the records used: a resumed run with more steps reuses the images already rendered
    # (record i is the same for every N).
    out = work_dir / (f"synthetic-{kind}-{n}" + (f"-{mix}" if mix else ""))
    progress = Progress(f"{spec}: rendering images", sum("image" in r for r in records), log)
    path = write_dataset(records, out, f"{kind}.json", progress=progress)
    progress.finish()
    return str(path), str(out / "images")
