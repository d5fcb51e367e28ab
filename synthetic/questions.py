"""Questions about a shapes-world scene whose answers are true by construction: one generator per kind
(existence, count, color, position, shape, ocr), multiple-choice variants with same-kind distractors, and the
question set of a seed. Only the standard library is used besides `synthetic.world`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from synthetic.world import COLORS, POSITIONS, SHAPES, WORDS, Scene, article, make_scene, text_noun

QA_KINDS: tuple[str, ...] = ("existence", "count", "color", "position", "shape", "ocr")


@dataclass(frozen=True)
class QA:
    """A question about one scene with its exact short answer; options/answer_index only for multiple choice."""

    kind: str
    question: str
    answer: str
    options: tuple[str, ...] = ()
    answer_index: int = -1


def existence_qa(scene: Scene, rng: random.Random, positive: bool) -> QA:
    """POPE-style yes/no question. Negatives name a (colour, kind) pair absent from the scene, half the time
    sharing the colour or the kind with a present shape (the hard, "adversarial" case). Never raises."""
    present = sorted({(s.color, s.kind) for s in scene.shapes})
    if positive:
        color, kind = rng.choice(present)
    else:
        color, kind = rng.choice(_absent_pairs(scene, present, hard=rng.random() < 0.5))
    return QA("existence", f"Is there {article(color)} {color} {kind} in the image?", "yes" if positive else "no")


def _absent_pairs(scene: Scene, present: list[tuple[str, str]], hard: bool) -> list[tuple[str, str]]:
    # The background colour is left out: "is there a white square" on white ground has no visual answer.
    absent = [(c, k) for c in COLORS for k in SHAPES if c != scene.background and (c, k) not in present]
    if hard:
        near = [(c, k) for c, k in absent if any(c == pc or k == pk for pc, pk in present)]
        absent = near or absent
    return absent


def count_qa(scene: Scene, rng: random.Random) -> QA:
    """How many shapes of a present kind, a third of the time restricted to one colour. Never raises."""
    kind = rng.choice(sorted({s.kind for s in scene.shapes}, key=SHAPES.index))
    colors = sorted(scene.colors_of(kind))
    if len(colors) > 1 and rng.random() < 1 / 3:
        color = rng.choice(colors)
        return QA("count", f"How many {color} {kind}s are there in the image?", str(scene.count(kind, color)))
    return QA("count", f"How many {kind}s are there in the image?", str(scene.count(kind)))


def color_qa(scene: Scene, rng: random.Random) -> QA:
    """Colour of a kind present exactly once; failing that, of a kind whose shapes all share one colour
    ("What color are the circles?"). Raises ValueError when every present kind comes in several colours."""
    kinds = sorted({s.kind for s in scene.shapes}, key=SHAPES.index)
    single = [k for k in kinds if scene.count(k) == 1]
    if single:
        kind = rng.choice(single)
        return QA("color", f"What color is the {kind}?", _only(scene.colors_of(kind)))
    uniform = [k for k in kinds if len(scene.colors_of(k)) == 1]
    if not uniform:
        raise ValueError(f"scene {scene.seed}: no shape kind has a single colour")
    kind = rng.choice(uniform)
    return QA("color", f"What color are the {kind}s?", _only(scene.colors_of(kind)))


def position_qa(scene: Scene, rng: random.Random) -> QA:
    """Horizontal third of a shape unique in (colour, kind). Raises ValueError when no pair is unique."""
    unique = [s for s in scene.shapes if scene.count(s.kind, s.color) == 1]
    if not unique:
        raise ValueError(f"scene {scene.seed}: no shape is unique in colour and kind")
    s = rng.choice(unique)
    question = f"Where is the {s.color} {s.kind}: on the left, in the center, or on the right?"
    return QA("position", question, s.region)


def shape_qa(scene: Scene, rng: random.Random) -> QA:
    """Kind of the shape of a colour used exactly once; failing that, of a colour whose shapes are all one kind
    ("What shape are the red objects?"). Raises ValueError when every colour is shared by several kinds."""
    colors = sorted({s.color for s in scene.shapes}, key=list(COLORS).index)
    kinds_of = {c: {s.kind for s in scene.shapes if s.color == c} for c in colors}
    single = [c for c in colors if sum(s.color == c for s in scene.shapes) == 1]
    if single:
        color = rng.choice(single)
        return QA("shape", f"What shape is the {color} object?", _only(kinds_of[color]))
    uniform = [c for c in colors if len(kinds_of[c]) == 1]
    if not uniform:
        raise ValueError(f"scene {scene.seed}: every colour is shared by several shape kinds")
    color = rng.choice(uniform)
    return QA("shape", f"What shape are the {color} objects?", _only(kinds_of[color]))


def ocr_qa(scene: Scene, rng: random.Random) -> QA | None:
    """The written word (or number); None when the scene has no text. `rng` is unused, kept for a uniform API."""
    if scene.text is None:
        return None
    return QA("ocr", f"What {text_noun(scene.text)} is written in the image?", scene.text)


def ocr_tokens(scene: Scene) -> list[str]:
    return [] if scene.text is None else [scene.text]


def _only(values: set[str]) -> str:
    (value,) = values
    return value


# ---- multiple choice and question sets ------------------------------------------------------------------


def _answer_pool(kind: str) -> tuple[str, ...]:
    pools = {
        "existence": ("yes", "no"),
        "count": tuple(str(i) for i in range(1, 10)),
        "color": tuple(COLORS),
        "position": POSITIONS,
        "shape": SHAPES,
        "ocr": WORDS,
    }
    if kind not in pools:
        raise ValueError(f"unknown QA kind {kind!r}; expected one of {QA_KINDS}")
    return pools[kind]


def multiple_choice(qa: QA, rng: random.Random, n_options: int = 4) -> QA:
    """A copy of `qa` with the answer and distractors of the same kind, shuffled. Kinds with fewer possible
    answers get fewer options: yes/no questions 2, positions 3, shapes len(SHAPES)."""
    if n_options < 2:
        raise ValueError(f"n_options must be at least 2, got {n_options}")
    distractors = [a for a in _answer_pool(qa.kind) if a != qa.answer]
    options = [qa.answer] + rng.sample(distractors, min(n_options - 1, len(distractors)))
    rng.shuffle(options)
    return replace(qa, options=tuple(options), answer_index=options.index(qa.answer))


def question_set(seed: int, kinds: tuple[str, ...] = QA_KINDS) -> list[QA]:
    """Questions about make_scene(seed), in the order of `kinds`: existence as a positive then a negative
    question, one of each other kind where it applies (no ocr question without text). Never raises for
    known kinds; an unknown kind is a ValueError."""
    scene = make_scene(seed)
    rng = random.Random(f"shapes-world-questions:{seed}")
    makers = {"count": count_qa, "color": color_qa, "position": position_qa, "shape": shape_qa, "ocr": ocr_qa}
    out: list[QA] = []
    for kind in kinds:
        if kind == "existence":
            out += [existence_qa(scene, rng, positive=True), existence_qa(scene, rng, positive=False)]
        elif kind in makers:
            try:
                qa = makers[kind](scene, rng)
            except ValueError:  # the scene has no valid target of this kind
                qa = None
            if qa is not None:
                out.append(qa)
        else:
            raise ValueError(f"unknown QA kind {kind!r}; expected one of {QA_KINDS}")
    return out


def first_qa(makers, scene: Scene, rng: random.Random) -> QA:
    """The first question one of `makers` can ask about the scene (color_qa, shape_qa and position_qa
    raise ValueError when nothing in the scene fits them)."""
    for make in makers:
        try:
            return make(scene, rng)
        except ValueError:
            continue
    raise ValueError(f"no question for scene {scene.seed}")
