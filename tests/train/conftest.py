"""Fixtures of the trainer tests: a tiny LLM folder and a tiny CLIP tower folder, the two things a paper
recipe starts from (lmsys/vicuna-7b-v1.5 and openai/clip-vit-large-patch14-336), written the way
transformers saves them."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def llm_and_tower(tmp_path_factory):
    """(LLM folder, CLIP vision tower folder) with seeded random weights and the tiny tokenizer."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from llava_model.presets import TINY_TEXT, TINY_VISION
    from llava_model.tiny_tokenizer import tiny_tokenizer

    root = tmp_path_factory.mktemp("init")
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(**TINY_TEXT, vocab_size=len(tokenizer), pad_token_id=0, bos_token_id=1,
                                       eos_token_id=2, tie_word_embeddings=False))
    llm.save_pretrained(str(root / "llm"))
    tokenizer.save_pretrained(str(root / "llm"))
    CLIPVisionModel(CLIPVisionConfig(**dict(TINY_VISION, image_size=112))).save_pretrained(str(root / "clip"))
    return root / "llm", root / "clip"
