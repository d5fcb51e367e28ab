"""Batched greedy generation for LLaVA bundles: the first version of the engine behind `Model`.

Requests are rendered with the checkpoint's template, tokenized as the original does, sorted by length,
left-padded into batches and decoded greedily with transformers' `generate`; each row stops at EOS and
at its own `max_new_tokens`. Results come back in request order, identical to batch size 1 (tested).
Reference: haotian-liu/LLaVA `llava/eval/model_vqa_loader.py` (greedy, EOS stop, decode with special
tokens skipped, strip).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llava_model.checkpoint import LlavaBundle
from llava_model.conversation import render
from llava_model.model import embed_inputs
from llava_model.preprocess import load_image, preprocess
from llava_model.tokenization import count_images, tokenize_prompt
from llava_types import Request, UserError


@dataclass
class Prepared:
    index: int
    ids: list[int]
    pixel_values: torch.Tensor | None
    max_new_tokens: int


class LlavaEngine:
    """`Model` implementation over a loaded `LlavaBundle`."""

    def __init__(self, bundle: LlavaBundle, batch_size: int = 8):
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        self.bundle = bundle
        self.batch_size = batch_size
        tok = bundle.tokenizer
        self.eos_id = tok.eos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    def prompt(self, request: Request) -> str:
        return render(self.bundle.template, request.messages, add_generation_prompt=True)

    def prepare(self, index: int, request: Request, pixel_values: torch.Tensor | None = None) -> Prepared:
        """Tokenized prompt and preprocessed images; `pixel_values` reuses another request's identical image."""
        prompt = self.prompt(request)
        n = count_images(prompt)
        if n != len(request.images):
            raise UserError(f"request {request.doc_id!r}: prompt has {n} <image> placeholders but "
                            f"{len(request.images)} images were given")
        b = self.bundle
        ids = tokenize_prompt(prompt, b.tokenizer, b.image_token_id, b.image_seq_length)
        pixels = pixel_values
        if request.images and pixels is None:
            images = [load_image(src) for src in request.images]
            pixels = preprocess(images, b.image_processor, request.image_mode or b.image_mode)
        return Prepared(index, ids, pixels, request.settings.max_new_tokens)

    def generate(self, requests: list[Request]) -> list[str]:
        # Reference: model_vqa_loader.py decodes with special tokens skipped and strips the text.
        decode = self.bundle.tokenizer.decode
        return [decode(tokens, skip_special_tokens=True).strip() for tokens in self.generate_tokens(requests)]

    def generate_tokens(self, requests: list[Request]) -> list[list[int]]:
        """New token ids per request (EOS and everything after it removed), in request order."""
        prepared = [self.prepare(i, r) for i, r in enumerate(requests)]
        out: list[list[int]] = [[] for _ in requests]
        self._batched(prepared, out)
        return out

    def _batched(self, prepared: list[Prepared], out: list[list[int]]) -> int:
        """Generate `prepared` in batches of `batch_size` into `out` (by request index); returns the batch count.
        Longest first, so padding stays small and the first batch shows the memory peak."""
        order = sorted(prepared, key=lambda p: (-len(p.ids), p.index))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            for p, tokens in zip(batch, self._generate_batch(batch), strict=True):
                out[p.index] = tokens
        return -(-len(order) // self.batch_size)

    @torch.inference_mode()
    def _generate_batch(self, batch: list[Prepared]) -> list[list[int]]:
        from transformers import GenerationConfig

        model = self.bundle.model
        device = self.bundle.device
        width = max(len(p.ids) for p in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, p in enumerate(batch):
            ids[row, width - len(p.ids):] = torch.tensor(p.ids)
            mask[row, width - len(p.ids):] = 1
        pixels = [p.pixel_values for p in batch if p.pixel_values is not None]
        pixel_values = torch.cat(pixels).to(device) if pixels else None
        embeds = embed_inputs(model, ids.to(device), pixel_values)
        max_new = max(p.max_new_tokens for p in batch)
        config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new, eos_token_id=self.eos_id,
                                  pad_token_id=self.pad_id, bos_token_id=self.bundle.tokenizer.bos_token_id)
        new_tokens = model.generate(inputs_embeds=embeds, attention_mask=mask.to(device), generation_config=config)
        rows = []
        for row, p in enumerate(batch):
            # Greedy decoding is causal, so cutting a row at its own cap equals generating with that cap.
            tokens = new_tokens[row, :p.max_new_tokens].tolist()
            if self.eos_id in tokens:
                tokens = tokens[:tokens.index(self.eos_id)]
            rows.append(tokens)
        return rows
