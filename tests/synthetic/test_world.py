"""Shapes world: determinism, ground truth against the rendered pixels, and correctness of every question kind.

Answers are re-derived here from the raw shape list rather than through Scene helpers where that is cheap.
"""

from __future__ import annotations

import io
import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from synthetic import (
    COLORS,
    SHAPES,
    WORDS,
    Scene,
    Shape,
    color_qa,
    count_qa,
    existence_qa,
    make_scene,
    multiple_choice,
    ocr_qa,
    ocr_tokens,
    position_qa,
    question_set,
    scenes,
    shape_qa,
)

SEEDS = range(200)
QA_KINDS = ("existence", "count", "color", "position", "shape", "ocr")


@pytest.fixture(scope="module")
def world() -> list[Scene]:
    return scenes(len(SEEDS))


def test_constants():
    assert len(COLORS) >= 8 and all(name == name.lower() for name in COLORS)
    assert len(set(COLORS.values())) == len(COLORS)
    assert {"circle", "square", "triangle", "star"} <= set(SHAPES)
    assert len(set(WORDS)) == len(WORDS) >= 16 and all(w == w.upper() for w in WORDS)


def test_determinism():
    a, b = make_scene(7), make_scene(7)
    assert a == b
    assert a.png_bytes() == b.png_bytes()
    assert np.array_equal(np.asarray(a.image()), np.asarray(make_scene(7).image()))
    assert make_scene(8) != a and make_scene(8).png_bytes() != a.png_bytes()
    assert scenes(3, start=5) == [make_scene(5), make_scene(6), make_scene(7)]


def test_scene_layout(world):
    for scene in world:
        assert 160 <= min(scene.width, scene.height) and max(scene.width, scene.height) <= 480
        assert 1 <= len(scene.shapes) <= 6
        assert scene.background in COLORS and scene.background not in {s.color for s in scene.shapes}
        boxes = [s.bbox for s in scene.shapes] + ([scene.text_box] if scene.text else [])
        if scene.text is not None:
            assert scene.text in WORDS and scene.text_xy is not None
        for i, s in enumerate(scene.shapes):
            assert s.kind in SHAPES and s.color in COLORS
            assert s.size >= min(scene.width, scene.height) / 6
            x0, y0, x1, y1 = s.bbox
            assert 0 <= x0 and 0 <= y0 and x1 <= scene.width and y1 <= scene.height
            for other in boxes[i + 1:]:
                assert x1 <= other[0] or other[2] <= x0 or y1 <= other[1] or other[3] <= y0
    assert {len(scene.shapes) for scene in world} == set(range(1, 7))
    assert any(s.width > s.height for s in world) and any(s.height > s.width for s in world)
    assert 0.3 < sum(s.text is not None for s in world) / len(world) < 0.7


def test_pixels_match_ground_truth(world):
    for scene in world[:60]:
        pixels = np.asarray(scene.image())
        assert pixels.shape == (scene.height, scene.width, 3)
        for s in scene.shapes:
            assert tuple(pixels[s.cy, s.cx]) == COLORS[s.color], (scene.seed, s)
        # Nothing is drawn outside the declared boxes, and the text box holds the text.
        outside = np.ones((scene.height, scene.width), dtype=bool)
        for x0, y0, x1, y1 in [s.bbox for s in scene.shapes] + ([scene.text_box] if scene.text else []):
            outside[y0:y1, x0:x1] = False
        assert (pixels[outside] == COLORS[scene.background]).all()
        if scene.text:
            x0, y0, x1, y1 = scene.text_box
            assert 0 <= x0 and 0 <= y0 and x1 <= scene.width and y1 <= scene.height
            inner = pixels[y0 + 3:y1 - 3, x0 + 3:x1 - 3]
            assert (inner == COLORS["white"]).all(-1).mean() > 0.5 and (inner.max(-1) < 100).any()


def test_png_small_and_decodes(world):
    for scene in world[:20]:
        data = scene.png_bytes()
        assert len(data) < 16_000
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(scene.image()))


def test_count_and_colors_of(world):
    for scene in world:
        for kind in SHAPES:
            assert scene.count(kind) == sum(s.kind == kind for s in scene.shapes)
            assert scene.colors_of(kind) == {s.color for s in scene.shapes if s.kind == kind}
        assert sum(scene.count(k) for k in SHAPES) == len(scene.shapes)
        assert sum(scene.count(k, c) for k in SHAPES for c in COLORS) == len(scene.shapes)


def test_regions():
    s = Shape("circle", "red", 10, 290, 20, image_width=300, image_height=300)
    assert (s.region, s.vregion) == ("left", "bottom")
    assert Shape("star", "red", 150, 150, 20, 300, 300).region == "center"
    assert Shape("star", "red", 250, 10, 20, 300, 300).vregion == "top"
    with pytest.raises(ValueError):
        _ = Shape("star", "red", 250, 10, 20).region


def test_caption_mentions_everything(world):
    for scene in world:
        caption = scene.caption()
        assert caption[0].isupper() and caption.endswith(".")
        for s in scene.shapes:
            assert f"{s.color} {s.kind}" in caption
        assert f"{scene.background} background" in caption
        if scene.text is not None:
            assert f" {scene.text} is written in the image." in caption
        else:
            assert "written" not in caption


