"""Tiny LLaVA-NeXT models for the tests, built from configs (no download): the config, a llava-hf style
directory (`LlavaNextForConditionalGeneration` + tokenizer + `LlavaNextImageProcessorPil`, saved by
transformers) and an original `liuhaotian/llava-v1.6-*` style directory written from the same weights.
Tiles are 28 px (2 x 2 features each) over the five 1.6 grids scaled to that tile, so an image costs
a few dozen positions. Also the checks every LLaVA-NeXT family test runs: the answers against transformers'
own generate, and `llava-eval run` on a directory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

TILE = 28
# liuhaotian/llava-v1.6-* image_grid_pinpoints ([width, height] of 336 px tiles), scaled to 28 px tiles.
GRIDS = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            max_position_embeddings=2048, rms_norm_eps=1e-5, initializer_range=0.2)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=14,
              image_size=TILE, projection_dim=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def next_config(vocab_size: int, image_token_id: int | None, grids=GRIDS, mistral: bool = False, template="vicuna_v1"):
    from transformers import CLIPVisionConfig, LlamaConfig, MistralConfig

    from llava_model.config import build_next_config

    text_class = MistralConfig if mistral else LlamaConfig
    text = text_class(**TEXT, vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                      tie_word_embeddings=False)
    return build_next_config(text, CLIPVisionConfig(**VISION), grid_pinpoints=grids, template=template,
                             image_token_id=image_token_id)


def next_model(config, seed: int = 0):
    from llava_model.next import build_llava_next

    return build_llava_next(config, seed=seed)


def image_processor(grids=GRIDS):
    from llava_model.anyres import anyres_image_processor

    return anyres_image_processor(TILE, grids)


def save_llava_hf(model, tokenizer, out: Path, grids=GRIDS) -> Path:
    """A llava-hf style directory: what transformers saves, without our own config fields (so the loader
    infers the template, as for llava-hf/llava-v1.6-* checkpoints)."""
    for field in ("llava_template", "llava_projector", "image_aspect_ratio"):
        if hasattr(model.config, field):
            delattr(model.config, field)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    image_processor(grids).save_pretrained(str(out))
    return out


ORIGINAL_PREFIXES = (
    ("model.language_model.", "model."),
    ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
    ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
)


def original_key(key: str) -> str:
    """Our (transformers 5) key -> the liuhaotian/llava-v1.6 key."""
    for ours, theirs in ORIGINAL_PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    assert key in ("lm_head.weight", "model.image_newline"), key
    return key


def write_original(model, tokenizer_dir: Path, out: Path, mistral: bool = False, **mm) -> Path:
    """`model` as an original 1.6 checkpoint (tower weights inside, as the 1.6 releases train the tower), the
    tower's config in a folder of its own (as mm_vision_tower names the OpenAI CLIP repo)."""
    out.mkdir(parents=True)
    tower_dir = out.parent / (out.name + "-clip")
    tower_dir.mkdir()
    model.config.vision_config.save_pretrained(str(tower_dir))
    text = model.config.text_config
    config = {
        "architectures": ["LlavaMistralForCausalLM" if mistral else "LlavaLlamaForCausalLM"],
        "model_type": "llava_mistral" if mistral else "llava_llama", **{k: getattr(text, k) for k in TEXT},
        "vocab_size": text.vocab_size, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "tie_word_embeddings": False, "torch_dtype": "float16", "mm_vision_tower": str(tower_dir),
        "mm_hidden_size": model.config.vision_config.hidden_size, "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False, "mm_patch_merge_type": "spatial_unpad", "image_aspect_ratio": "anyres",
        "image_grid_pinpoints": model.config.image_grid_pinpoints, "use_mm_proj": True, "tune_mm_mlp_adapter": False,
    }
    config.update(mm)
    (out / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    state = {original_key(k): v.clone() for k, v in model.state_dict().items()}
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # dropped by the conversion
    save_file(state, str(out / "model.safetensors"))
    for f in tokenizer_dir.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


@torch.inference_mode()
def transformers_answers(directory, requests, prompt_ids) -> list[str]:
    """Each request alone through transformers' LLaVA-NeXT: its processor (PIL image processor + tokenizer) makes
    the pixels and image sizes and expands the image (to as many positions as ours: checked), its model generates
    greedily. The text ids are the original's (`tokenizer_image_token` tokenises around the image; the processor,
    tokenising the whole prompt, drops the dummy-prefix space after `<image>`), so both get the same prompt."""
    from transformers import LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil, LlavaNextProcessor

    from llava_model.checkpoint_files import load_tokenizer

    tok = load_tokenizer(directory)
    processor = LlavaNextProcessor(LlavaNextImageProcessorPil.from_pretrained(str(directory)), tok, patch_size=14,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1)
    model = LlavaNextForConditionalGeneration.from_pretrained(str(directory), dtype=torch.float32).eval()
    answers = []
    for request, ids in zip(requests, prompt_ids, strict=True):
        inputs = processor(images=list(request.images), text=request.messages[0].text, return_tensors="pt")
        image_id = model.config.image_token_id
        assert int((inputs["input_ids"] == image_id).sum()) == ids.count(image_id)
        inputs["input_ids"], inputs["attention_mask"] = torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)
        out = model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=request.settings.max_new_tokens,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        answers.append(tok.decode(out[0, len(ids):], skip_special_tokens=True).strip())
    return answers


