"""Prompt tokenization with the image placeholder expanded, checked against an independent reference that
runs the original algorithm on a SentencePiece processor trained offline in the test. Reproduces
haotian-liu/LLaVA llava/mm_utils.py tokenizer_image_token (split on `<image>`, BOS only from the first
chunk, first token of later chunks dropped, offset-0 quirk for BOS-less tokenizers).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sentencepiece as spm

from llava_model.conversation import VICUNA_V1, eval_messages, render
from llava_model.tiny_tokenizer import llama_tokenizer_from_spm, tiny_tokenizer, train_sentencepiece
from llava_model.tokenization import count_images, tokenize_prompt

N = 576  # image tokens per image for CLIP ViT-L/14 at 336 px: (336 / 14) ** 2
IMG = 9999  # any id outside the trained vocabulary
BOS = 1

SUFFIX = "\nAnswer the question using a single word or phrase."

QUESTIONS = [
    "What color is the circle?",
    "How many shapes are there? Count 12, 3.5 and 1000!",
    "What does the sign say: 'STOP' (in red)?",
    "请直接回答选项字母。",
    "Which colour is the square?\nA. red\nB. blue",
    "  double  spaces  and ünïcödé ß é 😀  ",
]

_CORPUS_LINES = [
    VICUNA_V1.system,
    "USER: ASSISTANT: A. B. C. D.",
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "What color is the circle? How many shapes are there in the image?",
    "red green blue yellow square circle triangle left right top bottom sign says stop",
    "请直接回答选项字母。",
    "0 1 2 3 4 5 6 7 8 9",
]


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spm")
    text = "\n".join(_CORPUS_LINES * 30)
    return train_sentencepiece(directory / "llama_like", text, 600)


@pytest.fixture(scope="module")
def sp(spm_model):
    return spm.SentencePieceProcessor(model_file=str(spm_model))


@pytest.fixture(scope="module")
def llama_tokenizer(spm_model, tmp_path_factory):
    return llama_tokenizer_from_spm(spm_model, tmp_path_factory.mktemp("hf_tokenizer"))


def reference_ids(prompt: str, sp: spm.SentencePieceProcessor) -> list[int]:
    """The original tokenizer_image_token on a BOS-adding Llama tokenizer, written directly on SentencePiece:
    every chunk is [BOS] + sp.encode(chunk); BOS kept once, later chunks lose their first token (the BOS)."""
    chunks = [[BOS, *sp.encode(chunk)] for chunk in prompt.split("<image>")]
    ids = [BOS]
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.extend([IMG] * N)
        ids.extend(chunk[1:])
    return ids


def eval_prompt(question: str) -> str:
    return render(VICUNA_V1, eval_messages(question + SUFFIX, True), add_generation_prompt=True)


# --- the trained Llama-style tokenizer ------------------------------------------------------------


def test_tokenizer_is_llama_style(llama_tokenizer, sp):
    assert llama_tokenizer.bos_token_id == BOS == sp.bos_id()
    assert sp.id_to_piece(0) == "<unk>" and sp.id_to_piece(1) == "<s>" and sp.id_to_piece(2) == "</s>"
    assert llama_tokenizer("red circle").input_ids == [BOS, *sp.encode("red circle")]
    assert llama_tokenizer("").input_ids == [BOS]


@pytest.mark.parametrize("question", QUESTIONS)
def test_eval_prompt_matches_original_layout(question, llama_tokenizer, sp):
    prompt = eval_prompt(question)
    before, after = prompt.split("<image>")
    assert after.startswith("\n" + question)
    expected = [BOS, *sp.encode(before), *([IMG] * N), *sp.encode(after)]
    ids = tokenize_prompt(prompt, llama_tokenizer, IMG, N)
    assert ids == expected
    assert ids == reference_ids(prompt, sp)
    assert ids.count(IMG) == N
    assert ids.count(BOS) == 1


@pytest.mark.parametrize("question", QUESTIONS)
def test_text_after_image_starts_fresh_sentencepiece_sequence(question, llama_tokenizer, sp):
    ids = tokenize_prompt(eval_prompt(question), llama_tokenizer, IMG, N)
    end = ids.index(IMG) + N
    assert ids[end - 1] == IMG and ids[end] != IMG
    # The dummy-prefix space of a new sequence, then the newline as a byte-fallback piece.
    assert sp.id_to_piece(ids[end]) == "▁"
    assert sp.id_to_piece(ids[end + 1]) == "<0x0A>"
    # The text before the image ends with the role separator "USER: " (trailing space kept).
    assert sp.decode(ids[1:ids.index(IMG)]) == VICUNA_V1.system + " USER: "


def test_prompt_without_image_is_plain_tokenizer_output(llama_tokenizer):
    prompt = render(VICUNA_V1, eval_messages("Say hi.", False), add_generation_prompt=True)
    assert tokenize_prompt(prompt, llama_tokenizer, IMG, N) == llama_tokenizer(prompt).input_ids
    assert count_images(prompt) == 0


def test_two_images(llama_tokenizer, sp):
    prompt = "USER: <image>\nleft <image>\nright ASSISTANT:"
    ids = tokenize_prompt(prompt, llama_tokenizer, IMG, N)
    assert count_images(prompt) == 2
    assert ids.count(IMG) == 2 * N
    assert ids == [
        BOS, *sp.encode("USER: "), *([IMG] * N), *sp.encode("\nleft "), *([IMG] * N),
        *sp.encode("\nright ASSISTANT:"),
    ]
    assert ids == reference_ids(prompt, sp)


def test_image_at_start_and_end(llama_tokenizer, sp):
    # Empty first chunk: the tokenizer still gives [BOS], which is kept.
    assert tokenize_prompt("<image>\nhi", llama_tokenizer, IMG, N) == [BOS, *([IMG] * N), *sp.encode("\nhi")]
    # Empty last chunk: its lone BOS is dropped, nothing follows the image block.
    assert tokenize_prompt("hi <image>", llama_tokenizer, IMG, N) == [BOS, *sp.encode("hi "), *([IMG] * N)]


def test_image_seq_length_one_is_the_original_single_index(llama_tokenizer, sp):
    prompt = eval_prompt("What color is the circle?")
    ids = tokenize_prompt(prompt, llama_tokenizer, -200, 1)
    before, after = prompt.split("<image>")
    assert ids == [BOS, *sp.encode(before), -200, *sp.encode(after)]


# --- stub tokenizers: the offset quirk -------------------------------------------------------------


class StubTokenizer:
    """Maps every character to its code point; optionally prepends BOS like the Llama tokenizer."""

    bos_token_id = 1

    def __init__(self, add_bos: bool):
        self.add_bos = add_bos

    def __call__(self, text: str):
        ids = [ord(c) for c in text]
        return SimpleNamespace(input_ids=[self.bos_token_id, *ids] if self.add_bos else ids)


def test_stub_with_bos_drops_bos_of_later_chunks():
    ids = tokenize_prompt("ab<image>cd<image>e", StubTokenizer(add_bos=True), 0, 3)
    assert ids == [1, 97, 98, 0, 0, 0, 99, 100, 0, 0, 0, 101]


def test_stub_without_bos_drops_nothing():
    # Offset 0: no BOS added, and the first token of later chunks is kept (not mistaken for a BOS).
    ids = tokenize_prompt("ab<image>cd<image>e", StubTokenizer(add_bos=False), 0, 3)
    assert ids == [97, 98, 0, 0, 0, 99, 100, 0, 0, 0, 101]


def test_stub_without_bos_and_image_first():
    ids = tokenize_prompt("<image>xy", StubTokenizer(add_bos=False), 0, 2)
    assert ids == [0, 0, 120, 121]


def test_stub_without_bos_no_image():
    assert tokenize_prompt("hello", StubTokenizer(add_bos=False), 0, 5) == [ord(c) for c in "hello"]


# --- the fast tiny tokenizer of the `tiny` preset ------------------------------------------------------


def test_tiny_tokenizer_eval_prompt():
    tok = tiny_tokenizer()
    image_id = tok.convert_tokens_to_ids("<image>")
    assert image_id not in (None, tok.unk_token_id)
    prompt = eval_prompt("What color is the circle?")
    ids = tokenize_prompt(prompt, tok, image_id, N)
    assert ids[0] == BOS == tok.bos_token_id
    assert ids.count(image_id) == N
    start = ids.index(image_id)
    assert ids[start:start + N] == [image_id] * N
    before, after = prompt.split("<image>")
    assert ids == tok(before).input_ids + [image_id] * N + tok(after).input_ids[1:]
    assert ids.count(BOS) == 1
