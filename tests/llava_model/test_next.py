"""LLaVA-NeXT checkpoints: a llava-hf directory (saved by transformers) and an original liuhaotian/llava-v1.6
directory written from the same weights load to the same logits; each gets the template its release was
evaluated with; the LLaVA-1.5-HD presets have the paper's shapes; bad configs are one CheckpointError.
Reference: transformers `convert_llava_next_weights_to_hf.py`; haotian-liu/LLaVA `llava/model/builder.py`,
`llava/eval/run_llava.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from llava_model.checkpoint import load_bundle
from llava_model.errors import CheckpointError
from llava_model.generation import encode
from llava_model.model import embed_inputs
from llava_model.next import load_next_bundle, next_template
from llava_model.tiny_tokenizer import tiny_tokenizer
from llava_types import Message, Request
from tests.next_models import next_config, next_model, save_llava_hf, write_original


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tiny_tokenizer().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tok_dir):
    """One tiny model written both ways: llava-hf and original 1.6 (image token outside the vocabulary, as in the
    original's 32000-row Vicuna)."""
    tmp = tmp_path_factory.mktemp("next")
    tok = tiny_tokenizer()
    model = next_model(next_config(vocab_size=len(tok), image_token_id=None), seed=5)
    original = write_original(model, tok_dir, tmp / "orig")
    hf = save_llava_hf(model, tok, tmp / "hf")
    return hf, original


@torch.inference_mode()
def logits(bundle, image):
    request = Request("q", (Message("user", "<image>\nIs there a circle?"),), (image,))
    ids, pixels = encode(bundle, request)
    features = bundle.vision.features(bundle.model, pixels)
    return bundle.model(inputs_embeds=embed_inputs(bundle.model, torch.tensor([ids]), features=features)).logits


@pytest.mark.parametrize("size", [(320, 200), (150, 400)])
def test_original_checkpoint_converts_to_the_llava_hf_logits(pair, make_image, size):
    hf, original = [load_next_bundle(str(p), device="cpu", dtype="float32") for p in pair]
    assert original.template.name == hf.template.name == "vicuna_v1" and original.image_mode == "anyres"
    assert original.vision.describe() == hf.vision.describe()
    image = make_image(*size, 3)
    assert_close(logits(original, image), logits(hf, image))
    assert type(hf.image_processor).__name__ == "LlavaNextImageProcessorPil"


def test_image_newline_is_converted(pair):
    hf, original = [load_next_bundle(str(p), device="cpu", dtype="float32") for p in pair]
    assert_close(original.model.model.image_newline, hf.model.model.image_newline)


def test_mistral_original_gets_mistral_instruct(tok_dir, tmp_path):
    tok = tiny_tokenizer()
    model = next_model(next_config(vocab_size=len(tok), image_token_id=None, mistral=True), seed=2)
    bundle = load_next_bundle(str(write_original(model, tok_dir, tmp_path / "m", mistral=True)), device="cpu")
    assert bundle.template.name == "mistral_instruct" and bundle.model.config.text_config.model_type == "mistral"
    hf = load_next_bundle(str(save_llava_hf(model, tok, tmp_path / "m-hf")), device="cpu")
    assert hf.template.name == "mistral_instruct"


def test_a_chatml_tokenizer_gets_chatml_direct(tmp_path):
    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    model = next_model(next_config(vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>")))
    bundle = load_next_bundle(str(save_llava_hf(model, tok, tmp_path / "yi")), device="cpu")
    assert bundle.template.name == "chatml_direct"


def test_a_template_override_and_a_recorded_template_win(pair, tmp_path):
    hf, _ = pair
    assert load_next_bundle(str(hf), device="cpu", template="llava_v1").template.name == "llava_v1"
    recorded = copy_with(hf, tmp_path / "recorded")
    (recorded / "llava_eval.json").write_text(json.dumps({"template": "mistral_instruct", "image_mode": "anyres"}))
    assert load_next_bundle(str(recorded), device="cpu").template.name == "mistral_instruct"


def test_an_unknown_llm_needs_a_template(tok_dir):
    with pytest.raises(CheckpointError, match="cannot tell which conversation template a 'qwen2' LLaVA-NeXT was "
                                              "evaluated with; pass --template NAME"):
        next_template(tok_dir, {}, "qwen2", tiny_tokenizer())


def copy_with(src: Path, dst: Path, **changes) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    config = json.loads((src / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return dst


@pytest.mark.parametrize("changes,fragment", [
    (dict(mm_patch_merge_type="spatial"), "unsupported mm_patch_merge_type 'spatial' (supported: spatial_unpad"),
    (dict(mm_patch_merge_type="flat"), "unsupported mm_patch_merge_type 'flat'"),
    (dict(image_aspect_ratio="anyres_max_9"), "unsupported image_aspect_ratio 'anyres_max_9'"),
    (dict(image_grid_pinpoints=[[28, 50]]), "multiples of the 28 px tile"),
    (dict(image_grid_pinpoints="[[28, 56], ["), "is not a list"),
    (dict(mm_projector_type="linear"), "unsupported mm_projector_type 'linear'"),
    (dict(mm_vision_select_feature="cls_patch"), "mm_vision_select_feature must be 'patch'"),
    (dict(llava_template="llama_3"), "unknown llava_template 'llama_3'"),
])
def test_bad_original_configs_are_one_error(pair, tmp_path, changes, fragment):
    bad = copy_with(pair[1], tmp_path / "bad", **changes)
    with pytest.raises(CheckpointError) as error:
        load_next_bundle(str(bad), device="cpu")
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_llava_hf_directory_recording_another_image_mode_is_refused(pair, tmp_path):
    bad = copy_with(pair[0], tmp_path / "bad", image_aspect_ratio="pad")
    with pytest.raises(CheckpointError, match="image_aspect_ratio 'pad'; a LLaVA-NeXT checkpoint's images go through"):
        load_next_bundle(str(bad), device="cpu")


def test_the_llava_loader_points_a_next_checkpoint_to_its_backend(pair):
    for path in pair:
        with pytest.raises(CheckpointError, match="is a LLaVA-NeXT checkpoint .*--model llava-next:"):
            load_bundle(str(path), device="cpu")


# ---- presets ----------------------------------------------------------------------------------------------
def test_the_hd_preset_has_the_papers_shapes():
    from llava_model.anyres import AnyresImages
    from llava_model.presets import llava_v15_13b_hd

    cfg = llava_v15_13b_hd()
    assert cfg.vision_config.image_size == 224 and cfg.image_seq_length == 256  # CLIP-ViT-L/14-224 tiles
    assert cfg.text_config.hidden_size == 5120 and cfg.text_config.num_hidden_layers == 40  # Vicuna-13B
    grids = {tuple(g) for g in cfg.image_grid_pinpoints}
    assert (448, 448) in grids and (672, 448) in grids and (448, 672) in grids  # 448 px; up to 6 tiles, 672x448
    assert max(w * h for w, h in grids) == 672 * 448
    vision = AnyresImages(cfg.image_grid_pinpoints, 224, 14)
    assert vision.grid((900, 600)) == (3, 2) and vision.grid((500, 500)) == (2, 2) and vision.grid((100, 80)) == (1, 1)


def test_tiny_hd_loads_by_name_with_its_anyres_inputs(make_image):
    bundle = load_next_bundle("tiny-hd", device="cpu")
    assert bundle.source == "preset:tiny-hd" and bundle.template.name == "vicuna_v1"
    request = Request("q", (Message("user", "<image>\nQ?"),), (make_image(300, 200, 1),))
    ids, pixels = encode(bundle, request)
    assert pixels["pixel_values"].shape == (1 + 6, 3, 112, 112)  # 336x224: 3 x 2 tiles + the whole image
    assert ids.count(bundle.image_token_id) == bundle.vision.token_count((300, 200)) == 64 + 16 * 25
