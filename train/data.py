"""Training data in the LLaVA conversation format: loading, validation, subsampling and modality lengths.

A data file is a JSON list (or JSONL) of `{"id", "image"?, "conversations": [{"from", "value"}, ...]}`
records, as LCS-558K and llava_v1_5_mix665k are published. Records are parsed once; images are only
named here (and checked to exist by `validate`), never opened: the dataset opens them per item.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

from llava_types import IMAGE_PLACEHOLDER, UserError

log = logging.getLogger(__name__)

HUMAN, GPT = "human", "gpt"
MAX_LISTED_PROBLEMS = 10
Folder = str | os.PathLike | None


class DataError(UserError):
    """A training data file that cannot be read, or that holds invalid samples."""


@dataclass(frozen=True)
class Sample:
    """One record. `turns` are (role, value) pairs as found in the file, a leading gpt turn included;
    `load_samples` keeps odd values (non-string, unknown role) as they are so that `validate` can
    report them."""

    id: str
    image: str | None
    turns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Problem:
    """Why one sample is invalid. `index` is its position in the list given to `validate`."""

    sample_id: str
    reason: str
    index: int = -1

    def __str__(self) -> str:
        return f"{self.sample_id}: {self.reason}"


def load_samples(path: str | os.PathLike) -> list[Sample]:
    """Parse a JSON list or JSONL file of LLaVA records into samples (ids kept as strings)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read training data {path}: {exc.strerror or exc}") from None
    records = _parse_records(text, path)
    bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        raise DataError(f"{path}: {len(bad)} records are not JSON objects (first at position {bad[0]})")
    return [_to_sample(r, i) for i, r in enumerate(records)]


def _parse_records(text: str, path: Path) -> list:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of records")
        return records
    # JSONL: one record per non-blank line.
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON on line {lineno}: {exc.msg} (expected a JSON list or JSONL)") \
                from None
    return records


def _to_sample(record: dict, index: int) -> Sample:
    conversations = record.get("conversations")
    turns: list[tuple] = []
    if isinstance(conversations, list):
        for turn in conversations:
            if isinstance(turn, dict):
                turns.append((turn.get("from"), turn.get("value")))
            else:
                turns.append((None, turn))
    sample_id = record.get("id")
    return Sample(id=f"#{index}" if sample_id is None else str(sample_id), image=record.get("image"),
                  turns=tuple(turns))


def validate(samples: list[Sample], image_folder: Folder, template: str | None = None) -> list[Problem]:
    """Every problem of every sample (a sample may have several), in sample order. With
    `template="plain"` (stage 1) the stricter pretraining shape is also required."""
    problems: list[Problem] = []
    root = os.path.normpath(os.fspath(image_folder)) if image_folder is not None else None
    for index, sample in enumerate(samples):
        reasons = _image_problems(sample.image, root) + _conversation_problems(sample)
        if template == "plain":
            reasons += _plain_problems(sample)
        problems.extend(Problem(sample.id, reason, index) for reason in reasons)
    return problems


def _image_problems(image, root: str | None) -> list[str]:
    if image is None:
        return []
    if not isinstance(image, str):
        return [f"image is not a path string: {image!r}"]
    if not image.strip():
        return ["empty image path"]
    if root is None:
        return ["the sample has an image but no image folder was given"]
    # Lexical check (no symlink resolution): image folders are often symlinks to shared storage.
    relative = os.path.normpath(image)
    if os.path.isabs(image) or relative == ".." or relative.startswith(".." + os.sep):
        return [f"image path {image!r} escapes the image folder"]
    if not os.path.isfile(os.path.join(root, relative)):
        return [f"missing image file {os.path.join(root, relative)}"]
    return []


