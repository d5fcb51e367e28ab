"""One loader for every data source of a task, and safe image resolution.

Sources: `synthetic` (the built-in shapes world), `hub` / `hub:OWNER/NAME[:CONFIG][@REVISION]` (Hugging Face
datasets, the task's pinned source by default), a local `.jsonl` / `.parquet` file or a folder of them
(same row schema; images as bytes or paths under the data root), and `llava:DIR` (the original LLaVA
`playground/data/eval` layout). Every row is checked at load (llava_eval.schema), before any generation;
images are decoded only when used.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from tasks.base import HubSource, Task, TaskError, iter_jsonl, read_json, require, shown

from .schema import check_doc_ids, check_schema, required_columns, row_problem

SYNTHETIC_ROWS = 48
HUB_TIMEOUT_S = 3.0  # how long the Hub may take to answer before it counts as unreachable


class Docs(Sequence):
    """Rows of a task, indexable and sized; image columns stay undecoded until a request needs them."""

    def __init__(self, rows, source: str):
        self._rows = rows
        self.source = source

    @property
    def rows(self):
        """The underlying rows: a list of dicts, a datasets.Dataset (undecoded images) or a task's own view."""
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return dict(self._rows[index])

    def without_images(self, task: Task) -> Docs:
        """The same rows without the task's image columns: ids, scoring and submissions never need the
        images, and a hub split's image bytes would otherwise be read (and held) for every row."""
        columns = [c for c, kind in task.schema.items() if kind.rstrip("?") in ("image", "images")]
        rows = self._rows
        if hasattr(rows, "column_names"):
            drop = [c for c in columns if c in rows.column_names]
            return Docs(rows.remove_columns(drop) if drop else rows, self.source)
        return Docs([{k: v for k, v in dict(r).items() if k not in columns} for r in rows], self.source)


def load_docs(task: Task, data: str = "synthetic", *, data_root: str | None = None, limit: int | None = None,
              seed: int = 0) -> Docs:
    """The rows of `task` from a source, each checked against the task's schema and doc ids unique, before
    any model time is spent; `limit` keeps the first rows."""
    if data == "synthetic":
        docs = Docs(task.synthetic_docs(limit or SYNTHETIC_ROWS, seed=seed), f"synthetic(seed={seed})")
    elif data == "hub" or data.startswith("hub:"):
        docs = _load_hub(task, data[4:] if data.startswith("hub:") else None)
    elif data.startswith("llava:"):
        root = Path(data[len("llava:"):])
        if not root.is_dir():
            raise TaskError(f"original LLaVA eval folder not found: {root}")
        docs = Docs(_read_layout(task, root), f"llava:{root}")
    else:
        docs = _load_files(task, Path(data))
    if task.keep_rows:
        docs = _keep_rows(docs, *task.keep_rows)
    check_schema(task, docs)
    check_doc_ids(task, docs)
    if limit is not None and len(docs) > limit:
        docs = Docs(docs[:limit], docs.source + f"[:{limit}]")
    return docs


def _read_layout(task: Task, root: Path) -> list[dict]:
    """The task's rows from the original layout. The readers name the file and line of what they check; any
    other surprise in those files (a value of an unforeseen shape) is still one error, not a traceback."""
    try:
        return task.llava_layout_docs(root)
    except TaskError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, OSError) as exc:
        raise TaskError(f"task {task.name}: unexpected content in the original LLaVA files under {root} "
                        f"({type(exc).__name__}: {shown(str(exc), 80)})") from None


def _keep_rows(docs: Docs, column: str, values: tuple) -> Docs:
    rows = docs._rows
    if hasattr(rows, "column_names"):  # a datasets.Dataset: read the one column, never the images
        if column not in rows.column_names:
            raise TaskError(f"column {column!r} missing in {docs.source}")
        kept = rows.filter(lambda v: v in values, input_columns=[column])
    else:
        kept = [r for r in rows if r.get(column) in values]
    return Docs(kept, f"{docs.source}[{column} in {list(values)}]")


def _parse_hub_spec(task: Task, spec: str | None) -> HubSource:
    """`OWNER/NAME[:CONFIG][@REVISION]`; split and config default to the task's own source."""
    base = task.hub
    if spec is None:
        if base is None:
            raise TaskError(f"task {task.name} has no Hugging Face source; use --data FILE or synthetic")
        return base
    rest, _, revision = spec.partition("@")
    path, _, config = rest.partition(":")
    if path.count("/") != 1:
        raise TaskError(f"hub dataset {spec!r} should look like OWNER/NAME[:CONFIG][@REVISION]")
    return HubSource(path, split=base.split if base else "test", config=config or (base.config if base else None),
                     revision=revision or "main")


def _load_hub(task: Task, spec: str | None) -> Docs:
    import datasets

    source = _parse_hub_spec(task, spec)
    check_hub_reachable(source)
    last_error = None
    for path in (source.path, source.moved_to):
        if not path:
            continue
        try:
            ds = datasets.load_dataset(path, source.config, split=source.split, revision=source.revision)
        except Exception as exc:  # noqa: BLE001 - hub and cache errors come in many types
            last_error = exc
            continue
        rows = task.prepare_hub(_undecoded(ds), lambda config, split, _path=path: _undecoded(
            datasets.load_dataset(_path, config, split=split, revision=source.revision)))
        return Docs(rows, f"hub:{path}/{source.config or ''}@{source.revision}:{source.split}")
    offline = " (offline mode: is it in the local datasets cache?)" if datasets.config.HF_HUB_OFFLINE else ""
    raise TaskError(f"cannot load {source}{offline}: {_first_line(last_error) if last_error else 'unknown'}")


