"""Prompt -> token ids exactly as LLaVA-1.5 builds them, with the image placeholder expanded.

Reference: haotian-liu/LLaVA `llava/mm_utils.py` `tokenizer_image_token`: the prompt is split on
`<image>`, each text chunk is tokenized on its own (so the text after the image starts a fresh
SentencePiece sequence with its own dummy-prefix space), the BOS is kept only from the first chunk and
the first token of every later chunk is dropped, and chunks are joined by the image index.
transformers' Llava wants the placeholder pre-expanded, so each image becomes `image_seq_length` copies
of `image_token_id` instead of the original single -200.
"""

from __future__ import annotations

from llava_types import IMAGE_PLACEHOLDER


def tokenize_prompt(prompt: str, tokenizer, image_token_id: int, image_seq_length: int) -> list[int]:
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split(IMAGE_PLACEHOLDER)]
    ids: list[int] = []
    # The original drops the first token of every later chunk only when the first chunk starts with
    # BOS (the tokenizer adds one); with a BOS-less tokenizer nothing is dropped.
    offset = 1 if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id else 0
    if offset:
        ids.append(chunks[0][0])
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.extend([image_token_id] * image_seq_length)
        ids.extend(chunk[offset:])
    return ids


def count_images(prompt: str) -> int:
    return prompt.count(IMAGE_PLACEHOLDER)
