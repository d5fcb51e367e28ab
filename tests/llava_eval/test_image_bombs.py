"""A run over rows whose images are decompression bombs or extreme aspect ratios: those rows become image
errors (one line each in predictions.jsonl, counted in n_errors), the other rows are answered, and a rerun
into the same directory retries them and finishes too; no image is ever decoded or padded to its full size.
"""

from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image

from llava_eval.cli import main


def write_pope_rows(tmp_path, bomb_png):
    images = tmp_path / "images"
    images.mkdir()
    for n in range(3):
        Image.new("RGB", (64 + 16 * n, 48), (40 * n, 120, 200)).save(images / f"photo{n}.png")
    (images / "bomb.png").write_bytes(bomb_png(20000, 20000))  # ~50 KB, 400M pixels
    Image.new("L", (1, 30000)).save(images / "line.png")  # ~200 bytes; padded: a 30000x30000 canvas
    files = ["photo0.png", "bomb.png", "photo1.png", "line.png", "photo2.png"]
    rows = [{"question_id": f"q{n}", "question": "Is there a circle in the image?", "answer": "yes" if n % 2 else "no",
             "category": "random", "image": name} for n, name in enumerate(files)]
    data = tmp_path / "pope.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data, images


def run_pope(data, images, out):
    args = ["run", "--model", "tiny", "--tasks", "pope", "--data", data, "--data-root", images, "--out", out,
            "--no-progress"]
    return CliRunner().invoke(main, [str(a) for a in args])


def test_bomb_rows_are_image_errors_and_the_run_finishes(tmp_path, bomb_png, no_big_pixels):
    data, images = write_pope_rows(tmp_path, bomb_png)
    out = tmp_path / "run"
    for attempt in ("first", "rerun"):
        result = run_pope(data, images, out)
        assert result.exit_code == 0, (attempt, result.output, result.exception)
        lines = [json.loads(line) for line in (out / "pope" / "predictions.jsonl").read_text().splitlines()]
        errors = {line["question_id"]: line["error"] for line in lines if "error" in line}
        assert set(errors) == {"q1", "q3"}, attempt
        assert "decompression bomb" in errors["q1"] and "bomb.png" in errors["q1"]
        assert "image 1x30000" in errors["q3"] and "aspect ratio of 30000:1 (limit 100:1)" in errors["q3"]
        answered = {line["question_id"] for line in lines if "text" in line}
        assert answered == {"q0", "q2", "q4"}, attempt
        metrics = json.loads((out / "pope" / "metrics.json").read_text())["metrics"]
        assert metrics["n_errors"] == 2, attempt
    assert len([line for line in lines if "text" in line]) == 3  # the rerun retried only the two image errors
    assert len(lines) == 3 + 2 + 2