def _conversation_problems(sample: Sample) -> list[str]:
    turns = sample.turns
    if not turns:
        return ["empty conversation (no turns)"]
    reasons = []
    for i, (role, value) in enumerate(turns):
        if role not in (HUMAN, GPT):
            reasons.append(f"turn {i}: unknown role {role!r} (expected 'human' or 'gpt')")
        if not isinstance(value, str):
            reasons.append(f"turn {i}: value is not a string: {type(value).__name__}")
        elif role == GPT and not value.strip():
            reasons.append(f"turn {i}: empty answer")
    if reasons:
        return reasons
    reasons += _alternation_problems([role for role, _ in turns])
    n_placeholders = sum(value.count(IMAGE_PLACEHOLDER) for _, value in turns)
    if n_placeholders > 1:
        reasons.append(f"{n_placeholders} {IMAGE_PLACEHOLDER} placeholders (at most one is allowed)")
    if n_placeholders and sample.image is None:
        reasons.append(f"{IMAGE_PLACEHOLDER} placeholder in a sample without an image")
    return reasons


def _alternation_problems(roles: list[str]) -> list[str]:
    # Reference: llava/train/train.py preprocess_v1 ("Skip the first one if it is not from human", then
    # `assert role == conv.roles[j % 2]`).
    offset = 1 if roles[0] == GPT else 0
    rest = roles[offset:]
    if not rest:
        return ["empty conversation after skipping the leading gpt turn"]
    for j, role in enumerate(rest):
        expected = HUMAN if j % 2 == 0 else GPT
        if role != expected:
            return [f"turn {j + offset}: expected a {expected} turn, got {role} (turns must alternate human/gpt)"]
    if rest[-1] == HUMAN:
        # Reference: preprocess_v1 masks the whole sample ("tokenization mismatch") when the last round
        # has no answer, so such a sample teaches nothing.
        return [f"turn {len(roles) - 1}: ends with a human turn that has no answer"]
    return []


def _plain_problems(sample: Sample) -> list[str]:
    # Reference: llava/train/train.py preprocess_plain (`assert len(source) == 2` and
    # `assert DEFAULT_IMAGE_TOKEN in source[0]['value']`; the first turn is replaced by the image alone).
    reasons = []
    if len(sample.turns) != 2:
        reasons.append(f"plain (stage-1) samples need exactly 2 turns, got {len(sample.turns)}")
    first = sample.turns[0][1] if sample.turns else None
    if sample.image is None or not isinstance(first, str) or IMAGE_PLACEHOLDER not in first:
        reasons.append(f"plain (stage-1) samples need an image and {IMAGE_PLACEHOLDER} in the first turn")
    return reasons


def check_or_skip(samples: list[Sample], image_folder: Folder, skip_invalid: bool,
                  template: str | None = None) -> list[Sample]:
    """The samples if all are valid. Otherwise raise `DataError` listing the first problems, or, with
    `skip_invalid`, drop the invalid samples and log how many."""
    problems = validate(samples, image_folder, template)
    if not problems:
        return list(samples)
    bad = {p.index for p in problems}
    if not skip_invalid:
        listed = "\n".join(f"  {p}" for p in problems[:MAX_LISTED_PROBLEMS])
        more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
        raise DataError(f"{len(bad)} of {len(samples)} samples are invalid ({len(problems)} problems):\n"
                        f"{listed}{more}\nfix the data or skip invalid samples (skip_invalid / --skip-invalid)")
    kept = [s for i, s in enumerate(samples) if i not in bad]
    log.warning("skipped %d invalid samples of %d (%d problems; first: %s)", len(bad), len(samples), len(problems),
                problems[0])
    return kept


def subsample(samples: list[Sample], fraction: float, seed: int) -> list[Sample]:
    """A seeded random subset of round(fraction * len) samples in their original order (the paper's
    data-efficiency experiment)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise DataError(f"data fraction must be in (0, 1], got {fraction!r}")
    n = round(fraction * len(samples))
    if n == 0 and samples:
        raise DataError(f"data fraction {fraction} keeps no sample of {len(samples)}")
    if n == len(samples):
        return list(samples)
    keep = sorted(random.Random(seed).sample(range(len(samples)), n))
    return [samples[i] for i in keep]


def modality_lengths(samples: list[Sample]) -> list[int]:
    """Whitespace word count over all turns, positive for samples with an image, negative without.

    Reference: llava/train/train.py LazySupervisedDataset.modality_lengths (the leading gpt turn counts).
    """
    lengths = []
    for sample in samples:
        words = sum(len(value.split()) for _, value in sample.turns)
        lengths.append(words if sample.image is not None else -words)
    return lengths

