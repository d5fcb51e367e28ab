"""Parity of our model path with transformers' reference `LlavaForConditionalGeneration`: same weights,
same inputs, same logits. Our path splices image features into the embeddings itself (as the original
`prepare_inputs_labels_for_multimodal` does); transformers embeds expanded `<image>` ids and scatters."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from llava_model.conversation import VICUNA_V1, eval_messages, render
from llava_model.model import embed_inputs, image_features
from llava_model.preprocess import preprocess
from llava_model.presets import PRESETS, get_preset, image_seq_length, llava_config
from llava_model.tokenization import tokenize_prompt
from llava_types import UserError


@pytest.fixture(scope="module")
def reference(tiny_bundle):
    from transformers import LlavaForConditionalGeneration

    ref = LlavaForConditionalGeneration(tiny_bundle.model.config)
    ref.load_state_dict(tiny_bundle.model.state_dict())
    return ref.eval()


def _inputs(bundle, images, question):
    prompt = render(VICUNA_V1, eval_messages(question, True), add_generation_prompt=True)
    ids = tokenize_prompt(prompt, bundle.tokenizer, bundle.image_token_id, bundle.image_seq_length)
    pixels = preprocess(images, bundle.image_processor, "pad")
    return torch.tensor([ids]), pixels


def test_image_features_match_transformers(tiny_bundle, reference, make_image):
    _, pixels = _inputs(tiny_bundle, [make_image(300, 200, 1)], "What?")
    ours = image_features(tiny_bundle.model, pixels)
    theirs = reference.model.get_image_features(pixels, vision_feature_layer=-2,
                                                vision_feature_select_strategy="default").pooler_output
    assert ours.shape == (1, 576, tiny_bundle.model.config.text_config.hidden_size)
    assert_close(ours[0], theirs[0])


@torch.inference_mode()
def test_logits_match_transformers(tiny_bundle, reference, make_image):
    ids, pixels = _inputs(tiny_bundle, [make_image(200, 320, 2)], "How many circles are there?")
    assert int((ids == tiny_bundle.image_token_id).sum()) == 576
    ours = tiny_bundle.model(inputs_embeds=embed_inputs(tiny_bundle.model, ids, pixels)).logits
    theirs = reference(input_ids=ids, pixel_values=pixels).logits
    assert_close(ours, theirs)


@torch.inference_mode()
def test_text_only_prompt_needs_no_image(tiny_bundle, reference):
    ids = torch.tensor([tiny_bundle.tokenizer("USER: hello ASSISTANT:").input_ids])
    ours = tiny_bundle.model(inputs_embeds=embed_inputs(tiny_bundle.model, ids)).logits
    assert_close(ours, reference(input_ids=ids).logits)


def test_placeholders_without_image_fail(tiny_bundle):
    ids = torch.tensor([[1] + [tiny_bundle.image_token_id] * 576])
    with pytest.raises(ValueError, match="no image"):
        embed_inputs(tiny_bundle.model, ids)


def test_paper_presets_have_paper_shapes():
    from llava_model.presets import llava_v15_7b

    cfg = llava_v15_7b()
    assert cfg.image_seq_length == 576 and cfg.vision_feature_layer == -2
    assert cfg.vision_feature_select_strategy == "default" and cfg.projector_hidden_act == "gelu"
    text, vision = cfg.text_config, cfg.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (4096, 32, 32000)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size) == (1024, 24, 336)
    assert llava_config(get_preset("llava-v1.5-13b")).text_config.hidden_size == 5120
    assert image_seq_length(PRESETS["llava-v1.5-7b-224"].vision) == 256


def test_projector_parameter_counts_match_paper():
    # Reference: protocol section 1.1, mlp2x_gelu projector 20,979,712 (7B) and 31,467,520 (13B) params.
    def mlp(h):
        return 1024 * h + h + h * h + h

    assert mlp(get_preset("llava-v1.5-7b").text["hidden_size"]) == 20_979_712
    assert mlp(get_preset("llava-v1.5-13b").text["hidden_size"]) == 31_467_520


def test_linear_projector_preset_builds_single_linear():
    from llava_model.model import build_llava

    preset = get_preset("llava-v1.5-7b-linear")
    small = type(preset)("x", "", PRESETS["tiny"].text, PRESETS["tiny"].vision, projector="linear")
    model = build_llava(llava_config(small, vocab_size=64))
    names = [n for n, _ in model.model.multi_modal_projector.named_parameters()]
    assert names == ["linear_1.weight", "linear_1.bias"]
    feats = image_features(model, torch.zeros(1, 3, 336, 336))
    assert feats.shape == (1, 576, 128)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(UserError, match="valid presets: .*llava-v1.5-7b.*tiny"):
        get_preset("llava-v9")
