"""Synthetic LLaVA training records on the shapes world: LCS-558K-style captions (stage 1) and mix665k-style
multi-turn question answering (stage 2) in exactly the prompt formats the benchmark tasks evaluate, and a writer
for the LLaVA JSON + image folder layout. Training scenes come from their own seed range (10M+ / 20M+), far from
the evaluation rows' seeds (seed * 100_003 + small offsets), so training never sees an evaluation image.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

from synthetic.questions import (
    QA,
    color_qa,
    count_qa,
    existence_qa,
    multiple_choice,
    ocr_qa,
    ocr_tokens,
    position_qa,
    shape_qa,
)
from synthetic.world import Scene, article, make_scene, text_noun

IMAGE = "<image>"
# Response-format prompts, byte-identical to the evaluation prompts (the tests compare them with tasks/*).
# Reference: LLaVA-1.5 paper Table 7/9 format prompts, llava_v1_5_mix665k.json, the eval question files.
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
OPTION_LETTER = "\nAnswer with the option's letter from the given choices directly."
OPTION_LETTER_CN = "\n请直接回答选项字母。"  # Reference: model_vqa_mmbench.py --lang cn
OCR_LABEL = "\nReference OCR token: "  # Reference: llava_textvqa_val_v051_ocr.jsonl
UNANSWERABLE = "\nWhen the provided information is insufficient, respond with 'Unanswerable'."  # vizwiz llava_test
LETTERS = "ABCDE"
MMBENCH_HINT = "Look at the shapes in the picture."
SCIENCEQA_HINT = "Look at the picture."

# Reference: LLaVA paper (Liu et al. 2023) Table 11, the brief-description instructions of LCS-558K.
BRIEF_INSTRUCTIONS = (
    "Describe the image concisely.", "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.", "Summarize the visual content of the image.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.", "Relay a brief, clear account of the picture shown.",
    "Render a clear and concise summary of the photo.", "Write a terse but informative summary of the picture.",
    "Create a compact narrative representing the image presented.",
)  # fmt: skip
# Reference: LLaVA paper Table 10 (detailed-description instructions of LLaVA-Instruct), plus LLaVA-Bench's.
DETAIL_INSTRUCTIONS = (
    "Describe the image in detail.", "Describe the following image in detail.", "Describe this photo in detail.",
    "Provide a detailed description of the given image.", "Give an elaborate explanation of the image you see.",
    "Share a comprehensive rundown of the presented image.", "Offer a thorough analysis of the image.",
    "Explain the various aspects of the image before you.", "Walk through the important details of the image.",
)  # fmt: skip
# Questions a picture of shapes cannot answer (VizWiz's "unanswerable" class); the first four are the ones the
# synthetic VizWiz rows ask, the rest keep the model from keying on four fixed strings.
UNANSWERABLE_QUESTIONS = (
    "What is the expiration date on this package?", "What does the label on the back say?",
    "Which channel is the TV showing?", "What flavor is this?", "What brand is this product?",
    "What time does the clock show?", "How much does this cost?", "What is the name of this medicine?",
    "What does the screen on my phone say?", "Is this shirt clean?", "What is the temperature on the thermostat?",
    "Which street is this?",
)  # fmt: skip
_TEXT_WORDS = ("apple", "river", "garden", "pencil", "window", "cat", "mountain", "sun", "bridge", "orange",
               "table", "music", "planet", "tree", "doctor", "yellow")

# Turn kinds of an image conversation and their draw weights: the closed-form formats (yes/no, letters, short
# answers) dominate because they are what the benchmarks score; captions keep the stage-1 skill alive. Scenes
# without text get few OCR-token turns (an empty token line), as TextVQA's rows mostly show text.
_TURN_WEIGHTS = {"yes_no": 3, "short": 3, "choice": 3, "ocr_token": 1.5, "vizwiz": 1, "detail": 1}
# Named stage-2 mixes: (turn weights, first scene seed). "existence" is a curriculum for continuing a trained
# model: most turns are balanced yes/no existence questions (POPE / MME), the other formats stay in at a low
# weight so their skills are kept; its scenes come from their own seed range, unseen by the default mix.
MIXES: dict[str, tuple[dict[str, float], int]] = {
    "default": (_TURN_WEIGHTS, 20_000_000),
    "existence": ({"yes_no": 12, "short": 1, "choice": 1, "ocr_token": 0.5, "vizwiz": 0.5, "detail": 0.5},
                  30_000_000),
    "finish": ({"yes_no": 6, "short": 2, "choice": 4, "ocr_token": 1, "vizwiz": 1, "detail": 0.5, "open": 1},
               40_000_000),
}
_NO_TEXT_OCR_WEIGHT = 0.25
_MAX_TURNS = 5


# ---- public API -----------------------------------------------------------------------------------------------
def stage1_records(n: int, start_seed: int = 10_000_000) -> list[dict]:
    """`n` caption records (LCS-558K layout) on scenes start_seed .. start_seed + n - 1."""
    return [_caption_record(seed) for seed in range(start_seed, start_seed + n)]


def stage2_records(n: int, start_seed: int | None = None, text_only_fraction: float = 0.05,
                   mix: str = "default") -> list[dict]:
    """`n` instruction records (mix665k layout): record i is text-only when it falls on the evenly spread
    `text_only_fraction` share of indices, else 2-5 question turns about scene start_seed + i, drawn with the
    turn weights of `mix` (a key of MIXES; start_seed defaults to the mix's own)."""
    if not 0.0 <= text_only_fraction <= 1.0:
        raise ValueError(f"text_only_fraction must lie in [0, 1], got {text_only_fraction}")
    if mix not in MIXES:
        raise ValueError(f"unknown stage-2 mix {mix!r}; known: {', '.join(MIXES)}")
    weights, default_start = MIXES[mix]
    start_seed = default_start if start_seed is None else start_seed
    records = []
    for i in range(n):
        seed = start_seed + i
        # Exactly int(n * fraction) text-only records, spread evenly rather than clumped by chance.
        text_only = int((i + 1) * text_only_fraction) != int(i * text_only_fraction)
        records.append(_text_record(seed) if text_only else _image_record(seed, weights))
    return records


def write_dataset(records: list[dict], out_dir: Path, json_name: str,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Write `out_dir/json_name` (a JSON list) and `out_dir/images/<seed>.png` for every record with an image.
    Idempotent: existing images are kept (each is a pure function of its name) and an unchanged JSON is not
    rewritten; files are written to a temporary name first, so a crash never leaves a truncated file.
    `progress` is called with the number of images handled so far."""
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for done, name in enumerate(dict.fromkeys(r["image"] for r in records if "image" in r)):
        path = images / name
        if not path.is_file():
            _write_atomic(path, make_scene(_seed_of(name)).png_bytes())
        if progress is not None:
            progress(done + 1)
    json_path = out_dir / json_name
    data = json.dumps(records, ensure_ascii=False).encode("utf-8")
    if not json_path.is_file() or json_path.read_bytes() != data:
        _write_atomic(json_path, data)
    return json_path


# ---- stage 1 --------------------------------------------------------------------------------------------------
def _caption_record(seed: int) -> dict:
    rng = random.Random(f"shapes-pt-{seed}")
    instruction = rng.choice(BRIEF_INSTRUCTIONS)
    # Reference: blip_laion_cc_sbu_558k.json puts <image> after the instruction in some records, before it in others.
    human = f"{instruction}\n{IMAGE}" if rng.random() < 0.5 else f"{IMAGE}\n{instruction}"
    return {"id": f"shapes-pt-{seed}", "image": f"{seed}.png",
            "conversations": [{"from": "human", "value": human},
                              {"from": "gpt", "value": make_scene(seed).caption()}]}


# ---- stage 2: image conversations ------------------------------------------------------------------------------
# A turn maker returns (key, prompt, answer); `key` is the underlying question, so that one conversation never
# asks the same question twice (in another format the earlier answer would give the later one away).
Turn = tuple[str, str, str]


def _image_record(seed: int, turn_weights: dict[str, float] = _TURN_WEIGHTS) -> dict:
    scene, rng = make_scene(seed), random.Random(f"shapes-sft-{seed}")
    wanted = rng.randint(2, _MAX_TURNS)
    kinds = list(turn_weights)
    weights = [min(w, _NO_TEXT_OCR_WEIGHT) if k == "ocr_token" and scene.text is None else w
               for k, w in turn_weights.items()]
    turns: list[Turn] = []
    for _ in range(8 * _MAX_TURNS):  # bounded: a scene with few possible questions yields fewer turns
        if len(turns) == wanted:
            break
        key, prompt, answer = _TURN_MAKERS[rng.choices(kinds, weights)[0]](scene, rng)
        if all(key != k for k, _, _ in turns):
            turns.append((key, prompt, answer))
    conversations = []
    for index, (_, prompt, answer) in enumerate(turns):
        # Reference: mix665k (and train.py preprocess_multimodal): the image placeholder opens the first turn.
        conversations += [{"from": "human", "value": (IMAGE + "\n" + prompt) if index == 0 else prompt},
                          {"from": "gpt", "value": answer}]
    return {"id": f"shapes-sft-{seed}", "image": f"{seed}.png", "conversations": conversations}


def _short(answer: str) -> str:
    """Short answers start with a capital as in mix665k's VQA data ("Yes", "Red", "2"); OCR text stays as written.
    Every scorer is case-blind here (EvalAI normalisation, GQA lower-casing, POPE's "No"/"no", MME lower-cases)."""
    return answer[:1].upper() + answer[1:]


def _scene_qa(scene: Scene, rng: random.Random, kinds: tuple[str, ...]) -> QA:
    """A question of a random one of `kinds` that fits the scene (count questions always fit)."""
    makers: dict[str, Callable] = {"count": count_qa, "color": color_qa, "shape": shape_qa,
                                   "position": position_qa, "ocr": ocr_qa}
    order = list(kinds)
    rng.shuffle(order)
    for kind in order + ["count"]:
        try:
            qa = makers[kind](scene, rng)
        except ValueError:  # nothing in the scene fits this kind
            continue
        if qa is not None:  # ocr_qa: None without text
            return qa
    raise AssertionError("count_qa always applies")


def _yes_no_turn(scene: Scene, rng: random.Random) -> Turn:
    # POPE / MME (its "Please answer yes or no." is stripped, as llava_mme.jsonl does) / VQAv2 yes-no.
    qa = existence_qa(scene, rng, positive=rng.random() < 0.5)
    return qa.question, qa.question + SHORT_ANSWER, _short(qa.answer)


def _short_turn(scene: Scene, rng: random.Random) -> Turn:
    # VQAv2 / GQA: count, colour, shape and position questions; reading the word without its OCR token too.
    kinds = ("count", "color", "shape", "position") + (("ocr",) if scene.text is not None else ())
    qa = _scene_qa(scene, rng, kinds)
    return qa.question, qa.question + SHORT_ANSWER, _short(qa.answer)


def _ocr_token_turn(scene: Scene, rng: random.Random) -> Turn:
    # TextVQA: the question capitalised, then the OCR token line (empty when the image has no text, as in the
    # original question file and the synthetic rows), then the short-answer instruction.
    qa = _scene_qa(scene, rng, ("ocr",) if scene.text is not None else ("count", "color", "shape"))
    question = qa.question.lower().capitalize()
    return qa.question, question + OCR_LABEL + ", ".join(ocr_tokens(scene)) + SHORT_ANSWER, _short(qa.answer)


def _vizwiz_turn(scene: Scene, rng: random.Random) -> Turn:
    # VizWiz: a fifth of its synthetic rows cannot be answered from the picture.
    if rng.random() < 0.25:
        question, answer = rng.choice(UNANSWERABLE_QUESTIONS), "Unanswerable"
    elif rng.random() < 0.2:
        qa = existence_qa(scene, rng, positive=rng.random() < 0.5)
        question, answer = qa.question, _short(qa.answer)
    else:
        qa = _scene_qa(scene, rng, ("count", "color", "shape", "position"))
        question, answer = qa.question, _short(qa.answer)
    return question, question.capitalize() + UNANSWERABLE + SHORT_ANSWER, answer


def _detail_turn(scene: Scene, rng: random.Random) -> Turn:
    return "detail", rng.choice(DETAIL_INSTRUCTIONS), scene.caption()


def _open_turn(scene: Scene, rng: random.Random) -> Turn:
    # MM-Vet / LLaVA-Bench: a question with no answer-format line gets one short sentence, then the turn ends (EOS);
    # without such turns the only unformatted image prompts were caption requests, and answers ran to the cap.
    kinds = ("count", "color", "shape", "position") + (("ocr",) if scene.text is not None else ())
    qa = _scene_qa(scene, rng, kinds)
    return qa.question, qa.question, _sentence(qa)


def _sentence(qa: QA) -> str:
    if qa.kind == "count":
        return f"There {'is' if qa.answer == '1' else 'are'} {qa.answer}."
    if qa.kind == "position":
        return "It is in the center." if qa.answer == "center" else f"It is on the {qa.answer}."
    if qa.kind == "shape":
        return f"The shape is {article(qa.answer)} {qa.answer}."
    if qa.kind == "ocr":
        return f"The {text_noun(qa.answer)} is {qa.answer}."
    return f"The {qa.kind} is {qa.answer}."


def _choice_turn(scene: Scene, rng: random.Random) -> Turn:
    """A multiple-choice question in one of the benchmark layouts; the answer is the bare letter."""
    style = rng.choices(("mmbench", "mmbench_cn", "seed", "scienceqa"), (3, 1, 2, 2))[0]
    if style == "scienceqa":  # 2-5 choices, "Context: " line on half the rows
        n_options = rng.randint(2, 5)
        # Only counts and colours have five possible answers (positions have three, shapes four).
        kinds = ("count", "color") if n_options == 5 else ("count", "position", "shape", "color")
        mc = multiple_choice(_scene_qa(scene, rng, kinds), rng, n_options=n_options)
        head = f"Context: {SCIENCEQA_HINT}\n" if rng.random() < 0.5 else ""
        instruction = OPTION_LETTER
    elif style == "seed":  # always four choices, no hint
        mc = multiple_choice(_scene_qa(scene, rng, ("shape", "color", "count")), rng, n_options=4)
        head, instruction = "", OPTION_LETTER
    else:  # MMBench EN / CN: 2-4 choices, the hint line on half the rows
        mc = multiple_choice(_scene_qa(scene, rng, ("color", "shape", "count")), rng, n_options=rng.randint(2, 4))
        head = MMBENCH_HINT + "\n" if rng.random() < 0.5 else ""
        instruction = OPTION_LETTER_CN if style == "mmbench_cn" else OPTION_LETTER
    options = "".join(f"\n{letter}. {option}" for letter, option in zip(LETTERS, mc.options, strict=False))
    return mc.question, head + mc.question + options + instruction, LETTERS[mc.answer_index]


_TURN_MAKERS: dict[str, Callable[[Scene, random.Random], Turn]] = {
    "yes_no": _yes_no_turn, "short": _short_turn, "choice": _choice_turn, "ocr_token": _ocr_token_turn,
    "vizwiz": _vizwiz_turn, "detail": _detail_turn, "open": _open_turn,
}


# ---- stage 2: text-only conversations (ShareGPT's place in the mix) --------------------------------------------
def _text_record(seed: int) -> dict:
    rng = random.Random(f"shapes-text-{seed}")
    conversations = []
    for _ in range(rng.randint(1, 3)):
        question, short, sentence = _text_qa(rng)
        # With the short-answer instruction the reply is the bare answer, without it a full sentence: the
        # instruction, not the question, decides the length (as in mix665k, where ShareGPT has no such line).
        if rng.random() < 0.5:
            conversations += [{"from": "human", "value": question + SHORT_ANSWER}, {"from": "gpt", "value": short}]
        else:
            conversations += [{"from": "human", "value": question}, {"from": "gpt", "value": sentence}]
    return {"id": f"shapes-text-{seed}", "conversations": conversations}


def _text_qa(rng: random.Random) -> tuple[str, str, str]:
    """(question, short answer, sentence answer) of a small arithmetic or word question."""
    kind = rng.randrange(5)
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    if kind == 0:
        return f"What is {a} plus {b}?", str(a + b), f"{a} plus {b} is {a + b}."
    if kind == 1:
        a, b = max(a, b), min(a, b)
        return f"What is {a} minus {b}?", str(a - b), f"{a} minus {b} is {a - b}."
    if kind == 2:
        a, b = a % 10, b % 10
        return f"What is {a} times {b}?", str(a * b), f"{a} times {b} is {a * b}."
    word = rng.choice(_TEXT_WORDS)
    if kind == 3:
        return (f"How many letters are in the word \"{word}\"?", str(len(word)),
                f"The word \"{word}\" has {len(word)} letters.")
    return (f"What is the first letter of the word \"{word}\"?", word[0].upper(),
            f"The word \"{word}\" starts with the letter {word[0].upper()}.")


# ---- files ----------------------------------------------------------------------------------------------------
def _seed_of(name: str) -> int:
    stem, dot, ext = name.partition(".")
    if not (dot and ext == "png" and stem.isdigit()):
        raise ValueError(f"image name {name!r} is not '<seed>.png'")
    return int(stem)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
