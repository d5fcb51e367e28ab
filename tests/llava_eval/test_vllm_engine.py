"""`--model vllm:DIR`: without vLLM it is one error line; with vLLM (a stand-in module here, checked against
the offline API vLLM documents) the engine gets the checkpoint with no remote code and the tensor-parallel size,
and every request the paper's prompt (rendered here), the image preprocessed to the model's input size, greedy
decoding and the task's token cap; the answers are stripped and the run records the backend."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from llava_eval.backends.exact_inputs import prepare_image
from llava_eval.cli import main
from llava_eval.data import load_docs, resolve_image
from llava_model.conversation import VICUNA_V1, render
from llava_model.preprocess import load_image
from tasks.registry import get_task

TINY_SHAPES = Path(__file__).resolve().parents[2] / "llava_model" / "assets" / "tiny-shapes"


def run(out: Path, *extra):
    return CliRunner().invoke(main, ["run", "--model", f"vllm:{TINY_SHAPES}", "--tasks", "pope,scienceqa_img",
                                     "--limit", "3", "--out", str(out), "--no-progress", *extra])


def test_without_vllm_it_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    result = run(tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        "error: --model vllm:DIR needs vLLM, which is not installed here: install the extra on a GPU machine (pip "
        "install '.[vllm]'), or serve the model and use --model served:NAME")
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in `vllm` module: LLM(**engine args).generate(prompts, sampling params) -> outputs[i].outputs[0].text."""
    calls = {"engines": [], "prompts": [], "params": []}

    class SamplingParams:
        def __init__(self, temperature=1.0, max_tokens=16):
            self.temperature, self.max_tokens = temperature, max_tokens

    class LLM:
        def __init__(self, **kwargs):
            calls["engines"].append(kwargs)

        def generate(self, prompts, params, use_tqdm=True):
            assert len(prompts) == len(params)
            calls["prompts"] += prompts
            calls["params"] += params
            text = lambda p: f"  answer {len(p['prompt'])}\n"  # noqa: E731
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text(p))]) for p in prompts]

    module = types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams, __version__="0.0-test")
    monkeypatch.setitem(sys.modules, "vllm", module)
    return calls


def test_the_engine_gets_the_protocols_exact_inputs(tmp_path, fake_vllm):
    result = run(tmp_path / "run", "--tensor-parallel", "2")
    assert result.exit_code == 0, result.output
    [engine] = fake_vllm["engines"]
    assert engine["model"] == str(TINY_SHAPES) and engine["tensor_parallel_size"] == 2
    assert engine["trust_remote_code"] is False and "data_parallel_size" not in engine
    expected = []
    for name in ("pope", "scienceqa_img"):
        task = get_task(name)
        docs = load_docs(task, "synthetic", limit=3)
        for i in range(len(docs)):
            images = [load_image(resolve_image(v, None)) for v in task.image_values(docs[i])]
            request = task.request(docs[i], i, tuple(images))
            image = prepare_image(images[0], task.image_mode or "pad", 112)  # tiny-shapes' input size
            expected.append((render(VICUNA_V1, request.messages, True), image.tobytes(), task.max_new_tokens))
    got = [(p["prompt"], p["multi_modal_data"]["image"].tobytes(), s.max_tokens)
           for p, s in zip(fake_vllm["prompts"], fake_vllm["params"], strict=True)]
    assert sorted(got) == sorted(expected)
    assert {s.temperature for s in fake_vllm["params"]} == {0.0}
    rows = [json.loads(x) for x in (tmp_path / "run" / "pope" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["text"].startswith("answer ") and r["text"] == r["text"].strip() for r in rows)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backend"] == "vllm" and config["tensor_parallel"] == 2 and config["vllm"] == "0.0-test"
    assert config["model"] == f"vllm:{TINY_SHAPES}"


def test_the_fingerprint_follows_the_weights(tmp_path, fake_vllm):
    from llava_model.fingerprint import checkpoint_files_fingerprint as weights_fingerprint

    copy = tmp_path / "ckpt"
    copy.mkdir()
    for f in TINY_SHAPES.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    before = weights_fingerprint(copy)
    assert before == weights_fingerprint(TINY_SHAPES)
    original = (copy / "model.safetensors").read_bytes()
    data = bytearray(original)
    data[-1] ^= 0xFF  # one byte of the last tensor
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert weights_fingerprint(copy) != before
    data = bytearray(original)
    start = 8 + int.from_bytes(original[:8], "little")
    for i in range(start, len(data), 997):  # "retrained": values changed all over
        data[i] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert weights_fingerprint(copy) not in (before, weights_fingerprint(TINY_SHAPES))
