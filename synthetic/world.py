"""The shapes world: scenes of coloured shapes (and sometimes a word) drawn from a seed, with exact ground truth.

`make_scene(seed)` is a pure function of the seed; `Scene.image()` renders it and `Scene.caption()` describes
it (questions about a scene are in `synthetic.questions`). Only stdlib, numpy and Pillow are used.
"""

from __future__ import annotations

import functools
import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (245, 215, 30),
    "purple": (140, 60, 180),
    "orange": (245, 135, 20),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
WORDS: tuple[str, ...] = (
    "STOP", "OPEN", "EXIT", "SALE", "CAFE", "BOOK", "TAXI", "PARK",
    "BANK", "MILK", "FISH", "RAIN", "GOLD", "HOTEL", "BUS", "MAP",
    "42", "107", "365", "2024",
)  # fmt: skip
POSITIONS: tuple[str, ...] = ("left", "center", "right")

# Repeats weight the draw: mostly white backgrounds, as in natural photos of objects on plain ground.
_BACKGROUNDS = ("white", "white", "white", "black", "yellow", "blue")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_MAX_SHAPES = 6
_PLACEMENT_TRIES = 200


@dataclass(frozen=True)
class Shape:
    """A filled shape; `size` is the side of its square bounding box (even, so the centre is a pixel)."""

    kind: str
    color: str
    cx: int
    cy: int
    size: int
    # The canvas size travels with the shape because `region`/`vregion` are defined relative to it.
    image_width: int = 0
    image_height: int = 0

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Half-open pixel box (x0, y0, x1, y1) the shape is drawn in."""
        h = self.size // 2
        return self.cx - h, self.cy - h, self.cx + h, self.cy + h

    @property
    def region(self) -> str:
        return _third(self.cx, self.image_width, POSITIONS)

    @property
    def vregion(self) -> str:
        return _third(self.cy, self.image_height, ("top", "middle", "bottom"))


def _third(value: int, extent: int, names: tuple[str, str, str]) -> str:
    if extent <= 0:
        raise ValueError("shape has no image size; build it with image_width/image_height (make_scene does)")
    return names[min(2, 3 * value // extent)]


@dataclass(frozen=True)
class Scene:
    """One image's ground truth. `text_xy` is the centre of the text box."""

    seed: int
    width: int
    height: int
    background: str
    shapes: tuple[Shape, ...]
    text: str | None
    text_xy: tuple[int, int] | None

    def image(self) -> Image.Image:
        img = Image.new("RGB", (self.width, self.height), COLORS[self.background])
        draw = ImageDraw.Draw(img)
        for shape in self.shapes:
            _draw_shape(draw, shape)
        if self.text is not None and self.text_xy is not None:
            _draw_text(draw, self.text, self.text_xy, _font_size(self.width, self.height))
        return img

    @property
    def text_box(self) -> tuple[int, int, int, int] | None:
        """Half-open pixel box of the text label (white box, black outline), or None."""
        if self.text is None or self.text_xy is None:
            return None
        return _text_box(self.text, self.text_xy, _font_size(self.width, self.height))

    def png_bytes(self) -> bytes:
        return _png(self)

    def count(self, kind: str, color: str | None = None) -> int:
        return sum(s.kind == kind and (color is None or s.color == color) for s in self.shapes)

    def colors_of(self, kind: str) -> set[str]:
        return {s.color for s in self.shapes if s.kind == kind}

    def caption(self) -> str:
        groups = [_noun_phrase(n, color, kind) for (color, kind), n in _groups(self)]
        text = f"{_join(groups)} on {article(self.background)} {self.background} background."
        if self.text is not None:
            text += f" The {text_noun(self.text)} {self.text} is written in the image."
        return text[0].upper() + text[1:]


# ---- scene generation -----------------------------------------------------------------------------------


def make_scene(seed: int) -> Scene:
    """The scene of `seed`: canvas, background, 1..6 separated shapes, and a word in about half the scenes."""
    rng = random.Random(f"shapes-world-scene:{seed}")
    width, height = _canvas_size(rng)
    background = rng.choice(_BACKGROUNDS)
    palette = [c for c in COLORS if c != background]
    # A few colours per scene so that same-colour groups ("two red circles") are common.
    scene_colors = rng.sample(palette, rng.randint(1, 4))
    boxes: list[tuple[int, int, int, int]] = []
    text, text_xy = None, None
    if rng.random() < 0.5:
        text = rng.choice(WORDS)
        text_xy, text_box = _place_text(rng, text, width, height)
        boxes.append(text_box)
    shapes = _place_shapes(rng, width, height, scene_colors, boxes)
    return Scene(seed, width, height, background, tuple(shapes), text, text_xy)


def scenes(n: int, start: int = 0) -> list[Scene]:
    return [make_scene(start + i) for i in range(n)]


