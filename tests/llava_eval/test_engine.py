"""The batched greedy engine: results in request order, each row stopped at its own token cap, and
batch-size invariance (batch 1 and batch 8 give identical answers on CPU in float32), which peers
lose with left padding (lmms-eval #236, LLaVA #1928)."""

from __future__ import annotations

import pytest

from llava_eval.engine import LlavaEngine
from llava_model.conversation import eval_messages
from llava_types import USER, GenerationSettings, Message, Request, UserError

QUESTIONS = [
    "What color is the circle?",
    "Is there a red square in the image?\nAnswer the question using a single word or phrase.",
    "How many?",
    "Describe the image in detail, naming every shape, its colour and where it is.",
    "A. red\nB. blue\nC. green\nAnswer with the option's letter from the given choices directly.",
    "Which shape is at the top left of the picture?",
    "x",
    "What is written on the sign?",
]


@pytest.fixture(scope="module")
def mixed_requests():
    from tests.conftest import shape_image

    requests = []
    for i, q in enumerate(QUESTIONS):
        has_image = i != 6  # one text-only request in the mix
        images = (shape_image(120 + 37 * i, 90 + 23 * (7 - i), i),) if has_image else ()
        requests.append(Request(f"q{i}", eval_messages(q, has_image), images,
                                GenerationSettings(max_new_tokens=3 + 2 * i)))
    return requests


def test_batch_size_invariance(tiny_bundle, mixed_requests):
    one = LlavaEngine(tiny_bundle, batch_size=1).generate(mixed_requests)
    eight = LlavaEngine(tiny_bundle, batch_size=8).generate(mixed_requests)
    three = LlavaEngine(tiny_bundle, batch_size=3).generate(mixed_requests)
    assert one == eight == three
    assert len(set(one)) > 1  # the requests really differ


def test_outputs_respect_each_token_cap(tiny_bundle, mixed_requests):
    from dataclasses import replace

    engine = LlavaEngine(tiny_bundle, batch_size=8)
    capped = engine.generate_tokens(mixed_requests)
    long = engine.generate_tokens([replace(r, settings=GenerationSettings(max_new_tokens=40)) for r in mixed_requests])
    for req, short, full in zip(mixed_requests, capped, long, strict=True):
        assert len(short) <= req.settings.max_new_tokens
        assert short == full[:len(short)]
        assert len(short) == min(req.settings.max_new_tokens, len(full))


def test_order_is_request_order(tiny_bundle, mixed_requests):
    engine = LlavaEngine(tiny_bundle, batch_size=4)
    forward = engine.generate(mixed_requests)
    backward = engine.generate(mixed_requests[::-1])
    assert backward == forward[::-1]


def test_image_count_mismatch_is_a_user_error(tiny_bundle):
    req = Request("bad", (Message(USER, "<image>\nWhat?"),), ())
    with pytest.raises(UserError, match="1 <image> placeholders but 0 images"):
        LlavaEngine(tiny_bundle).generate([req])


def test_unreadable_image_is_a_user_error(tiny_bundle, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    req = Request("bad", eval_messages("What?", True), (str(bad),))
    with pytest.raises(UserError, match="broken.jpg"):
        LlavaEngine(tiny_bundle).generate([req])


def test_greedy_only():
    with pytest.raises(ValueError, match="greedy"):
        GenerationSettings(temperature=0.7)


def test_decoding_stays_greedy_whatever_generation_config_the_checkpoint_ships(tmp_path, tiny_bundle, make_image):
    """Reference: protocol 1.5 (greedy, one beam, no penalty). A checkpoint's generation_config.json asking for
    sampling, penalties or a minimum length changes no answer of either scheduling strategy."""
    import json

    from llava_eval.scheduling import PrefixSharing, SortedBatches
    from llava_model.checkpoint import load_bundle, save_bundle

    save_bundle(tiny_bundle, tmp_path / "ckpt")
    image = make_image(40, 30, 1)
    requests = [Request(i, (Message(USER, "<image>\nWhat colour is it?" + " Tell me." * i),), (image,),
                        GenerationSettings(12)) for i in range(3)]

    def answers():
        bundle = load_bundle(str(tmp_path / "ckpt"), device="cpu", dtype="float32")
        return [LlavaEngine(bundle, strategy, batch_size=2).generate(requests)
                for strategy in (SortedBatches(), PrefixSharing())]

    greedy = answers()
    (tmp_path / "ckpt" / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "temperature": 0.7, "top_p": 0.5, "top_k": 3, "repetition_penalty": 5.0,
         "no_repeat_ngram_size": 1, "min_new_tokens": 10, "num_beams": 2}))
    assert answers() == greedy
    assert greedy[0] == greedy[1]
