"""Prompt tokenization with the image placeholder expanded, checked against an independent reference that
runs the original algorithm on a SentencePiece processor trained offline in the test. Reproduces
haotian-liu/LLaVA llava/mm_utils.py tokenizer_image_token (split on `<image>`, BOS only from the first
chunk, first token of later chunks dropped, offset-0 quirk for BOS-less tokenizers). Prompts with leading,
repeated and trailing spaces are compared with `tokenizer_image_token` itself over a transcription of the
transformers 4.31 slow tokenizer on SentencePiece.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import sentencepiece as spm

from llava_model.checkpoint_files import load_tokenizer
from llava_model.conversation import VICUNA_V1, eval_messages, render
from llava_model.tiny_tokenizer import _corpus, llama_tokenizer_from_spm, tiny_tokenizer, train_sentencepiece
from llava_model.tokenization import count_images, dummy_prefix, tokenize_prompt

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


def test_each_image_takes_its_own_count(llama_tokenizer, sp):
    # LLaVA-NeXT: an image's positions depend on its size.
    prompt = "USER: <image>\nleft <image>\nright ASSISTANT:"
    ids = tokenize_prompt(prompt, llama_tokenizer, IMG, [3, 5])
    assert ids == [BOS, *sp.encode("USER: "), *([IMG] * 3), *sp.encode("\nleft "), *([IMG] * 5),
                   *sp.encode("\nright ASSISTANT:")]
    with pytest.raises(ValueError, match="2 <image> placeholders but 1 image token counts"):
        tokenize_prompt(prompt, llama_tokenizer, IMG, [3])


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


# --- whitespace against the original slow tokenizer -------------------------------------------------------
# The original tokenised with the slow SentencePiece `LlamaTokenizer` of transformers 4.31 (`use_fast=False`)
# through `tokenizer_image_token`; both are transcribed below on the SentencePiece processor itself.

IMAGE_TOKEN_INDEX = -200  # Reference: llava/constants.py


def tokenizer_image_token(prompt, tokenizer, image_token_index=IMAGE_TOKEN_INDEX):
    """Reference: llava/mm_utils.py `tokenizer_image_token`, line for line. With a BOS-adding tokenizer
    `offset` is 1: the separator is two image indices and `x[offset:]` drops the first element of every
    chunk and of every separator, so one BOS and one index per image remain."""
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(X, sep):
        return [ele for sublist in zip(X, [sep] * len(X), strict=True) for ele in sublist][:-1]

    input_ids = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


class SlowLlamaTokenizer431:
    """transformers 4.31 `LlamaTokenizer` (slow) on text that spells no special token: `tokenize` (with
    `legacy=False`, as Vicuna v1.5's tokenizer_config sets: "▁" + the text with "▁" turned into spaces),
    `PreTrainedTokenizer.tokenize` (no special token to split on, empty text gives no pieces), `_tokenize`
    (`sp_model.encode(text, out_type=str)`, for the first piece after dropping the "▁" added above), pieces to
    ids with `sp_model.piece_to_id`, and `build_inputs_with_special_tokens` (BOS, no EOS)."""

    bos_token_id = BOS

    def __init__(self, sp: spm.SentencePieceProcessor, legacy: bool):
        self.sp, self.legacy = sp, legacy

    def _tokenize(self, text: str) -> list[str]:
        is_first = False
        if not self.legacy:
            is_first = text.startswith("▁")
            if is_first:
                text = text[1:]
        tokens = self.sp.encode(text, out_type=str)
        if not self.legacy and not is_first and not text.startswith(" ") and tokens[0].startswith("▁"):
            tokens = ([tokens[0][1:]] if len(tokens[0]) > 1 else []) + tokens[1:]
        return tokens

    def __call__(self, text: str):
        if not self.legacy:
            text = "▁" + text.replace("▁", " ")
        pieces = self._tokenize(text) if text else []
        return SimpleNamespace(input_ids=[BOS, *(self.sp.piece_to_id(p) for p in pieces)])


# Questions as they occur in the official files: VizWiz (about 150 with double spaces, 4 with leading spaces),
# TextVQA (9 with double spaces), MM-Vet question 129 (ends with a space); plus non-ASCII.
SPACED_QUESTIONS = [
    "What  is this?",
    "  what color is this shirt?",
    " Is it red ?  ",
    "What is the price of the item on the left? ",
    "what   brand is   the  sign?",
    "ünïcödé  ß é 😀 请直接回答。 ",
]
# Raw prompts whose chunks (the text between images) start or end with spaces.
SPACED_PROMPTS = [
    "",
    " leading",
    "  two leading and trailing  ",
    "USER: <image> one space after the image",
    "USER:  <image>   three after, two before",
    "<image>  \n  text after the image with spaces  ",
    "before <image>",
    "<image>   ",
    "a <image> b <image>  c",
    "<image> red  circle\n",  # a `plain`-template training sample whose caption starts with a space
    "x\u3000 y <image> \tü  é",
    "▁ <image>▁x",  # a literal SentencePiece space marker in the text
]


@pytest.mark.parametrize("legacy", [True, False])
def test_slow_reference_modes_agree(legacy, sp):
    # Without special-token text both modes of the slow tokenizer give [BOS] + sp.encode(text).
    for text in [*SPACED_QUESTIONS, *SPACED_PROMPTS]:
        assert SlowLlamaTokenizer431(sp, legacy)(text).input_ids == [BOS, *sp.encode(text)], text


@pytest.mark.parametrize("prompt", [eval_prompt(q) for q in SPACED_QUESTIONS] + SPACED_PROMPTS)
def test_spaced_prompts_match_original_slow_tokenizer(prompt, llama_tokenizer, sp):
    original = tokenizer_image_token(prompt, SlowLlamaTokenizer431(sp, legacy=False))
    assert tokenize_prompt(prompt, llama_tokenizer, IMAGE_TOKEN_INDEX, 1) == original
    expanded = [t for i in original for t in ([IMG] * N if i == IMAGE_TOKEN_INDEX else [i])]
    assert tokenize_prompt(prompt, llama_tokenizer, IMG, N) == expanded


@pytest.mark.parametrize("legacy", [False, True])
def test_loaded_tokenizer_matches_original_slow_tokenizer(legacy, llama_tokenizer, sp, tmp_path):
    """The tokenizer a checkpoint directory loads (`load_tokenizer`, from the saved files); its `legacy`
    flag picks the Metaspace prepend scheme ("first" or "always"), and both must match."""
    llama_tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "legacy": legacy}))
    tok = load_tokenizer(tmp_path)
    assert dummy_prefix(tok) == "▁"
    for prompt in [eval_prompt(q) for q in SPACED_QUESTIONS] + SPACED_PROMPTS:
        assert tokenize_prompt(prompt, tok, IMAGE_TOKEN_INDEX, 1) == tokenizer_image_token(
            prompt, SlowLlamaTokenizer431(sp, legacy=False)), prompt


def test_tiny_tokenizer_matches_original_slow_tokenizer(tmp_path):
    # The `tiny` preset's SentencePiece model, retrained here from the same built-in text.
    tiny_sp = spm.SentencePieceProcessor(model_file=str(train_sentencepiece(tmp_path / "tiny", _corpus())))
    tok = tiny_tokenizer()
    for prompt in [eval_prompt(q) for q in SPACED_QUESTIONS] + SPACED_PROMPTS:
        assert tokenize_prompt(prompt, tok, IMAGE_TOKEN_INDEX, 1) == tokenizer_image_token(
            prompt, SlowLlamaTokenizer431(tiny_sp, legacy=False)), prompt


def test_tokenizers_without_metaspace_are_left_alone():
    assert dummy_prefix(StubTokenizer(add_bos=True)) == ""
    assert tokenize_prompt(" a<image> b", StubTokenizer(add_bos=True), 0, 1) == [1, 32, 97, 0, 32, 98]
