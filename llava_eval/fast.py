"""The fast engine: every question about one image shares the prompt prefix `[system][image tokens]`, so the
vision tower runs once per distinct image, the shared prefix is prefilled once, and its KV cache serves a
batched greedy decode of all the questions on that image.

    requests --(prepare in worker threads: decode, preprocess, tokenize)--> groups by image pixels
    group of >= 2: image features once -> prefill the longest common prefix once -> copy its cache per
                   sub-batch (sized by a token budget) -> suffixes left-padded after the prefix, explicit
                   position ids -> greedy decode, each row stopped at EOS or its own cap
    single questions (distinct images): the batched engine (`LlavaEngine`), sorted by length

Greedy decoding with the same positions and the same masked-out padding computes the same function as the
reference loop (one question at a time, image encoded each time, full prefill); on CPU in float32 the
answers are identical (tested on every synthetic task).
"""

from __future__ import annotations

import copy
import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import torch

from llava_model.model import embed_inputs, image_features

from .engine import LlavaEngine, Prepared
from .request import Request

DEFAULT_TOKEN_BUDGET = 32_768  # tokens of K/V held per sub-batch (rows x (prefix + suffix + new tokens))


class PrefixSharingEngine(LlavaEngine):
    """`Model` implementation with image-prefix reuse; `batch_size` caps rows per batch for single questions,
    `token_budget` sizes the shared-prefix sub-batches, `workers` threads prepare requests."""

    def __init__(self, bundle, batch_size: int = 8, token_budget: int = DEFAULT_TOKEN_BUDGET, workers: int = 2,
                 max_rows: int = 64):
        super().__init__(bundle, batch_size=batch_size)
        self.token_budget, self.workers, self.max_rows = token_budget, workers, max_rows
        # The runner hands over this many requests at a time: enough for whole images' question groups and
        # several batches, few enough that a crash loses little (each chunk is written as it finishes).
        self.chunk_size = max(4 * batch_size, 32)
        self.stats = defaultdict(int)

    def generate_tokens(self, requests: list[Request]) -> list[list[int]]:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            prepared = list(pool.map(lambda ir: self.prepare(*ir), enumerate(requests)))
        groups: dict = defaultdict(list)
        singles = []
        for p in prepared:
            if p.pixel_values is None:
                singles.append(p)
            else:
                groups[_pixels_key(p.pixel_values)].append(p)
        out: list[list[int]] = [[] for _ in requests]
        for members in groups.values():
            if len(members) == 1:
                singles.extend(members)
                continue
            for p, tokens in self._shared_prefix_group(members):
                out[p.index] = tokens
        order = sorted(singles, key=lambda p: (-len(p.ids), p.index))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            self.stats["single_batches"] += 1
            for p, tokens in zip(batch, self._generate_batch(batch), strict=True):
                out[p.index] = tokens
        return out

    # ---- one image, several questions ----------------------------------------------------------------
    def _shared_prefix_group(self, members: list[Prepared]) -> list[tuple[Prepared, list[int]]]:
        image_id = self.bundle.model.config.image_token_id
        prefix_len = min(_common_prefix(members), min(len(p.ids) for p in members) - 1)
        prefix = members[0].ids[:prefix_len]
        if any(image_id in p.ids[prefix_len:] for p in members):  # the image is not inside the shared part
            return self._fallback(members)
        results = []
        model = self.bundle.model
        device = self.bundle.device
        with torch.inference_mode():
            features = image_features(model, members[0].pixel_values.to(device))
            self.stats["images_encoded"] += 1
            ids = torch.tensor([prefix], device=device)
            embeds = embed_inputs(model, ids, features=features)
            lm = model.model.language_model
            out = lm(inputs_embeds=embeds, position_ids=torch.arange(prefix_len, device=device)[None],
                     use_cache=True)
            self.stats["prefills"] += 1
            cache = out.past_key_values
            members = sorted(members, key=lambda p: (len(p.ids), p.index))
            start = 0
            while start < len(members):
                rows = self._rows_that_fit(members[start:], prefix_len)
                batch = members[start:start + rows]
                results += zip(batch, self._decode(batch, prefix_len, cache), strict=True)
                start += rows
        return results

    def _rows_that_fit(self, members: list[Prepared], prefix_len: int) -> int:
        rows = 0
        longest, most_new = 0, 0
        for p in members[:self.max_rows]:
            longest, most_new = max(longest, len(p.ids) - prefix_len), max(most_new, p.max_new_tokens)
            if rows and (rows + 1) * (prefix_len + longest + most_new) > self.token_budget:
                break
            rows += 1
        return rows

    def _decode(self, batch: list[Prepared], prefix_len: int, prefix_cache) -> list[list[int]]:
        model, device = self.bundle.model, self.bundle.device
        lm, head = model.model.language_model, model.lm_head
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(batch))
        width = max(len(p.ids) - prefix_len for p in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        suffix_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, p in enumerate(batch):
            suffix = p.ids[prefix_len:]
            ids[row, width - len(suffix):] = torch.tensor(suffix)
            suffix_mask[row, width - len(suffix):] = 1
        ids, suffix_mask = ids.to(device), suffix_mask.to(device)
        mask = torch.cat([torch.ones((len(batch), prefix_len), dtype=torch.long, device=device), suffix_mask], 1)
        positions = prefix_len + (suffix_mask.cumsum(1) - 1).clamp(min=0)
        embeds = lm.get_input_embeddings()(ids)
        caps = [p.max_new_tokens for p in batch]
        tokens: list[list[int]] = [[] for _ in batch]
        done = [False] * len(batch)
        step_pos = positions[:, -1:]
        for _ in range(max(caps)):
            out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                     use_cache=True)
            self.stats["decode_steps"] += 1
            cache = out.past_key_values
            next_ids = head(out.last_hidden_state[:, -1]).argmax(-1)
            for row, token in enumerate(next_ids.tolist()):
                if done[row]:
                    continue
                if token == self.eos_id:
                    done[row] = True
                    continue
                tokens[row].append(token)
                if len(tokens[row]) >= caps[row]:
                    done[row] = True
            if all(done):
                break
            step_pos = step_pos + 1
            positions = step_pos
            mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=torch.long, device=device)], 1)
            embeds = lm.get_input_embeddings()(next_ids[:, None])
        return tokens

    def _fallback(self, members) -> list[tuple[Prepared, list[int]]]:
        order = sorted(members, key=lambda p: (-len(p.ids), p.index))
        results = []
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            results += zip(batch, self._generate_batch(batch), strict=True)
        return results


def _pixels_key(pixels: torch.Tensor) -> str:
    return hashlib.sha256(pixels.detach().to("cpu").contiguous().numpy().tobytes()).hexdigest()


def _common_prefix(members: list[Prepared]) -> int:
    first = members[0].ids
    n = min(len(p.ids) for p in members)
    for i in range(n):
        if any(p.ids[i] != first[i] for p in members[1:]):
            return i
    return n
