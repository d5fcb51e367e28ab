"""Row checks at load: every row of a task's data against its schema (column present, value of the declared
type) and every doc id once. A datasets.Dataset is read column by column in batches, never its image
columns, so a 200K-row hub split with images is checked in well under a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.base import Task, TaskError, shown

if TYPE_CHECKING:
    from .data import Docs

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
_IMAGE_KINDS = ("image", "images")
_ABSENT = object()  # a column the row does not have


def _accepts(column: str, kind: str):
    """value -> whether `column` of declared `kind` may hold it (_ABSENT: the row lacks the column)."""
    optional, kind = kind.endswith("?"), kind.rstrip("?")
    type_ok = _TYPE_CHECKS[kind]
    may_lack = optional or (kind == "image" and column == "image")  # text-only rows have no image column
    may_be_null = optional or kind == "image"
    return lambda v: may_lack if v is _ABSENT else may_be_null if v is None else type_ok(v)


def _problem(column: str, kind: str, value) -> str:
    if value is _ABSENT:
        return f"column {column!r} missing"
    return f"column {column!r} should be {kind.rstrip('?')} but has {type(value).__name__} {shown(value)}"


def row_problem(schema: dict[str, str], row: dict) -> str | None:
    """What is wrong with one row under `schema` (the first problem), or None."""
    for column, kind in schema.items():
        value = row.get(column, _ABSENT)
        if not _accepts(column, kind)(value):
            return _problem(column, kind, value)
    return None


def required_columns(schema: dict[str, str]) -> list[str]:
    """The columns every row must have."""
    return [column for column, kind in schema.items() if not _accepts(column, kind)(_ABSENT)]


def check_schema(task: Task, docs: Docs) -> None:
    """Every row (not a sample): each required column present, values of the declared type (nulls only where
    optional). Image columns are checked lightly (a dataset's column type; a row's value type): images are
    decoded per request, where a bad one is that row's error."""
    if len(docs) == 0:
        raise TaskError(f"task {task.name}: {docs.source} has no rows")
    rows = docs.rows
    plain = task.schema
    if hasattr(rows, "column_names"):
        plain = {c: k for c, k in task.schema.items() if k.rstrip("?") not in _IMAGE_KINDS}
        _check_image_features(task, rows, docs.source)
    checks = {column: _accepts(column, kind) for column, kind in plain.items()}
    for start, batch in _column_batches(rows, list(plain)):
        for column, values in batch.items():
            if all(map(checks[column], values)):
                continue
            offset, value = next((i, v) for i, v in enumerate(values) if not checks[column](v))
            hint = f" (columns: {', '.join(sorted(_columns_of(rows, start + offset)))})" if value is _ABSENT else ""
            raise TaskError(f"task {task.name}: {docs.source} row {start + offset + 1}: "
                            f"{_problem(column, plain[column], value)}{hint}")


def _check_image_features(task: Task, ds, source: str) -> None:
    """A dataset's image columns: present (unless they may be absent) and of an image-like type; values unread."""
    for column, kind in task.schema.items():
        base = kind.rstrip("?")
        if base not in _IMAGE_KINDS:
            continue
        if column not in ds.column_names:
            if not _accepts(column, kind)(_ABSENT):
                raise TaskError(f"task {task.name}: column {column!r} missing in {source} "
                                f"(columns: {', '.join(sorted(ds.column_names))})")
            continue
        feature = ds.features[column]
        if not _image_like(getattr(feature, "feature", None) if base == "images" else feature):
            raise TaskError(f"task {task.name}: column {column!r} should be {base} but {source} has {feature}")


def _image_like(feature) -> bool:
    """An image feature, a path or bytes column, or a {'bytes', 'path'} struct."""
    import datasets

    if isinstance(feature, datasets.Value):
        return feature.dtype in ("string", "large_string", "binary", "large_binary")
    return isinstance(feature, (datasets.Image, dict))


def check_doc_ids(task: Task, docs: Docs) -> None:
    """No doc id twice: answers are keyed by doc id, so a repeated id would score one row with another's
    answer. Ids come from the task's own rule over the rows without their images."""
    plain = [c for c, k in task.schema.items() if k.rstrip("?") not in _IMAGE_KINDS]
    first: dict = {}
    repeats = []
    for start, batch in _column_batches(docs.rows, plain):
        for offset, values in enumerate(zip(*batch.values(), strict=True)):
            row = {c: v for c, v in zip(batch, values, strict=True) if v is not _ABSENT}
            doc_id = task.doc_id(row, start + offset)
            if doc_id in first:
                repeats.append((doc_id, first[doc_id], start + offset + 1))
            else:
                first[doc_id] = start + offset + 1
    if repeats:
        shown = ", ".join(f"{d!r} (rows {a} and {b})" for d, a, b in repeats[:5])
        more = f" (+{len(repeats) - 5} more)" if len(repeats) > 5 else ""
        raise TaskError(f"task {task.name}: duplicate doc ids in {docs.source}: {shown}{more}")


def _column_batches(rows, columns: list[str], size: int = 10_000):
    """(start index, column -> values) over all rows, `size` at a time; _ABSENT where a row lacks a column.
    A datasets.Dataset reads only these columns (never its images)."""
    if hasattr(rows, "column_names"):
        present = [c for c in columns if c in rows.column_names]
        batches = rows.select_columns(present).iter(batch_size=size) if present else iter(())
        for start in range(0, len(rows), size):
            batch = next(batches, {})
            n = min(size, len(rows) - start)
            yield start, {c: batch[c] if c in batch else [_ABSENT] * n for c in columns}
        return
    for start in range(0, len(rows), size):
        chunk = [rows[i] for i in range(start, min(start + size, len(rows)))]
        yield start, {c: [r.get(c, _ABSENT) for r in chunk] for c in columns}


def _columns_of(rows, index: int) -> list[str]:
    return list(rows.column_names) if hasattr(rows, "column_names") else list(rows[index])
