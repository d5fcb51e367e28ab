"""Checkpoint formats: an original-LLaVA checkpoint written by the test (the `LlavaLlamaForCausalLM`
layout: `model.layers.*`, `model.mm_projector.0/2.*`, untied `lm_head`, CLIP tower in its own folder)
loads, converts and reloads with the logits of the model it was written from; llava-hf style directories
round-trip; wrong or partial checkpoints fail with the keys named.
Reference: transformers `convert_llava_weights_to_hf.py`; haotian-liu/LLaVA `llava/model/builder.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from llava_model.checkpoint import load_bundle, save_bundle
from llava_model.conversation import eval_messages, render
from llava_model.errors import CheckpointError
from llava_model.model import build_llava, embed_inputs
from llava_model.preprocess import preprocess
from llava_model.presets import get_preset, llava_config
from llava_model.tiny_tokenizer import _corpus, llama_tokenizer_from_spm, train_sentencepiece
from llava_model.tokenization import tokenize_prompt


def to_original_key(key: str) -> str | None:
    """Our (transformers 5) key -> the original LLaVA key; None for vision weights (kept apart)."""
    if key.startswith("model.vision_tower."):
        return None
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model."):]
    if key.startswith("model.multi_modal_projector.linear_1."):
        return "model.mm_projector.0." + key.rsplit(".", 1)[1]
    if key.startswith("model.multi_modal_projector.linear_2."):
        return "model.mm_projector.2." + key.rsplit(".", 1)[1]
    assert key == "lm_head.weight", key
    return key


def write_original(model, tokenizer_dir: Path, out: Path, fmt: str = "bin", image_aspect_ratio: str = "pad") -> Path:
    """Write `model` as an original LLaVA-1.5 checkpoint plus a separate CLIP vision tower folder."""
    from transformers import CLIPVisionModel

    out.mkdir(parents=True)
    tower_dir = out.parent / (out.name + "-clip")
    tower = CLIPVisionModel(model.config.vision_config)
    tower.load_state_dict(model.model.vision_tower.state_dict())
    # Written as the OpenAI CLIP repos hold it: a full-CLIP key layout with the `vision_model.` prefix.
    tower_dir.mkdir()
    save_file({"vision_model." + k: v.clone() for k, v in tower.state_dict().items()},
              str(tower_dir / "model.safetensors"))
    tower.config.save_pretrained(str(tower_dir))
    text = model.config.text_config
    config = {
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava", "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size, "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads, "num_key_value_heads": text.num_key_value_heads,
        "max_position_embeddings": text.max_position_embeddings, "rms_norm_eps": text.rms_norm_eps,
        "vocab_size": text.vocab_size, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "float16",
        "mm_vision_tower": str(tower_dir), "mm_hidden_size": model.config.vision_config.hidden_size,
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "image_aspect_ratio": image_aspect_ratio,
        "use_mm_proj": True, "tune_mm_mlp_adapter": False, "tokenizer_model_max_length": 2048,
    }
    (out / "config.json").write_text(json.dumps(config))
    state = {}
    for key, value in model.state_dict().items():
        new = to_original_key(key)
        if new is not None:
            state[new] = value.clone()
    # transformers-4.31-era checkpoints carry rotary buffers; the converter drops them.
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    if fmt == "bin":
        half = len(state) // 2
        keys = sorted(state)
        torch.save({k: state[k] for k in keys[:half]}, out / "pytorch_model-00001-of-00002.bin")
        torch.save({k: state[k] for k in keys[half:]}, out / "pytorch_model-00002-of-00002.bin")
    else:
        save_file(state, str(out / "model.safetensors"))
    for f in tokenizer_dir.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A tiny model whose vocabulary (768) has no image token, as in the original 32000-row Vicuna."""
    tmp = tmp_path_factory.mktemp("orig")
    spm_file = train_sentencepiece(tmp / "sp", _corpus())
    tok_dir = tmp / "tok"
    tokenizer = llama_tokenizer_from_spm(spm_file, tok_dir)
    cfg = llava_config(get_preset("tiny"), vocab_size=len(tokenizer))
    assert cfg.image_token_id == len(tokenizer)  # outside the vocabulary
    model = build_llava(cfg, seed=3)
    return model, tokenizer, tok_dir, tmp


