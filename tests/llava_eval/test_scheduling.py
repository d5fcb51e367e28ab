"""The prefix-sharing strategy (`--engine fast`) answers exactly as the reference loop (batch size 1, image
encoded per question, full prefill, transformers' generate) on CPU in float32, on every synthetic task, while
encoding each distinct image once and prefilling its prefix once."""

from __future__ import annotations

import hashlib

import pytest

from llava_eval.data import load_docs
from llava_eval.engine import LlavaEngine
from llava_eval.runner import build_requests
from llava_eval.scheduling import PrefixSharing
from llava_types import USER, GenerationSettings, Message, Request
from tasks.registry import SUITES, get_task

LONG_ANSWERS = {"llava_bench": 9, "mmvet": 9}  # 1024-token caps: fewer rows keep the test short


@pytest.fixture(scope="module")
def shapes():
    from llava_model.checkpoint import load_bundle

    return load_bundle("tiny-shapes")


def _requests(name, limit):
    task = get_task(name)
    docs = load_docs(task, "synthetic", limit=limit)
    requests, errors = build_requests(task, docs, range(len(docs)), None)
    assert not errors
    return requests


@pytest.mark.parametrize("name", list(SUITES["llava-1.5-local"]) + list(LONG_ANSWERS))
def test_identical_to_the_reference_loop_on_every_synthetic_task(shapes, name):
    requests = _requests(name, LONG_ANSWERS.get(name, 30))
    reference = LlavaEngine(shapes, batch_size=1).generate_tokens(requests)
    fast = LlavaEngine(shapes, PrefixSharing(), batch_size=8)
    assert fast.generate_tokens(requests) == reference
    distinct = len({hashlib.sha256(r.images[0].tobytes()).hexdigest() for r in requests})
    shared = fast.stats["images_encoded"]
    # every image with two or more questions is encoded and prefilled exactly once
    assert shared == fast.stats["prefills"] <= distinct


def test_pope_like_groups_use_the_shared_prefix(shapes):
    requests = _requests("pope", 24)  # 6 questions on each of 4 images
    fast = LlavaEngine(shapes, PrefixSharing(), batch_size=8)
    assert fast.generate_tokens(requests) == LlavaEngine(shapes, batch_size=1).generate_tokens(requests)
    assert fast.stats["images_encoded"] == fast.stats["prefills"] == 4 and fast.stats["single_batches"] == 0


def test_small_token_budget_splits_groups_without_changing_answers(shapes):
    requests = _requests("pope", 12)
    tight = LlavaEngine(shapes, PrefixSharing(token_budget=300), batch_size=8)
    assert tight.generate_tokens(requests) == LlavaEngine(shapes, PrefixSharing()).generate_tokens(requests)
    assert tight.stats["prefills"] == 2  # the prefix is still prefilled once per image


def test_random_weights_long_answers_and_text_only_rows(tiny_bundle, make_image):
    """The 336 px tiny model (576 image tokens) rambles to its cap: caps per row, and text-only requests."""
    image = make_image(200, 150, 1)
    settings = [GenerationSettings(max_new_tokens=n) for n in (3, 9, 17)]
    requests = [Request(i, (Message(USER, f"<image>\nQuestion number {i}{'?' * i}"),), (image,), settings[i % 3])
                for i in range(5)]
    requests.append(Request(5, (Message(USER, "A text-only question"),), (), settings[1]))
    fast = LlavaEngine(tiny_bundle, PrefixSharing(), batch_size=4)
    out = fast.generate_tokens(requests)
    assert out == LlavaEngine(tiny_bundle, batch_size=1).generate_tokens(requests)
    assert all(len(t) <= r.settings.max_new_tokens for t, r in zip(out, requests, strict=True))
    assert len({len(t) for t in out[:5]}) > 1  # rows stopped at different caps within one shared-prefix batch
    assert fast.stats["prefills"] == 1
