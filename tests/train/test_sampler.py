"""group_by_modality_length sampler: a permutation whose megabatches are single-modality except the merged
last one, reproducing llava_trainer.py, checked against hand examples and an independent re-derivation."""

from __future__ import annotations

import pytest
import torch

from train.sampler import (
    LengthGroupedSampler,
    length_grouped_indices,
    modality_length_grouped_indices,
    split_to_even_chunks,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mixed_lengths(n_mm: int, n_lang: int, seed: int = 0) -> list[int]:
    """Word counts 1..60, positive for image samples, negative for text-only ones, interleaved."""
    g = _gen(seed)
    words = (torch.randint(1, 61, (n_mm + n_lang,), generator=g)).tolist()
    signs = [1] * n_mm + [-1] * n_lang
    order = torch.randperm(n_mm + n_lang, generator=g).tolist()
    return [words[i] * signs[order[i]] for i in range(n_mm + n_lang)]


def _reference(lengths, batch_size, world_size, generator):
    """Independent re-derivation of the original algorithm (same torch draws, in the same order)."""
    mbs = batch_size * world_size

    def balanced(idx_desc, lens):
        if len(idx_desc) % world_size:
            return [idx_desc[r::world_size] for r in range(world_size)]
        cap = len(idx_desc) // world_size
        bins, load = [[] for _ in range(world_size)], [0.0] * world_size
        for i in idx_desc:
            open_bins = [r for r in range(world_size) if len(bins[r]) < cap]
            r = min(open_bins, key=lambda b: (load[b], b))
            bins[r].append(i)
            load[r] += lens[i]
        return bins

    def grouped(lens):
        perm = torch.randperm(len(lens), generator=generator).tolist()
        out = []
        for start in range(0, len(perm), mbs):
            mb = sorted(perm[start:start + mbs], key=lambda i: -lens[i])  # stable: ties keep shuffled order
            out += [i for chunk in balanced(mb, lens) for i in chunk]
        return out

    if all(n > 0 for n in lengths) or all(n < 0 for n in lengths):
        return grouped(lengths)
    mm = [i for i, n in enumerate(lengths) if n > 0]
    lang = [i for i, n in enumerate(lengths) if n < 0]
    mm_order = [mm[j] for j in grouped([lengths[i] for i in mm])]
    lang_order = [lang[j] for j in grouped([-lengths[i] for i in lang])]
    mm_mb = [mm_order[s:s + mbs] for s in range(0, len(mm_order), mbs)]
    lang_mb = [lang_order[s:s + mbs] for s in range(0, len(lang_order), mbs)]
    body = mm_mb[:-1] + lang_mb[:-1]
    shuffled = [body[k] for k in torch.randperm(len(body), generator=generator).tolist()]
    return [i for mb in shuffled for i in mb] + sorted(mm_mb[-1] + lang_mb[-1])


def _megabatches(order, size):
    return [order[s:s + size] for s in range(0, len(order), size)]


def test_split_to_even_chunks_hand_example():
    lengths = [10, 9, 8, 3, 2, 1]
    assert split_to_even_chunks([0, 1, 2, 3, 4, 5], lengths, 2) == [[0, 3, 4], [1, 2, 5]]
    # Not divisible: a strided split.
    assert split_to_even_chunks([4, 3, 2, 1, 0], lengths, 2) == [[4, 2, 0], [3, 1]]


def test_single_megabatch_hand_example():
    # One megabatch of the whole set: the shuffle does not matter; sorted longest first, then balanced:
    # 4(6)->r0, 0(5)->r1, 2(4)->r1, 5(3)->r0, 3(2)->r0 (tie 9/9: first rank; r0 now full), 1(1)->r1.
    lengths = [5, 1, 4, 2, 6, 3]
    for seed in range(3):
        assert modality_length_grouped_indices(lengths, 3, 2, _gen(seed)) == [4, 5, 3, 0, 2, 1]


def test_merged_last_batch_hand_example():
    # Each modality fits in one megabatch: no shuffled body, only the merged batch, sorted by index.
    assert modality_length_grouped_indices([3, -2, 5, -1], 2, 1, _gen(0)) == [0, 1, 2, 3]


@pytest.mark.parametrize("n_mm,n_lang,batch,world", [(37, 23, 4, 2), (16, 8, 4, 2), (50, 50, 5, 1), (9, 30, 2, 3)])
def test_permutation_single_modality_megabatches_and_merged_tail(n_mm, n_lang, batch, world):
    lengths = _mixed_lengths(n_mm, n_lang)
    order = modality_length_grouped_indices(lengths, batch, world, _gen(1))
    assert sorted(order) == list(range(len(lengths)))
    mbs = batch * world
    # The tail is the last megabatch of each modality (full when the count divides), merged and sorted.
    tail_len = (n_mm % mbs or mbs) + (n_lang % mbs or mbs)
    body, tail = order[:-tail_len], order[-tail_len:]
    assert tail == sorted(tail)
    assert {lengths[i] > 0 for i in tail} == {True, False}
    for mb in _megabatches(body, mbs):
        assert len(mb) == mbs
        assert len({lengths[i] > 0 for i in mb}) == 1
    assert order == _reference(lengths, batch, world, _gen(1))


def test_matches_reference_on_many_seeds():
    for seed in range(20):
        lengths = _mixed_lengths(5 + seed, 3 + 2 * seed, seed=seed)
        for batch, world in ((1, 1), (2, 2), (3, 2), (4, 1)):
            assert modality_length_grouped_indices(lengths, batch, world, _gen(seed)) == \
                _reference(lengths, batch, world, _gen(seed))


def test_global_rng_when_no_generator():
    # Without a generator every draw comes from torch's global RNG, as in LLaVATrainer.
    lengths = _mixed_lengths(30, 20)
    torch.manual_seed(7)
    ours = modality_length_grouped_indices(lengths, 4, 2, None)
    torch.manual_seed(7)
    assert ours == _reference(lengths, 4, 2, None)


def test_determinism():
    lengths = _mixed_lengths(40, 25)
    a = modality_length_grouped_indices(lengths, 4, 2, _gen(3))
    assert a == modality_length_grouped_indices(lengths, 4, 2, _gen(3))
    assert a != modality_length_grouped_indices(lengths, 4, 2, _gen(4))


@pytest.mark.parametrize("sign", [1, -1])
def test_one_modality_shortcut(sign):
    lengths = [sign * n for n in (7, 3, 9, 1, 4, 8, 2, 6, 5, 10, 11)]
    ours = modality_length_grouped_indices(lengths, 2, 2, _gen(5))
    assert ours == length_grouped_indices(lengths, 2, 2, _gen(5))
    assert ours == _reference(lengths, 2, 2, _gen(5))
    assert sorted(ours) == list(range(len(lengths)))


def test_equal_modality_counts():
    lengths = _mixed_lengths(24, 24)
    order = modality_length_grouped_indices(lengths, 4, 2, _gen(0))
    assert sorted(order) == list(range(48))
    # 3 full megabatches of 8 per modality: 2 + 2 shuffled in the body, the last of each merged into a
    # 16-sample tail (full last megabatches are merged too, as in the original).
    kinds = [lengths[mb[0]] > 0 for mb in _megabatches(order[:32], 8)]
    assert sorted(kinds) == [False, False, True, True]
    assert order[32:] == sorted(order[32:])


def test_zero_length_rejected():
    with pytest.raises(ValueError, match="sample 2 has length 0"):
        modality_length_grouped_indices([3, -1, 0], 1, 1, _gen(0))


def test_sampler_class():
    lengths = _mixed_lengths(30, 11)
    sampler = LengthGroupedSampler(4, 2, lengths=lengths, generator=_gen(9))
    assert len(sampler) == 41
    first, second = list(sampler), list(sampler)
    assert first == modality_length_grouped_indices(lengths, 4, 2, _gen(9))
    assert sorted(second) == list(range(41)) and second != first  # every epoch draws a new order
    plain = LengthGroupedSampler(4, 2, lengths=[abs(n) for n in lengths], generator=_gen(9), group_by_modality=False)
    assert list(plain) == length_grouped_indices([abs(n) for n in lengths], 4, 2, _gen(9))
    with pytest.raises(ValueError, match="lengths"):
        LengthGroupedSampler(4, 2)