def check_against_transformers(directory: Path, requests) -> None:
    """The llava-next backend's answers on `requests` equal transformers' at batch size 1, and are the same at batch
    size 8 and with prefix sharing (CPU, float32)."""
    from llava_eval.backends.entry import BackendOptions
    from llava_eval.backends.registry import open_backend
    from llava_model.generation import encode

    def backend(**options):
        return open_backend(str(directory), BackendOptions(device="cpu", dtype="float32", **options))

    one = backend(batch_size=1, engine="reference")
    expected = transformers_answers(directory, requests, [encode(one.bundle, r)[0] for r in requests])
    assert len(set(expected)) > 1  # the answers depend on the inputs
    assert one.generate(requests) == expected
    assert backend(batch_size=8, engine="reference").generate(requests) == expected
    fast = backend(batch_size=8, engine="fast")
    assert fast.generate(requests) == expected
    assert fast.engine.stats["prefills"] > 0  # POPE's questions share their image's prefix


def synthetic_requests(max_new_tokens: int = 24) -> list:
    """Four synthetic rows each of POPE and MME, with 24 new tokens instead of the tasks' 128 (a random model
    never stops; 24 tokens are enough to tell answers apart)."""
    from llava_eval.data import load_docs
    from llava_eval.runner import build_requests
    from llava_types import GenerationSettings
    from tasks.registry import get_task

    out = []
    for name in ("pope", "mme"):
        task = get_task(name)
        docs = load_docs(task, "synthetic", limit=4)
        requests, errors = build_requests(task, docs, range(len(docs)), None)
        assert not errors
        out += [dataclasses.replace(r, settings=GenerationSettings(max_new_tokens=max_new_tokens)) for r in requests]
    return out


def run_and_check(directory: Path, out: Path, grids: list) -> dict:
    """`llava-eval run --model DIR --tasks pope,mme --limit 4`: it succeeds and records the backend, the template
    and the grids; returns config.json."""
    from click.testing import CliRunner

    from llava_eval.cli import main

    result = CliRunner().invoke(main, ["run", "--model", str(directory), "--tasks", "pope,mme", "--limit", "4",
                                       "--out", str(out), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == "llava-next" and config["template"] == "vicuna_v1"
    assert config["grid_pinpoints"] == grids
    assert config["image_processor"] == "LlavaNextImageProcessorPil" and config["strategy"] == "prefix-sharing"
    for task in ("pope", "mme"):
        rows = (out / task / "predictions.jsonl").read_text().splitlines()
        assert len(rows) == 4 and {json.loads(r)["model_id"] for r in rows} == {str(directory)}
    return config