def check_hub_reachable(source: HubSource) -> None:
    """Ask the Hub about `source` with a short timeout, so that an unreachable Hub is one error within seconds
    instead of a minute of download retries. Offline mode (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE) skips the
    question: `datasets` then loads from its local cache. Any answer from the Hub, even "not found", passes;
    the load reports it."""
    import datasets
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if datasets.config.HF_HUB_OFFLINE:
        return
    answered = []

    def ask():
        try:
            HfApi().dataset_info(source.path, revision=source.revision, timeout=HUB_TIMEOUT_S)
        except HfHubHTTPError:  # the Hub answered (not found, gated, ...)
            pass
        except Exception:  # noqa: BLE001 - connection, proxy, DNS and TLS errors come in many types
            return
        answered.append(True)

    # A thread, because name resolution has no timeout of its own.
    probe = threading.Thread(target=ask, daemon=True)
    probe.start()
    probe.join(HUB_TIMEOUT_S + 1)
    if not answered:
        raise TaskError(f"cannot reach the Hugging Face Hub for {source.path} (offline?); use --data FILE or "
                        "llava:DIR, or set HF_DATASETS_OFFLINE=1 to use the local cache")


def _undecoded(ds):
    """Keep image columns as {'bytes', 'path'} so rows are cheap; decode happens per request."""
    import datasets

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(
                getattr(feature, "feature", None), datasets.Image):
            ds = ds.cast_column(name, type(feature)(datasets.Image(decode=False)))
    return ds


def _load_files(task: Task, path: Path) -> Docs:
    """Local .jsonl/.json/.parquet files: each checked here first (JSON lines line by line, against the task's
    schema, so that errors name the file and line), then read by `datasets` with its logging silenced."""
    import datasets

    datasets.disable_progress_bars()  # local files load in a blink; keep stdout clean for `score`
    if path.is_dir():
        files = sorted([*path.glob("*.parquet"), *path.glob("*.jsonl")])
    elif path.is_file():
        files = [path]
    else:
        raise TaskError(f"data not found: {path} (use synthetic, hub, hub:ID@REV, llava:DIR or a file)")
    kinds = {f.suffix for f in files}
    if not files or len(kinds) != 1 or kinds - {".parquet", ".jsonl", ".json"}:
        raise TaskError(f"{path}: expected .jsonl or .parquet files of one kind, found {sorted(kinds) or 'none'}")
    builder = "parquet" if kinds == {".parquet"} else "json"
    for file in files:
        (_check_parquet_file if builder == "parquet" else _check_json_file)(task, file)
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    except Exception as exc:  # noqa: BLE001 - malformed files raise many types
        raise TaskError(f"cannot read {path}: {_root_cause(exc)}") from None
    return Docs(_undecoded(ds), str(path))


def _check_json_file(task: Task, path: Path) -> None:
    """Every row of a JSON-lines file (or of a file holding one JSON array) is a JSON object and, when the task
    keeps it, of the task's schema. Errors name the file and line."""
    if path.suffix == ".json" and _is_json_array(path):
        items = read_json(path)
        rows = ((f"{path} item {i}", require(item, {}, f"{path} item {i}")) for i, item in enumerate(items, 1))
    else:
        rows = ((f"{path}:{number}", row) for number, row in iter_jsonl(path))
    count = 0
    for where, row in rows:
        count += 1
        problem = row_problem(task.schema, row) if _kept(task, row) else None
        if problem:
            raise TaskError(f"task {task.name}: {where}: {problem}")
    if not count:
        raise TaskError(f"{path}: no rows (the file is empty)")


def _is_json_array(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
    except OSError:
        return False  # the line reader reports it


def _check_parquet_file(task: Task, path: Path) -> None:
    """A parquet file by its footer: readable, not empty, with the task's required columns."""
    import pyarrow.parquet as pq

    try:
        rows, columns = pq.read_metadata(path).num_rows, pq.read_schema(path).names
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        raise TaskError(f"{path}: not a parquet file ({_root_cause(exc)})") from None
    if not rows:
        raise TaskError(f"{path}: no rows")
    missing = [c for c in required_columns(task.schema) if c not in columns]
    if missing:
        raise TaskError(f"task {task.name}: {path}: column {missing[0]!r} missing (columns: {', '.join(columns)})")


def _kept(task: Task, row: dict) -> bool:
    return not task.keep_rows or row.get(task.keep_rows[0]) in task.keep_rows[1]


@contextlib.contextmanager
def _quiet_datasets():
    """`datasets` logs its own multi-line account of a failed build on stderr; the caller reports one line."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost cause: `datasets` wraps the useful message in a generic one."""
    for _ in range(20):  # chains are short; a bound guards against a cycle
        inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if inner is None:
            break
        exc = inner
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def image_root(data: str, data_root: str | None) -> Path | None:
    """The folder a source's relative image paths start from: `--data-root`, else the folder of the
    original LLaVA layout (`llava:DIR`), else none."""
    if data_root:
        return Path(data_root)
    return Path(data[len("llava:"):]) if data.startswith("llava:") else None


def resolve_image(value, root: Path | None):
    """A row's image value -> bytes, a checked path, or a PIL image. Paths may not leave the data root."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if value is None or isinstance(value, (bytes, bytearray)) or hasattr(value, "convert"):
        return value
    path = Path(value)
    base = (root or Path.cwd()).resolve()
    full = (base / path).resolve()
    if not full.is_relative_to(base):
        raise TaskError(f"image path {value!r} escapes the data root {base}")
    return str(full)
