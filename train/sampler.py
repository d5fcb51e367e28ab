"""`group_by_modality_length`: the training sampler of LLaVA-1.5 stage 2, which makes every optimizer step
except the last single-modality (all samples with images, or all text-only) and balances lengths across ranks.

Reference: haotian-liu/LLaVA `llava/train/llava_trainer.py` (split_to_even_chunks,
get_length_grouped_indices, get_modality_length_grouped_indices, LengthGroupedSampler).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def split_to_even_chunks(indices: list[int], lengths: Sequence[int], num_chunks: int) -> list[list[int]]:
    """Split `indices` (sorted by length, longest first) into `num_chunks` chunks of equal size and
    roughly equal total length: each index goes to the currently shortest chunk that is not yet full.

    Reference: llava_trainer.py split_to_even_chunks (strided split when the count does not divide).
    """
    if len(indices) % num_chunks != 0:
        return [indices[i::num_chunks] for i in range(num_chunks)]
    per_chunk = len(indices) // num_chunks
    chunks: list[list[int]] = [[] for _ in range(num_chunks)]
    totals: list[float] = [0] * num_chunks
    for index in indices:
        shortest = totals.index(min(totals))  # first of equal minima, as the original
        chunks[shortest].append(index)
        totals[shortest] += lengths[index]
        if len(chunks[shortest]) == per_chunk:
            totals[shortest] = float("inf")  # a full chunk never wins again
    return chunks


def length_grouped_indices(lengths: Sequence[int], batch_size: int, world_size: int,
                           generator: torch.Generator | None = None) -> list[int]:
    """Shuffle, cut into megabatches of world_size * batch_size, sort each by length (longest first) and
    split it into one batch per rank.

    Reference: llava_trainer.py get_length_grouped_indices (the random draw is torch's, so that the
    Trainer's seed fixes it on every rank).
    """
    indices = torch.randperm(len(lengths), generator=generator)
    megabatch_size = world_size * batch_size
    megabatches = [indices[i:i + megabatch_size].tolist() for i in range(0, len(lengths), megabatch_size)]
    megabatches = [sorted(mb, key=lambda i: lengths[i], reverse=True) for mb in megabatches]
    return [i for mb in megabatches for chunk in split_to_even_chunks(mb, lengths, world_size) for i in chunk]


def modality_length_grouped_indices(lengths: Sequence[int], batch_size: int, world_size: int,
                                    generator: torch.Generator | None = None) -> list[int]:
    """A permutation of range(len(lengths)) in which every megabatch (world_size * batch_size
    consecutive indices) is single-modality, except the last, which merges the last (partial) megabatch of
    each modality. `lengths` are positive for samples with an image, negative for text-only ones.

    Reference: llava_trainer.py get_modality_length_grouped_indices. One deliberate difference: the
    original draws the two per-modality shuffles from torch's global RNG even when given a generator;
    here all three draws use `generator`. With generator=None (how LLaVATrainer builds the sampler)
    the draws, their order and so the result are the original's.
    """
    if any(length == 0 for length in lengths):
        raise ValueError(f"sample {list(lengths).index(0)} has length 0; every sample needs at least one word")
    if all(length > 0 for length in lengths) or all(length < 0 for length in lengths):
        # All samples are of one modality: plain length grouping (the original's shortcut).
        return length_grouped_indices(lengths, batch_size, world_size, generator=generator)
    mm_indices, mm_lengths = zip(*[(i, n) for i, n in enumerate(lengths) if n > 0], strict=True)
    lang_indices, lang_lengths = zip(*[(i, -n) for i, n in enumerate(lengths) if n < 0], strict=True)
    mm_order = [mm_indices[i] for i in length_grouped_indices(mm_lengths, batch_size, world_size, generator)]
    lang_order = [lang_indices[i] for i in length_grouped_indices(lang_lengths, batch_size, world_size, generator)]

    megabatch_size = world_size * batch_size
    mm_megabatches = [mm_order[i:i + megabatch_size] for i in range(0, len(mm_order), megabatch_size)]
    lang_megabatches = [lang_order[i:i + megabatch_size] for i in range(0, len(lang_order), megabatch_size)]
    # The last megabatch of each modality is usually partial: both are merged into one mixed megabatch
    # (sorted by index, not by length, as the original) that goes at the very end.
    additional = mm_megabatches[-1] + lang_megabatches[-1]
    megabatches = mm_megabatches[:-1] + lang_megabatches[:-1]
    order = torch.randperm(len(megabatches), generator=generator)
    megabatches = [megabatches[i] for i in order]
    if additional:
        megabatches.append(sorted(additional))
    return [i for mb in megabatches for i in mb]


class LengthGroupedSampler(Sampler[int]):
    """Sampler for the HF Trainer. As in LLaVATrainer._get_train_sampler, pass the per-device batch size
    and `world_size = number of processes * gradient_accumulation_steps`, so that one megabatch is one
    optimizer step. Every epoch draws a new order.

    Reference: llava_trainer.py LengthGroupedSampler (group_by_modality defaults to True here).
    """

    def __init__(self, batch_size: int, world_size: int, lengths: Sequence[int] | None = None,
                 generator: torch.Generator | None = None, group_by_modality: bool = True):
        if lengths is None:
            raise ValueError("lengths must be provided")
        if batch_size < 1 or world_size < 1:
            raise ValueError(f"batch_size and world_size must be positive, got {batch_size} and {world_size}")
        self.batch_size = batch_size
        self.world_size = world_size
        self.lengths = list(lengths)
        self.generator = generator
        self.group_by_modality = group_by_modality

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        if self.group_by_modality:
            order = modality_length_grouped_indices(self.lengths, self.batch_size, self.world_size, self.generator)
        else:
            order = length_grouped_indices(self.lengths, self.batch_size, self.world_size, self.generator)
        return iter(order)
