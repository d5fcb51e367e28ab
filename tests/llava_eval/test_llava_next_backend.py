"""The llava-next backend: LLaVA-NeXT directories and presets resolve to it; on synthetic POPE and MME rows its
answers equal transformers' own `LlavaNextForConditionalGeneration.generate` with `LlavaNextProcessor` (the PIL
image processor) at batch size 1, and are the same at batch size 8 and with prefix sharing (CPU, float32);
`llava-eval run` evaluates a checkpoint directory and records the backend, template and grids; bad input is
one error line."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from llava_eval.backends.entry import BackendOptions
from llava_eval.backends.registry import open_backend, resolve
from llava_eval.cli import main
from llava_eval.data import load_docs
from llava_eval.runner import build_requests
from llava_model.tiny_tokenizer import tiny_tokenizer
from llava_types import GenerationSettings
from tasks.registry import get_task
from tests.cli_checks import one_line_error
from tests.next_models import next_config, next_model, save_llava_hf, write_original


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    tok = tiny_tokenizer()
    model = next_model(next_config(vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>")), seed=7)
    return save_llava_hf(model, tok, tmp_path_factory.mktemp("next") / "llava-v1.6-tiny-hf")


@pytest.fixture(scope="module")
def requests_():
    """Four synthetic rows each of POPE and MME, with 24 new tokens instead of the tasks' 128 (a random model
    never stops; 24 tokens are enough to tell answers apart)."""
    out = []
    for name in ("pope", "mme"):
        task = get_task(name)
        docs = load_docs(task, "synthetic", limit=4)
        requests, errors = build_requests(task, docs, range(len(docs)), None)
        assert not errors
        out += [dataclasses.replace(r, settings=GenerationSettings(max_new_tokens=24)) for r in requests]
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


def backend(directory, **options):
    return open_backend(str(directory), BackendOptions(device="cpu", dtype="float32", **options))


def test_answers_equal_transformers_at_batch_size_1_and_8_and_with_prefix_sharing(hf_dir, requests_):
    from llava_model.generation import encode

    one = backend(hf_dir, batch_size=1, engine="reference")
    expected = transformers_answers(hf_dir, requests_, [encode(one.bundle, r)[0] for r in requests_])
    assert len(set(expected)) > 1  # the answers depend on the inputs
    assert one.generate(requests_) == expected
    assert backend(hf_dir, batch_size=8, engine="reference").generate(requests_) == expected
    fast = backend(hf_dir, batch_size=8, engine="fast")
    assert fast.generate(requests_) == expected
    assert fast.engine.stats["prefills"] > 0  # POPE's questions share their image's prefix


def test_directories_and_presets_resolve_to_the_llava_next_backend(hf_dir, tmp_path):
    assert resolve(str(hf_dir)) == ("llava-next", str(hf_dir))
    assert resolve("tiny-hd") == ("llava-next", "tiny-hd")
    assert resolve("llava-next:tiny-next") == ("llava-next", "tiny-next")
    original = tmp_path / "orig"
    original.mkdir()
    (original / "config.json").write_text(json.dumps({"architectures": ["LlavaLlamaForCausalLM"],
                                                      "mm_vision_tower": "clip", "image_aspect_ratio": "anyres",
                                                      "mm_patch_merge_type": "spatial_unpad"}))
    assert resolve(str(original)) == ("llava-next", str(original))
    (original / "config.json").write_text(json.dumps({"architectures": ["LlavaLlamaForCausalLM"],
                                                      "mm_vision_tower": "clip", "image_aspect_ratio": "pad"}))
    assert resolve(str(original)) == ("llava", str(original))


def test_a_run_evaluates_the_directory_and_records_backend_template_and_grids(hf_dir, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--model", str(hf_dir), "--tasks", "pope,mme", "--limit", "4", "--out",
                                       str(out), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == "llava-next" and config["template"] == "vicuna_v1"
    assert config["grid_pinpoints"] == [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]
    assert config["image_processor"] == "LlavaNextImageProcessorPil" and config["strategy"] == "prefix-sharing"
    for task in ("pope", "mme"):
        rows = (out / task / "predictions.jsonl").read_text().splitlines()
        assert len(rows) == 4 and {json.loads(r)["model_id"] for r in rows} == {str(hf_dir)}


def test_the_fingerprint_covers_the_grids_and_the_template(hf_dir, tmp_path):
    base = backend(hf_dir)
    other = backend(hf_dir, template="mistral_instruct")
    assert base.fingerprint() != other.fingerprint()
    base.bundle.vision.grids = [[56, 56]]
    assert base.fingerprint() != backend(hf_dir).fingerprint()


def test_an_unknown_patch_merge_is_one_error_line(hf_dir, tmp_path):
    tok_dir = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(str(tok_dir))
    tok = tiny_tokenizer()
    model = next_model(next_config(vocab_size=len(tok), image_token_id=None))
    src = write_original(model, tok_dir, tmp_path / "orig", mm_patch_merge_type="spatial_unpad_max")
    result = CliRunner().invoke(main, ["run", "--model", str(src), "--tasks", "pope", "--limit", "4", "--out",
                                       str(tmp_path / "run"), "--no-progress"])
    one_line_error(result, "unsupported mm_patch_merge_type 'spatial_unpad_max'", "spatial_unpad")


@pytest.mark.parametrize("args,fragment", [
    (["--image-mode", "pad"], "--image-mode pad is LLaVA-1.5's"),
    (["--template", "llama_3"], "unknown conversation template 'llama_3'"),
])
def test_bad_options_are_one_error_line(hf_dir, tmp_path, args, fragment):
    result = CliRunner().invoke(main, ["run", "--model", str(hf_dir), "--tasks", "pope", "--limit", "4", "--out",
                                       str(tmp_path / "run"), "--no-progress", *args])
    one_line_error(result, fragment)
