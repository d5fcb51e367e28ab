"""Prompt -> token ids exactly as LLaVA-1.5 builds them, with the image placeholder expanded.

Reference: haotian-liu/LLaVA `llava/mm_utils.py` `tokenizer_image_token`: the prompt is split on
`<image>`, each text chunk is tokenized on its own (so the text after the image starts a fresh
SentencePiece sequence with its own dummy-prefix space), the BOS is kept only from the first chunk and
the first token of every later chunk is dropped, and chunks are joined by the image index.
transformers' Llava wants the placeholder pre-expanded, so each image becomes `image_seq_length` copies
of `image_token_id` instead of the original single -200 (LLaVA-NeXT: a count per image, from its size).
"""

from __future__ import annotations

from collections.abc import Sequence

from llava_types import IMAGE_PLACEHOLDER


def dummy_prefix(tokenizer) -> str:
    """The space marker to put in front of a chunk that starts with whitespace, or "".

    The original's slow tokenizer encodes every chunk with SentencePiece, which always prepends its dummy
    prefix ("▁"): " a" becomes "▁▁a". transformers 5's `LlamaTokenizer` does this in a `Metaspace`
    pre-tokenizer, which skips the prefix when the text already starts with "▁" after spaces are replaced,
    so " a" became "▁a": one token short on every chunk that starts with a space. Writing the marker
    ourselves gives the pre-tokenizer the string SentencePiece would see. Tokenizers that add the prefix
    in a normalizer (the transformers 4 conversion) or have none are left alone."""
    from tokenizers.pre_tokenizers import Metaspace

    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if backend is None or backend.normalizer is not None or not isinstance(pre, Metaspace):
        return ""
    return pre.replacement if pre.prepend_scheme in ("first", "always") else ""


def tokenize_prompt(prompt: str, tokenizer, image_token_id: int, image_seq_length: int | Sequence[int]) -> list[int]:
    """Token ids of `prompt`, each `<image>` expanded to `image_seq_length` image-token ids (one count for
    every image, or the count of each image in order)."""
    marker = dummy_prefix(tokenizer)
    chunks = [tokenizer(marker + chunk if marker and chunk.startswith((" ", marker)) else chunk).input_ids
              for chunk in prompt.split(IMAGE_PLACEHOLDER)]
    ids: list[int] = []
    # The original drops the first token of every later chunk only when the first chunk starts with
    # BOS (the tokenizer adds one); with a BOS-less tokenizer nothing is dropped.
    offset = 1 if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id else 0
    if offset:
        ids.append(chunks[0][0])
    counts = [image_seq_length] * (len(chunks) - 1) if isinstance(image_seq_length, int) else list(image_seq_length)
    if len(counts) != len(chunks) - 1:
        raise ValueError(f"{len(chunks) - 1} <image> placeholders but {len(counts)} image token counts")
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.extend([image_token_id] * counts[i - 1])
        ids.extend(chunk[offset:])
    return ids


def count_images(prompt: str) -> int:
    return prompt.count(IMAGE_PLACEHOLDER)
