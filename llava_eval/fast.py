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

import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import torch

from llava_model.model import embed_inputs, image_features
from llava_types import Request

from .engine import LlavaEngine, Prepared

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
        prepared = self._prepare_all(requests)
        groups: dict = defaultdict(list)
        singles = []
        for p, key in prepared:
            if key is None:
                singles.append(p)
            else:
                groups[key].append(p)
        out: list[list[int]] = [[] for _ in requests]
        image_id = self.bundle.model.config.image_token_id
        pieces: dict[int, list] = defaultdict(list)  # prefix length -> pieces (questions on one image)
        for members in groups.values():
            if len(members) == 1:
                singles.extend(members)
                continue
            prefix_len = min(_common_prefix(members), min(len(p.ids) for p in members) - 1)
            if any(image_id in p.ids[prefix_len:] for p in members):  # the image is not in the shared part
                singles.extend(members)
                continue
            members = sorted(members, key=lambda p: (len(p.ids), p.index))
            for start in range(0, len(members), self.max_rows):
                pieces[prefix_len].append(members[start:start + self.max_rows])
        for prefix_len, group_pieces in pieces.items():
            for chunk in self._chunks(group_pieces, prefix_len):
                for p, tokens in self._shared_prefix_chunk(chunk, prefix_len):
                    out[p.index] = tokens
        self.stats["single_batches"] += self._batched(singles, out)
        return out

    def _prepare_all(self, requests: list[Request]) -> list[tuple[Prepared, str | None]]:
        """Prepare requests in worker threads, preprocessing each distinct image once (the requests with the same
        image key reuse its pixels); returns each request with its image key (None without an image)."""
        keys = [_image_key(r) for r in requests]
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is not None:
                first.setdefault(key, i)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            prepared = dict(zip(first.values(), pool.map(lambda i: self.prepare(i, requests[i]), first.values()),
                                strict=True))
            pixels = {key: prepared[i].pixel_values for key, i in first.items()}
            rest = [i for i in range(len(requests)) if i not in prepared]
            prepared.update(zip(rest, pool.map(lambda i: self.prepare(i, requests[i], pixels.get(keys[i])), rest),
                                strict=True))
        return [(prepared[i], keys[i]) for i in range(len(requests))]

    def _chunks(self, pieces: list[list[Prepared]], prefix_len: int):
        """Pieces (one image's questions each) packed into batches by rows and the token budget."""
        chunk, rows, longest, most_new = [], 0, 0, 0
        for piece in pieces:
            p_long = max(len(p.ids) for p in piece) - prefix_len
            p_new = max(p.max_new_tokens for p in piece)
            cost = (rows + len(piece)) * (prefix_len + max(longest, p_long) + max(most_new, p_new))
            if chunk and (rows + len(piece) > self.max_rows or cost > self.token_budget):
                yield chunk
                chunk, rows, longest, most_new = [], 0, 0, 0
            chunk.append(piece)
            rows += len(piece)
            longest, most_new = max(longest, p_long), max(most_new, p_new)
        if chunk:
            yield chunk

    def _shared_prefix_chunk(self, chunk: list[list[Prepared]], prefix_len: int) -> list[tuple[Prepared, list[int]]]:
        """Several images' question groups: their prefixes prefilled in one batch (equal lengths, no padding),
        the cache rows repeated per question, then one batched decode."""
        model, device = self.bundle.model, self.bundle.device
        with torch.inference_mode():
            pixels = torch.cat([piece[0].pixel_values for piece in chunk]).to(device)
            features = image_features(model, pixels)
            self.stats["images_encoded"] += len(chunk)
            ids = torch.tensor([piece[0].ids[:prefix_len] for piece in chunk], device=device)
            embeds = embed_inputs(model, ids, features=features)
            lm = model.model.language_model
            positions = torch.arange(prefix_len, device=device)[None].expand(len(chunk), -1)
            cache = lm(inputs_embeds=embeds, position_ids=positions, use_cache=True).past_key_values
            self.stats["prefills"] += len(chunk)
            self.stats["prefill_batches"] += 1
            rows = [p for piece in chunk for p in piece]
            owner = torch.tensor([g for g, piece in enumerate(chunk) for _ in piece], device=device)
            cache.reorder_cache(owner)
            return list(zip(rows, self._decode(rows, prefix_len, cache), strict=True))

    def _decode(self, batch: list[Prepared], prefix_len: int, cache) -> list[list[int]]:
        """Greedy decode of `batch` (one row each) on a prefix cache that already has one row per question."""
        model, device = self.bundle.model, self.bundle.device
        lm, head = model.model.language_model, model.lm_head
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

def _image_key(request: Request) -> str | None:
    """Identity of a request's image content and preprocessing; None for text-only or multi-image requests."""
    if len(request.images) != 1:
        return None
    image = request.images[0]
    if isinstance(image, bytes):
        data = image
    elif isinstance(image, str) or hasattr(image, "__fspath__"):
        data = str(image).encode()
    else:
        data = f"{image.mode}{image.size}".encode() + image.tobytes()
    return hashlib.sha256(data).hexdigest() + f":{request.image_mode}"


def _common_prefix(members: list[Prepared]) -> int:
    first = members[0].ids
    n = min(len(p.ids) for p in members)
    for i in range(n):
        if any(p.ids[i] != first[i] for p in members[1:]):
            return i
    return n
