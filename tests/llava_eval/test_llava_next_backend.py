"""The llava-next backend: LLaVA-NeXT directories and presets resolve to it; on synthetic POPE and MME rows its
answers equal transformers' own `LlavaNextForConditionalGeneration.generate` with `LlavaNextProcessor` (the PIL
image processor) at batch size 1, and are the same at batch size 8 and with prefix sharing (CPU, float32);
`llava-eval run` evaluates a checkpoint directory and records the backend, template and grids; bad input is
one error line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llava_eval.backends.entry import BackendOptions
from llava_eval.backends.registry import open_backend, resolve
from llava_eval.cli import main
from llava_model.tiny_tokenizer import tiny_tokenizer
from tests.cli_checks import one_line_error
from tests.next_models import (
    check_against_transformers,
    next_config,
    next_model,
    run_and_check,
    save_llava_hf,
    synthetic_requests,
    write_original,
)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    tok = tiny_tokenizer()
    model = next_model(next_config(vocab_size=len(tok), image_token_id=tok.convert_tokens_to_ids("<image>")), seed=7)
    return save_llava_hf(model, tok, tmp_path_factory.mktemp("next") / "llava-v1.6-tiny-hf")


@pytest.fixture(scope="module")
def hd_dir(tmp_path_factory):
    """The tiny-hd preset (random weights) saved as a checkpoint directory."""
    from llava_model.checkpoint import save_bundle
    from llava_model.next import load_next_bundle

    return save_bundle(load_next_bundle("tiny-hd", device="cpu", seed=3), tmp_path_factory.mktemp("hd") / "tiny-hd")


@pytest.fixture(scope="module")
def requests_():
    return synthetic_requests()


def backend(directory, **options):
    return open_backend(str(directory), BackendOptions(device="cpu", dtype="float32", **options))


def test_answers_equal_transformers_at_batch_size_1_and_8_and_with_prefix_sharing(hf_dir, requests_):
    check_against_transformers(hf_dir, requests_)


def test_the_hd_preset_answers_as_transformers_does(hd_dir, requests_):
    assert resolve(str(hd_dir))[0] == "llava-next"
    check_against_transformers(hd_dir, requests_)


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


def test_a_run_evaluates_the_llava_hf_directory(hf_dir, tmp_path):
    run_and_check(hf_dir, tmp_path / "run", [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]])


def test_a_run_evaluates_the_hd_preset_directory(hd_dir, tmp_path):
    from llava_model.presets import NEXT_PRESETS

    run_and_check(hd_dir, tmp_path / "run", [list(g) for g in NEXT_PRESETS["tiny-hd"].grid_pinpoints])


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