@torch.inference_mode()
def logits_for(model, tokenizer, processor, image, mode="pad"):
    prompt = render(__import__("llava_model.conversation").conversation.VICUNA_V1,
                    eval_messages("Is there a circle?", True), add_generation_prompt=True)
    ids = torch.tensor([tokenize_prompt(prompt, tokenizer, model.config.image_token_id,
                                        model.config.image_seq_length)])
    pixels = preprocess([image], processor, mode)
    return model(inputs_embeds=embed_inputs(model, ids, pixels)).logits


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_original_checkpoint_converts_with_same_logits(original, make_image, fmt):
    model, tokenizer, tok_dir, tmp = original
    src = write_original(model, tok_dir, tmp / f"llava-orig-{fmt}", fmt)
    bundle = load_bundle(str(src), device="cpu", dtype="float32")
    assert bundle.template.name == "vicuna_v1" and bundle.image_mode == "pad"
    assert bundle.model.config.text_config.vocab_size == len(tokenizer)  # no rows added
    image = make_image(320, 200, 4)
    expected = logits_for(model, tokenizer, bundle.image_processor, image)
    assert_close(logits_for(bundle.model, bundle.tokenizer, bundle.image_processor, image), expected)


def test_convert_command_writes_reloadable_directory(original, make_image, tmp_path):
    from click.testing import CliRunner

    from llava_eval.cli import main

    model, tokenizer, tok_dir, tmp = original
    src = write_original(model, tok_dir, tmp_path / "src", "safetensors", image_aspect_ratio="square")
    dst = tmp_path / "dst"
    result = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(str(dst), device="cpu", dtype="float32")
    assert bundle.image_mode == "crop"  # "square" in an original config means plain resize + crop
    image = make_image(250, 250, 5)
    expected = logits_for(model, tokenizer, bundle.image_processor, image, "crop")
    assert_close(logits_for(bundle.model, bundle.tokenizer, bundle.image_processor, image, "crop"), expected)


def test_partial_original_checkpoint_names_missing_keys(original, tmp_path):
    model, _, tok_dir, _ = original
    src = write_original(model, tok_dir, tmp_path / "partial", "safetensors")
    state = load_file(str(src / "model.safetensors"))
    del state["model.mm_projector.2.weight"]
    state["model.extra_head.weight"] = torch.zeros(2)
    save_file(state, str(src / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_bundle(str(src), device="cpu")
    message = str(err.value)
    assert "model.multi_modal_projector.linear_2.weight" in message and "model.extra_head.weight" in message
    assert "\n" not in message


def test_missing_vision_tower_is_reported(original, tmp_path):
    model, _, tok_dir, _ = original
    src = write_original(model, tok_dir, tmp_path / "notower", "safetensors")
    with pytest.raises(CheckpointError, match="vision tower"):
        load_bundle(str(src), device="cpu", vision_tower=str(tmp_path / "no-such-clip"))


def test_hf_directory_round_trip(tiny_bundle, make_image, tmp_path):
    out = save_bundle(tiny_bundle, tmp_path / "tiny-hf")
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tiny_bundle.tokenizer.eos_token_id and generation.get("do_sample") is not True
    again = load_bundle(str(out), device="cpu", dtype="float32")
    assert again.template == tiny_bundle.template and again.image_mode == tiny_bundle.image_mode
    image = make_image(200, 300, 6)
    assert_close(logits_for(again.model, again.tokenizer, again.image_processor, image),
                 logits_for(tiny_bundle.model, tiny_bundle.tokenizer, tiny_bundle.image_processor, image))


def test_linear_projector_hf_directory_round_trip(make_image, tmp_path):
    """transformers 5 saves the llava-hf key layout; a linear-projector checkpoint reloads from it too."""
    from dataclasses import replace

    from llava_model.checkpoint import LlavaBundle
    from llava_model.conversation import VICUNA_V1
    from llava_model.preprocess import clip_image_processor
    from llava_model.tiny_tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = llava_config(replace(get_preset("tiny"), projector="linear"), vocab_size=len(tok),
                       image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    bundle = LlavaBundle(build_llava(cfg, seed=5), tok, clip_image_processor(336), VICUNA_V1, "pad", "test")
    again = load_bundle(str(save_bundle(bundle, tmp_path / "linear")), device="cpu", dtype="float32")
    assert sorted(again.model.state_dict()) == sorted(bundle.model.state_dict())
    image = make_image(200, 300, 7)
    assert_close(logits_for(again.model, again.tokenizer, again.image_processor, image),
                 logits_for(bundle.model, bundle.tokenizer, bundle.image_processor, image))


def test_partial_hf_checkpoint_fails_with_key_names(tiny_bundle, tmp_path):
    out = save_bundle(tiny_bundle, tmp_path / "tiny-partial")
    weights = next(out.glob("*.safetensors"))
    state = load_file(str(weights))
    missing = next(k for k in state if "multi_modal_projector" in k)
    del state[missing]
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="multi_modal_projector"):
        load_bundle(str(out), device="cpu")


def test_missing_checkpoint_files(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_bundle(str(tmp_path), device="cpu")
    config = {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_bundle(str(tmp_path), device="cpu")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_bundle(str(tmp_path / "nothing-here"), device="cpu")
