"""The one loader: local JSONL and parquet rows (images as paths under a root or as bytes), schema
errors naming the column, image paths that try to leave the data root, and corrupt images that become
per-item errors (counted, never a crash or a silent skip). POPE serves as the example task."""

from __future__ import annotations

import io
import json

import pytest

from llava_eval.data import Docs, check_schema, load_docs, resolve_image
from llava_eval.runner import run
from tasks.base import TaskError
from tasks.registry import get_task


def png(colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format="PNG")
    return buf.getvalue()


def pope_rows(image_for):
    return [{"question_id": f"q{i}", "question": f"Is there a thing {i} in the image?",
             "answer": "yes" if i % 2 else "no", "category": ("adversarial", "popular", "random")[i % 3],
             "image": image_for(i)} for i in range(6)]


class EchoModel:
    def generate(self, requests):
        return ["Yes" for _ in requests]


def test_jsonl_with_image_paths_under_root(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(6):
        (tmp_path / "images" / f"{i}.png").write_bytes(png())
    data = tmp_path / "pope.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in pope_rows(lambda i: f"images/{i}.png")))
    docs = load_docs(get_task("pope"), str(data))
    assert len(docs) == 6 and docs[0]["image"] == "images/0.png"
    assert resolve_image(docs[0]["image"], tmp_path) == str((tmp_path / "images" / "0.png").resolve())


def test_parquet_with_image_bytes(tmp_path):
    import datasets

    rows = pope_rows(lambda i: {"bytes": png((10 * i, 0, 0)), "path": None})
    features = datasets.Features({"question_id": datasets.Value("string"), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string"), "category": datasets.Value("string"),
                                  "image": datasets.Image()})
    path = tmp_path / "pope.parquet"
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    docs = load_docs(get_task("pope"), str(path))
    image = docs[3]["image"]
    assert isinstance(image, dict) and image["bytes"] == png((30, 0, 0))


def test_missing_column_is_named(tmp_path):
    rows = pope_rows(lambda i: None)
    for r in rows:
        del r["category"]
    with pytest.raises(TaskError, match="column 'category' missing"):
        check_schema(get_task("pope"), Docs(rows, "test"))


def test_mistyped_column_is_named():
    rows = pope_rows(lambda i: None)
    rows[0]["question"] = 42
    with pytest.raises(TaskError, match="column 'question' should be str"):
        check_schema(get_task("pope"), Docs(rows, "test"))


def test_path_escaping_the_root_is_refused(tmp_path):
    with pytest.raises(TaskError, match="escapes the data root"):
        resolve_image("../../etc/passwd", tmp_path)
    with pytest.raises(TaskError, match="escapes the data root"):
        resolve_image("/etc/hostname", tmp_path)


def test_corrupt_and_escaping_images_are_counted_per_item(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(6):
        (tmp_path / "images" / f"{i}.png").write_bytes(png())
    (tmp_path / "images" / "2.png").write_bytes(png()[:40])  # truncated
    (tmp_path / "images" / "4.png").write_bytes(b"garbage")
    rows = pope_rows(lambda i: f"images/{i}.png")
    rows[5]["image"] = "../outside.png"
    data = tmp_path / "pope.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "run"
    results = run(EchoModel(), ["pope"], out, model_id="echo", data=str(data), data_root=str(tmp_path),
                  echo=lambda *_: None)
    metrics = results["pope"]["metrics"]
    assert metrics["n_errors"] == 3 and metrics["n_missing"] == 3 and metrics["n_docs"] == 6
    assert set(metrics["errors"]) == {"q2", "q4", "q5"}
    assert "escapes the data root" in metrics["errors"]["q5"] and "4.png" in metrics["errors"]["q4"]
    lines = [json.loads(x) for x in (out / "pope" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(x["question_id"] for x in lines) == [f"q{i}" for i in range(6)]


def test_unknown_data_source(tmp_path):
    with pytest.raises(TaskError, match="data not found"):
        load_docs(get_task("pope"), str(tmp_path / "nope.jsonl"))
    with pytest.raises(TaskError, match="OWNER/NAME"):
        load_docs(get_task("pope"), "hub:not-a-repo-id")


def test_limit_and_synthetic_determinism():
    task = get_task("pope")
    a, b = load_docs(task, "synthetic", limit=7), load_docs(task, "synthetic", limit=7)
    assert len(a) == 7 and list(a) == list(b)