def _canvas_size(rng: random.Random) -> tuple[int, int]:
    short = rng.randrange(160, 336, 8)
    # Wide, tall and square canvases in equal measure: benchmarks' images come in every aspect ratio.
    long = rng.randrange(short, min(480, 2 * short) + 1, 8)
    return rng.choice([(long, short), (short, long), (short, short)])


def _place_shapes(rng, width, height, colors, taken) -> list[Shape]:
    short = min(width, height)
    wanted = rng.randint(1, _MAX_SHAPES)
    shapes: list[Shape] = []
    while len(shapes) < wanted:
        half = rng.randint(math.ceil(short / 12), short // 7)
        spot = _free_spot(rng, width, height, half, taken + [s.bbox for s in shapes])
        if spot is None:
            if shapes:  # the canvas is full: keep the shapes that fit
                break
            continue  # the first shape always fits eventually, a smaller size is drawn next time
        kind, color = rng.choice(SHAPES), rng.choice(colors)
        shapes.append(Shape(kind, color, spot[0], spot[1], 2 * half, width, height))
    return shapes


def _free_spot(rng, width, height, half, taken) -> tuple[int, int] | None:
    gap = max(4, min(width, height) // 40)
    for _ in range(_PLACEMENT_TRIES):
        cx, cy = rng.randint(half, width - half), rng.randint(half, height - half)
        box = (cx - half, cy - half, cx + half, cy + half)
        if _clear_of_thirds(cx, width) and _clear_of_thirds(cy, height) and not _hits(box, taken, gap):
            return cx, cy
    return None


def _clear_of_thirds(value: int, extent: int) -> bool:
    # Centres keep away from the third lines so "left/center/right" is never a judgement call.
    margin = extent / 20
    return all(abs(value - extent * k / 3) >= margin for k in (1, 2))


def _hits(box, boxes, gap: int) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + gap and b[0] < x1 + gap and y0 < b[3] + gap and b[1] < y1 + gap for b in boxes)


def _place_text(rng, text: str, width: int, height: int):
    x0, y0, x1, y1 = _text_box(text, (0, 0), _font_size(width, height))
    cx = rng.randint(-x0, width - x1)
    cy = rng.randint(-y0, height - y1)
    return (cx, cy), (cx + x0, cy + y0, cx + x1, cy + y1)


# ---- rendering ------------------------------------------------------------------------------------------


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    x0, y0, x1, y1 = shape.bbox
    fill = COLORS[shape.color]
    # PIL boxes are inclusive, so x1 - 1 keeps the drawing inside the half-open bbox.
    if shape.kind == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape.kind == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape.kind == "triangle":
        draw.polygon([(shape.cx, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    elif shape.kind == "star":
        draw.polygon(_star_points(shape.cx, shape.cy, shape.size // 2 - 1), fill=fill)
    else:
        raise ValueError(f"unknown shape kind {shape.kind!r}")


@functools.lru_cache(maxsize=256)
def _png(scene: Scene) -> bytes:
    # Cached because task builders ask several questions per scene and encode the same image each time.
    buf = io.BytesIO()
    scene.image().save(buf, format="PNG")
    return buf.getvalue()


def _star_points(cx: int, cy: int, radius: int) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        angle = math.pi * i / 5 - math.pi / 2
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _font_size(width: int, height: int) -> int:
    # Large enough to stay legible when the image is squeezed to 336 px.
    return max(16, min(width, height) // 7)


@functools.lru_cache(maxsize=64)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _text_box(text: str, centre: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = _font(size).getbbox(text, anchor="mm")
    pad = max(4, size // 3)
    cx, cy = centre
    return cx + left - pad, cy + top - pad, cx + right + pad, cy + bottom + pad


def _draw_text(draw: ImageDraw.ImageDraw, text: str, centre: tuple[int, int], size: int) -> None:
    x0, y0, x1, y1 = _text_box(text, centre, size)
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=COLORS["white"], outline=COLORS["black"], width=2)
    draw.text(centre, text, fill=COLORS["black"], font=_font(size), anchor="mm")


# ---- language -------------------------------------------------------------------------------------------


def _groups(scene: Scene) -> list[tuple[tuple[str, str], int]]:
    counts: dict[tuple[str, str], int] = {}
    for s in scene.shapes:
        counts[(s.color, s.kind)] = counts.get((s.color, s.kind), 0) + 1
    colour_order = list(COLORS)
    return sorted(counts.items(), key=lambda kv: (-kv[1], SHAPES.index(kv[0][1]), colour_order.index(kv[0][0])))


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _number_word(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def _noun_phrase(n: int, color: str, kind: str) -> str:
    if n == 1:
        return f"{article(color)} {color} {kind}"
    return f"{_number_word(n)} {color} {kind}s"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def text_noun(text: str) -> str:
    return "number" if text.isdigit() else "word"