def test_caption_grammar():
    scene = Scene(0, 300, 200, "white", (
        Shape("circle", "red", 30, 30, 40, 300, 200), Shape("circle", "red", 130, 30, 40, 300, 200),
        Shape("square", "orange", 250, 150, 40, 300, 200)), "STOP", (200, 40))
    assert scene.caption() == (
        "Two red circles and an orange square on a white background. The word STOP is written in the image.")


def _existence_truth(scene: Scene, question: str) -> str:
    words = question.removesuffix(" in the image?").split()
    color, kind = words[-2], words[-1]
    return "yes" if any(s.color == color and s.kind == kind for s in scene.shapes) else "no"


def test_existence(world):
    rng = random.Random(0)
    for scene in world:
        pos, neg = existence_qa(scene, rng, positive=True), existence_qa(scene, rng, positive=False)
        assert (pos.answer, neg.answer) == ("yes", "no")
        assert _existence_truth(scene, pos.question) == "yes" and _existence_truth(scene, neg.question) == "no"
        assert scene.background not in neg.question.split()
        assert pos.question.endswith("?") and pos.kind == neg.kind == "existence"


def test_count(world):
    rng = random.Random(1)
    for scene in world:
        qa = count_qa(scene, rng)
        words = qa.question.split()
        kind = words[-6].removesuffix("s")
        color = words[2] if words[2] in COLORS else None
        expected = sum(s.kind == kind and color in (None, s.color) for s in scene.shapes)
        assert qa.answer == str(expected) and expected >= 1


def test_color(world):
    rng = random.Random(2)
    for scene in world:
        try:
            qa = color_qa(scene, rng)
        except ValueError:
            assert all(len(scene.colors_of(k)) > 1 for k in SHAPES if scene.count(k))
            continue
        kind = qa.question.split()[-1].rstrip("?").removesuffix("s")
        assert {s.color for s in scene.shapes if s.kind == kind} == {qa.answer}


def test_position(world):
    rng = random.Random(3)
    for scene in world:
        try:
            qa = position_qa(scene, rng)
        except ValueError:
            assert all(scene.count(s.kind, s.color) > 1 for s in scene.shapes)
            continue
        color, kind = qa.question.removesuffix(":").split(":")[0].split()[-2:]
        (target,) = [s for s in scene.shapes if s.color == color and s.kind == kind]
        third = scene.width / 3
        expected = "left" if target.cx < third else "center" if target.cx < 2 * third else "right"
        assert qa.answer == expected == target.region


def test_shape(world):
    rng = random.Random(4)
    for scene in world:
        try:
            qa = shape_qa(scene, rng)
        except ValueError:
            continue
        color = qa.question.split()[-2]
        assert {s.kind for s in scene.shapes if s.color == color} == {qa.answer}


def test_ocr(world):
    rng = random.Random(5)
    for scene in world:
        qa = ocr_qa(scene, rng)
        if scene.text is None:
            assert qa is None and ocr_tokens(scene) == []
        else:
            assert qa.answer == scene.text and ocr_tokens(scene) == [scene.text] and qa.question.endswith("?")


@pytest.mark.parametrize("n_options", [2, 3, 4, 5])
def test_multiple_choice(n_options):
    rng = random.Random(6)
    for seed in range(40):
        for qa in question_set(seed):
            mc = multiple_choice(qa, rng, n_options)
            assert (mc.question, mc.answer, mc.kind) == (qa.question, qa.answer, qa.kind)
            assert len(set(mc.options)) == len(mc.options)
            assert mc.options.count(qa.answer) == 1 and mc.options[mc.answer_index] == qa.answer
            cap = {"existence": 2, "position": 3, "shape": len(SHAPES)}.get(qa.kind, n_options)
            assert len(mc.options) == min(n_options, cap)
    with pytest.raises(ValueError):
        multiple_choice(question_set(0)[0], rng, 1)


def test_multiple_choice_distractors_same_kind():
    rng = random.Random(7)
    pools = {"color": set(COLORS), "shape": set(SHAPES), "ocr": set(WORDS), "position": {"left", "center", "right"}}
    for seed in range(40):
        for qa in question_set(seed):
            mc = multiple_choice(qa, rng)
            if qa.kind in pools:
                assert set(mc.options) <= pools[qa.kind]
            elif qa.kind == "count":
                assert all(o.isdigit() for o in mc.options)


def test_question_set():
    kinds = Counter()
    for seed in SEEDS:
        qas = question_set(seed)
        assert qas == question_set(seed)
        assert [q.answer for q in qas if q.kind == "existence"] == ["yes", "no"]
        for qa in qas:
            assert qa.kind in QA_KINDS and qa.question.endswith("?") and qa.answer
        kinds.update(q.kind for q in qas)
    assert set(kinds) == set(QA_KINDS)
    assert all(kinds[k] >= 50 for k in QA_KINDS)
    assert [q.kind for q in question_set(3, ("count",))] == ["count"]
    with pytest.raises(ValueError):
        question_set(0, ("colour",))
