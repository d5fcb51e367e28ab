"""Secrets are masked in recorded command lines and error lines; names, paths and numbers are kept."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from llava_eval.cli import main
from llava_eval.redact import MASK, looks_secret, redact_argv, redact_text


@pytest.mark.parametrize("item", [
    "sk-proj-abcdefghijklmnop0123", "hf_abcdefghijklmnopqrstu", "ghp_abcdefghijklmnopqrstuvwxyz",
    "0123456789abcdef0123456789abcdef", "AIzaSyD1234567890abcdefghijklmnopqrstuv",
    "https://alice:pw@judge.example/v1", "https://judge.example/v1?token=abc", "Bearer abc.def",
])
def test_secret_items_are_masked(item):
    assert looks_secret(item) and MASK in redact_text(item)


@pytest.mark.parametrize("item", [
    "OPENAI_API_KEY", "llava_v15_7b_finetune_lora_merged_final_2024", "runs/task-abcdefghijklmnopqrstuvw",
    "/root/.cache/huggingface/hub/models--liuhaotian--llava-v1.5-7b/snapshots/4481d270cc22fd5c4d1bb5df129622006ccd9234",
    "https://judge.example/v1", "hub:lmms-lab/POPE@main", "model-00001-of-00002.safetensors", "--max-new-tokens",
])
def test_names_paths_and_plain_urls_are_kept(item):
    assert redact_text(item) == item


def test_values_of_secret_options_are_masked_but_variable_names_kept():
    argv = ["llava-eval", "judge", "--api-key", "abc", "--token=xyz", "--api-key-env", "MY_KEY", "--max-new-tokens",
            "5", "--password", "hunter2"]
    assert redact_argv(argv) == ["llava-eval", "judge", "--api-key", MASK, f"--token={MASK}", "--api-key-env",
                                 "MY_KEY", "--max-new-tokens", "5", "--password", MASK]


def test_error_lines_do_not_show_url_credentials():
    result = CliRunner().invoke(main, ["generate", "--model", "https://alice:hunter2secret@h/m", "--prompt", "hi"])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert "hunter2secret" not in result.output and "https://***@h/m" in result.stderr
