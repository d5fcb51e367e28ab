"""What makes a run directory safe to resume: fingerprints that refuse to mix answers made under different
settings, a predictions reader that repairs a torn last line, and the environment record of the run's config
(the lock against two writers is the run directory's: rundir.RunLock).

Every prediction line carries `fp`: the fingerprints of its prompt (the rendered conversation and the
images' bytes), the generation settings, the task's generation version (`Task.version`: prompt and request;
a scorer fix bumps `Task.scoring_version` instead, which no answer depends on) and the model. On a rerun into
the same directory, lines whose fingerprints still hold are kept and their docs skipped; any difference
stops the run and names the setting that changed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from llava_types import UserError, digest

from .redact import redact_argv

_DESCRIBE = {"model": "a different model (weights, tokenizer, template or image preprocessing)",
             "settings": "different generation settings", "task_version": "a different task version",
             "prompt": "prompt",
             "image": "image"}


class RunStateError(UserError):
    pass


# ---- fingerprints ---------------------------------------------------------------------------------------
def settings_fingerprint(settings) -> str:
    return digest(asdict(settings))


def prompt_fingerprint(request) -> str:
    """The conversation turns (role and text) and the request's image preprocessing; the template that
    renders them is part of the model fingerprint."""
    return digest([[m.role, m.text] for m in request.messages], request.image_mode)


def image_fingerprint(images) -> str:
    """The images' content: raw bytes, a file's bytes, or a PIL image's pixels."""
    return digest(*(_image_bytes(im) for im in images))


def _image_bytes(image) -> bytes:
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | os.PathLike):
        return Path(image).read_bytes()
    if hasattr(image, "tobytes"):  # PIL image
        return f"{image.mode}{image.size}".encode() + image.tobytes()
    raise TypeError(f"cannot fingerprint image of type {type(image).__name__}")


def check_fingerprints(path: Path, rows: dict, expected: dict, per_doc: dict | None = None) -> None:
    """Refuse when a stored prediction was made under other settings than `expected` (model, settings,
    task_version), or when for a doc id in `per_doc` the stored fingerprints differ from the given ones
    (prompt, image). Lines without fingerprints (written by another tool) are refused too: their
    provenance is unknown."""
    for doc_id, row in rows.items():
        fp = row.get("fp")
        if not isinstance(fp, dict):
            raise RunStateError(f"{path}: the prediction for {doc_id!r} has no fingerprints (not written by "
                                "llava-eval run); use a new --out")
        for key, value in expected.items():
            if fp.get(key) != value:
                raise RunStateError(
                    f"{path}: the stored predictions were made with {_DESCRIBE[key]} "
                    f"({key} fingerprint {fp.get(key)} here, {value} now); resuming would mix results. "
                    "Use a new --out, or delete this task's folder to start it over")
        for key, value in (per_doc or {}).get(doc_id, {}).items():
            if fp.get(key) != value:
                raise RunStateError(
                    f"{path}: the {_DESCRIBE[key]} of {doc_id!r} changed since its prediction was made "
                    f"({key} fingerprint {fp.get(key)} here, {value} now); use a new --out, or delete this "
                    "task's folder to start it over")


# ---- predictions file -----------------------------------------------------------------------------------
def load_prediction_rows(path: Path, repair: bool = False) -> dict:
    """doc id -> last line for that doc. A last line cut off by a crash (no newline, not valid JSON) is
    cut away when `repair` is set (the resume path) and ignored otherwise; a broken line anywhere else,
    or one without a string or integer question_id and a string `text` or `error`, is an error."""
    rows: dict = {}
    if not path.is_file():
        return rows
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # text after the last newline: empty for a file that ends cleanly
    if tail.strip():
        try:
            json.loads(tail)
            lines.append(tail)  # a complete line that only lacks its newline
        except ValueError:  # not JSON, or not UTF-8 (cut inside a character)
            if repair:
                keep = len(data) - len(tail)
                with path.open("r+b") as f:
                    f.truncate(keep)
                    f.flush()
                    os.fsync(f.fileno())
                print(f"repaired {path}: removed a partial last line ({len(tail)} bytes) left by an interrupted "
                      "write", file=sys.stderr)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8
            raise RunStateError(f"{path}:{number}: not valid JSON (the file is damaged; delete the line or "
                                "the file to redo those docs)") from None
        problem = _line_problem(row)
        if problem:
            raise RunStateError(f"{path}:{number}: {problem} (the file is damaged; delete the line or the file "
                                "to redo that doc)")
        rows[row["question_id"]] = row
    return rows


def _line_problem(row) -> str | None:
    if not isinstance(row, dict):
        return "expected a JSON object with a question_id"
    doc_id = row.get("question_id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        return "expected a JSON object with a question_id (a string or an integer)"
    if "text" in row:
        return None if isinstance(row["text"], str) else f"'text' must be a string, not {type(row['text']).__name__}"
    for key in ("error", "missing"):
        if key in row:
            return None if isinstance(row[key], str) else f"'{key}' must be a string"
    return "the line has neither 'text' nor 'error'"


# ---- environment ----------------------------------------------------------------------------------------
def environment(device: dict | None = None) -> dict:
    """Versions and provenance recorded in config.json, with the model's `device` record (device, dtype,
    device name) when given."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    env = {"llava_eval": ver("llava-eval"), "git_commit": git_commit(), "python": platform.python_version(),
           "torch": ver("torch"), "transformers": ver("transformers"), "platform": platform.platform(),
           "command": redact_argv([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return env | (device or {})


def git_commit() -> str | None:
    """Commit of the source tree this package runs from (with `-dirty` for local changes); None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
