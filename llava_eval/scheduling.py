"""Which requests go through the model together: the engine's two scheduling strategies.

    SortedBatches (--engine reference): requests sorted by prompt length, in batches of `batch_size`, each a
        left-padded `generate` call; batch size 1 is the original scripts' loop.
    PrefixSharing (--engine fast, the default): every question about one image shares the prompt prefix
        `[system][image tokens]`, so requests are prepared in worker threads (each distinct image preprocessed
        once), grouped by image, the groups packed into sub-batches by a row cap and a token budget; per
        sub-batch the vision tower runs once per image, each prefix is prefilled once and its KV cache
        serves a batched greedy decode of the image's questions. Single questions use sorted batches.

Greedy decoding with the same positions and masked-out padding computes the same function either way; on
CPU in float32 the answers are identical (tested on every synthetic task). The model math is the engine's.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from llava_types import Request, UserError

if TYPE_CHECKING:
    from .engine import LlavaEngine

DEFAULT_TOKEN_BUDGET = 32_768  # tokens of K/V held per sub-batch (rows x (prefix + suffix + new tokens))


@dataclass
class Prepared:
    """One request ready for the model: its position in the call, prompt ids, images and token cap."""

    index: int
    ids: list[int]
    pixel_values: Any
    max_new_tokens: int


class Strategy(Protocol):
    name: str

    def chunk_size(self, batch_size: int) -> int:
        """How many requests the runner should hand over at a time."""
        ...

    def schedule(self, engine: LlavaEngine, requests: list[Request]) -> list[list[int]]:
        """New token ids per request, in request order."""
        ...


def sorted_batches(engine: LlavaEngine, prepared: list[Prepared], out: list[list[int]]) -> int:
    """Generate `prepared` in batches of `engine.batch_size` into `out` (by request index); returns the batch
    count. Longest first, so padding stays small and the first batch shows the memory peak."""
    order = sorted(prepared, key=lambda p: (-len(p.ids), p.index))
    for start in range(0, len(order), engine.batch_size):
        batch = order[start:start + engine.batch_size]
        for p, tokens in zip(batch, engine.generate_batch(batch), strict=True):
            out[p.index] = tokens
    return -(-len(order) // engine.batch_size)


class SortedBatches:
    """Plain batches: every request prepared on its own (its image preprocessed and encoded each time)."""

    name = "sorted-batches"

    def chunk_size(self, batch_size: int) -> int:
        return batch_size

    def schedule(self, engine: LlavaEngine, requests: list[Request]) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in requests]
        sorted_batches(engine, [engine.prepare(i, r) for i, r in enumerate(requests)], out)
        return out


class PrefixSharing:
    """Image-prefix reuse: `token_budget` sizes the shared-prefix sub-batches (at most `max_rows` rows),
    `workers` threads prepare requests; single questions go in sorted batches of the engine's batch size."""

    name = "prefix-sharing"

    def __init__(self, token_budget: int = DEFAULT_TOKEN_BUDGET, workers: int = 2, max_rows: int = 64):
        self.token_budget, self.workers, self.max_rows = token_budget, workers, max_rows

    def chunk_size(self, batch_size: int) -> int:
        # Enough for whole images' question groups and several batches, few enough that a crash loses little
        # (the runner writes each chunk as it finishes).
        return max(4 * batch_size, 32)

    def schedule(self, engine: LlavaEngine, requests: list[Request]) -> list[list[int]]:
        groups: dict = defaultdict(list)
        singles = []
        for p, key in self._prepare_all(engine, requests):
            (singles if key is None else groups[key]).append(p)
        out: list[list[int]] = [[] for _ in requests]
        pieces: dict[int, list] = defaultdict(list)  # prefix length -> pieces (questions on one image)
        for members in groups.values():
            prefix_len = min(_common_prefix(members), min(len(p.ids) for p in members) - 1)
            # one question, or the image is not in the shared part: nothing to share
            if len(members) == 1 or any(engine.image_token_id in p.ids[prefix_len:] for p in members):
                singles.extend(members)
                continue
            members = sorted(members, key=lambda p: (len(p.ids), p.index))
            for start in range(0, len(members), self.max_rows):
                pieces[prefix_len].append(members[start:start + self.max_rows])
        for prefix_len, group_pieces in pieces.items():
            for chunk in self._chunks(group_pieces, prefix_len):
                rows = [p for piece in chunk for p in piece]
                for p, tokens in zip(rows, engine.generate_shared(chunk, prefix_len), strict=True):
                    out[p.index] = tokens
        engine.stats["single_batches"] += sorted_batches(engine, singles, out)
        return out

    def _prepare_all(self, engine: LlavaEngine, requests: list[Request]) -> list[tuple[Prepared, str | None]]:
        """Prepare requests in worker threads, preprocessing each distinct image once (the requests with the same
        image key reuse its pixels); returns each request with its image key (None without an image)."""
        keys = [_image_key(r) for r in requests]
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is not None:
                first.setdefault(key, i)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            prepared = dict(zip(first.values(), pool.map(lambda i: engine.prepare(i, requests[i]), first.values()),
                                strict=True))
            pixels = {key: prepared[i].pixel_values for key, i in first.items()}
            rest = [i for i in range(len(requests)) if i not in prepared]
            prepared.update(zip(rest, pool.map(lambda i: engine.prepare(i, requests[i], pixels.get(keys[i])), rest),
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


# Names of `--engine`, kept for the command line; each maps to the strategy it selects.
STRATEGIES = {"fast": PrefixSharing, "reference": SortedBatches}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise UserError(f"unknown engine {name!r}; valid: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()


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
