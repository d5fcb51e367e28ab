"""One loader for every data source of a task, and safe image resolution.

Sources: `synthetic` (the built-in shapes world), `hub` / `hub:OWNER/NAME[:CONFIG][@REVISION]` (Hugging Face
datasets, the task's pinned source by default), a local `.jsonl` / `.parquet` file or a folder of them
(same row schema; images as bytes or paths under the data root), and `llava:DIR` (the original LLaVA
`playground/data/eval` layout). Rows are schema-checked at load; images are decoded only when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tasks.base import HubSource, Task, TaskError

SYNTHETIC_ROWS = 48


class Docs(Sequence):
    """Rows of a task, indexable and sized; image columns stay undecoded until a request needs them."""

    def __init__(self, rows, source: str):
        self._rows = rows
        self.source = source

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
    if data == "synthetic":
        docs = Docs(task.synthetic_docs(limit or SYNTHETIC_ROWS, seed=seed), f"synthetic(seed={seed})")
    elif data == "hub" or data.startswith("hub:"):
        docs = _load_hub(task, data[4:] if data.startswith("hub:") else None)
    elif data.startswith("llava:"):
        root = Path(data[len("llava:"):])
        if not root.is_dir():
            raise TaskError(f"original LLaVA eval folder not found: {root}")
        docs = Docs(task.llava_layout_docs(root), f"llava:{root}")
    else:
        docs = _load_files(Path(data))
    if task.keep_rows:
        docs = _keep_rows(docs, *task.keep_rows)
    check_schema(task, docs)
    if limit is not None and len(docs) > limit:
        docs = Docs(docs[:limit], docs.source + f"[:{limit}]")
    return docs


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
    raise TaskError(f"cannot load {source}: {str(last_error).splitlines()[0] if last_error else 'unknown'}")


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


def _load_files(path: Path) -> Docs:
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
    try:
        ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    except Exception as exc:  # noqa: BLE001 - malformed files raise many types
        raise TaskError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return Docs(_undecoded(ds), str(path))


_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "id": lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
    "list[str]": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
    "image": lambda v: v is None or isinstance(v, (bytes, str, dict)) or hasattr(v, "convert"),
    "images": lambda v: isinstance(v, (list, tuple)),
    "any": lambda v: True,
}


def check_schema(task: Task, docs: Docs, sample: int = 200) -> None:
    """Every required column present, and values of the declared type (nulls only where optional)."""
    if len(docs) == 0:
        raise TaskError(f"task {task.name}: {docs.source} has no rows")
    step = max(1, len(docs) // sample)
    for index in range(0, len(docs), step):
        row = docs[index]
        for column, kind in task.schema.items():
            optional = kind.endswith("?")
            kind = kind.rstrip("?")
            if column not in row:
                if optional or (kind == "image" and column == "image"):
                    continue
                raise TaskError(f"task {task.name}: column {column!r} missing in {docs.source} "
                                f"(row {index}; columns: {', '.join(sorted(row))})")
            value = row[column]
            if value is None and (optional or kind == "image"):
                continue
            if not _TYPE_CHECKS[kind](value):
                raise TaskError(f"task {task.name}: column {column!r} should be {kind} but row {index} of "
                                f"{docs.source} has {type(value).__name__} {str(value)[:40]!r}")


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
