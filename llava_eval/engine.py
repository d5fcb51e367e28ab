"""The generation engine for LLaVA bundles: one engine, with the scheduling strategy passed in (which requests
run together: llava_eval.scheduling) and the model math in llava_model.generation. Answers come back in
request order, decoded with special tokens skipped and stripped, identical for every batch size (tested).
Reference: haotian-liu/LLaVA `llava/eval/model_vqa_loader.py` (greedy, EOS stop, decode with special tokens
skipped, strip).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from llava_model import generation
from llava_model.checkpoint import LlavaBundle
from llava_types import Request, UserError

from .scheduling import Prepared, SortedBatches, Strategy


class LlavaEngine:
    """`Model` implementation over a loaded `LlavaBundle`; `strategy` schedules the requests (default: sorted
    batches of `batch_size`), `stats` counts the work done (images encoded, prefills, batches)."""

    def __init__(self, bundle: LlavaBundle, strategy: Strategy | None = None, batch_size: int = 8):
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        self.bundle, self.batch_size = bundle, batch_size
        self.strategy = strategy or SortedBatches()
        self.chunk_size = self.strategy.chunk_size(batch_size)
        self.stats: dict[str, int] = defaultdict(int)

    @property
    def image_token_id(self) -> int:
        return self.bundle.image_token_id

    def prompt(self, request: Request) -> str:
        return generation.prompt_text(self.bundle, request)

    def prepare(self, index: int, request: Request, pixel_values: Any = None) -> Prepared:
        """Tokenized prompt and preprocessed images; `pixel_values` reuses another request's identical image."""
        ids, pixels = generation.encode(self.bundle, request, pixel_values)
        return Prepared(index, ids, pixels, request.settings.max_new_tokens)

    def generate(self, requests: list[Request]) -> list[str]:
        # Reference: model_vqa_loader.py decodes with special tokens skipped and strips the text.
        decode = self.bundle.tokenizer.decode
        return [decode(tokens, skip_special_tokens=True).strip() for tokens in self.generate_tokens(requests)]

    def generate_tokens(self, requests: list[Request]) -> list[list[int]]:
        """New token ids per request (EOS and everything after it removed), in request order."""
        return self.strategy.schedule(self, requests)

    def generate_batch(self, batch: list[Prepared]) -> list[list[int]]:
        """One left-padded batch through transformers' `generate`."""
        return generation.generate_padded(self.bundle, [p.ids for p in batch], [p.pixel_values for p in batch],
                                          [p.max_new_tokens for p in batch])

    def generate_shared(self, chunk: list[list[Prepared]], prefix_len: int) -> list[list[int]]:
        """Several images' question groups (one piece per image, all sharing `prefix_len` prompt tokens): the
        prefixes prefilled in one batch, then one batched decode; tokens in the order of the pieces' rows."""
        owners = [g for g, piece in enumerate(chunk) for _ in piece]
        cache = generation.prefill_prefixes(self.bundle, [piece[0].ids[:prefix_len] for piece in chunk],
                                            [piece[0].pixel_values for piece in chunk], owners)
        self.stats["images_encoded"] += len(chunk)
        self.stats["prefills"] += len(chunk)
        self.stats["prefill_batches"] += 1
        rows = [p for piece in chunk for p in piece]
        return generation.greedy_decode(self.bundle, cache, prefix_len, [p.ids[prefix_len:] for p in rows],
                                        [p.max_new_tokens for p in rows])
