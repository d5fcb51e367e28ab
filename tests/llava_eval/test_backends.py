"""The backend registry: every kind of `--model` value resolves to its backend (NAME:MODEL, a model name, a
checkpoint directory by its architecture), anything else is one error line that lists what is valid, and a
backend registered from outside (a toy that answers "yes") runs `llava-eval run` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llava_eval.backends.entry import BackendEntry, BackendOptions
from llava_eval.backends.registry import BACKENDS, open_backend, resolve
from llava_eval.cli import main
from llava_model.errors import CheckpointError
from llava_types import Backend, UserError
from tests.cli_checks import one_line_error

TINY_SHAPES = Path(__file__).resolve().parents[2] / "llava_model" / "assets" / "tiny-shapes"


def checkpoint(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# ---- resolution -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tiny-shapes", "tiny", "tiny-112", "llava-v1.5-7b"])
def test_model_names_resolve_to_the_llava_backend(model):
    assert resolve(model) == ("llava", model)


def test_a_scheme_picks_the_backend_by_name(tmp_path):
    assert resolve(f"llava:{TINY_SHAPES}") == ("llava", str(TINY_SHAPES))
    assert resolve("llava:tiny") == ("llava", "tiny")


@pytest.mark.parametrize("config", [
    {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]},  # llava-hf
    {"model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"], "mm_vision_tower": "clip"},  # original
    {"architectures": ["LlavaLlamaForCausalLM"]},
    {"mm_vision_tower": "openai/clip-vit-large-patch14-336"},
], ids=["llava-hf", "original", "original-architecture", "original-mm-fields"])
def test_a_directory_resolves_by_its_architecture(tmp_path, config):
    folder = checkpoint(tmp_path, config)
    assert resolve(str(folder)) == ("llava", str(folder))


def test_the_shipped_checkpoint_directory_resolves_by_its_architecture():
    assert resolve(str(TINY_SHAPES)) == ("llava", str(TINY_SHAPES))


@pytest.mark.parametrize("config,fragment", [
    ({"model_type": "bert"}, "model_type 'bert', architectures None"),
    ({"architectures": ["BertModel"]}, "architectures ['BertModel']"),
    ({}, "model_type None"),
    ({"model_type": ["x" * 500] * 50}, "model_type ['xxx"),  # hostile values are shown short
])
def test_an_unsupported_architecture_names_it_and_the_supported_ones(tmp_path, config, fragment):
    with pytest.raises(CheckpointError, match="unsupported model architecture") as error:
        resolve(str(checkpoint(tmp_path, config)))
    message = str(error.value)
    assert fragment in message and "supported: llava (model_type llava" in message
    assert "\n" not in message and len(message) < 600


def test_a_directory_with_its_own_code_is_refused_before_its_architecture_is_read(tmp_path):
    folder = checkpoint(tmp_path, {"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}})
    with pytest.raises(CheckpointError, match="ships its own code"):
        resolve(str(folder))


def test_an_unknown_name_lists_the_valid_names_and_backends():
    with pytest.raises(UserError, match="unknown model 'llava-v9'") as error:
        resolve("llava-v9")
    for name in ("tiny-shapes", "tiny", "llava-v1.5-7b", "tiny-hd", "BACKEND:MODEL",
                 "(llava, llava-next, transformers, served, vllm)"):
        assert name in str(error.value)


@pytest.mark.parametrize("model,fragment", [
    ("remote:gpt-4o",
     "unknown backend 'remote' in --model 'remote:gpt-4o'; registered backends: llava, llava-next, transformers, "
     "served, vllm"),
    ("llava:", "no model after the colon"),
    ("", "--model is empty"),
    ("runs/missing-checkpoint", "is not a checkpoint directory"),
])
def test_other_bad_values_are_one_error(model, fragment):
    with pytest.raises(UserError, match=fragment):
        resolve(model)


def test_an_unsupported_architecture_through_the_cli_is_one_line(tmp_path):
    folder = checkpoint(tmp_path, {"model_type": "bert"})
    result = CliRunner().invoke(main, ["run", "--model", str(folder), "--tasks", "pope", "--limit", "4", "--out",
                                       str(tmp_path / "run"), "--no-progress"])
    one_line_error(result, "unsupported model architecture", "'bert'", "supported: llava")
    assert not (tmp_path / "run" / "config.json").exists()


# ---- the LLaVA backend ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine,strategy,chunk", [("fast", "prefix-sharing", 32), ("reference", "sorted-batches", 4)])
def test_the_llava_backend_declares_what_a_run_records(engine, strategy, chunk):
    from llava_model.checkpoint import load_bundle
    from llava_model.fingerprint import device_record, model_fingerprint

    backend = open_backend("tiny-shapes", BackendOptions(device="cpu", batch_size=4, engine=engine))
    bundle = load_bundle("tiny-shapes", device="cpu")
    assert isinstance(backend, Backend)
    assert backend.source == bundle.source and backend.chunk_size == chunk
    assert backend.fingerprint() == model_fingerprint(bundle)
    assert backend.record() == device_record(bundle) | {"backend": "llava", "strategy": strategy,
                                                        "prompt_mode": "paper"}


def test_an_unknown_engine_is_refused_before_the_weights_load(monkeypatch):
    import llava_eval.backends.llava as llava

    monkeypatch.setattr(llava, "load_bundle", lambda *a, **k: pytest.fail("the weights were loaded"))
    with pytest.raises(UserError, match="unknown engine 'turbo'; valid: fast, reference"):
        open_backend("tiny", BackendOptions(engine="turbo"))


# ---- a backend registered from outside ---------------------------------------------------------------------
class Yes:
    """A toy backend: answers "yes" to everything, three requests at a time."""

    chunk_size = 3

    def __init__(self, model: str, options: BackendOptions):
        self.source, self.options, self.calls = f"toy:{model}", options, []

    def generate(self, requests):
        self.calls.append(len(requests))
        return ["yes"] * len(requests)

    def fingerprint(self) -> str:
        return "toy-fingerprint"

    def record(self) -> dict:
        return {"backend": "toy", "device": "none"}

    def prompt(self, request) -> str:
        return request.messages[-1].text


@pytest.fixture
def toy(monkeypatch):
    """The toy registered as `toy` for one test (monkeypatch unregisters it); the list holds what it opened."""
    opened = []

    def open_toy(model, options):
        opened.append(Yes(model, options))
        return opened[-1]

    monkeypatch.setitem(BACKENDS, "toy", BackendEntry(open=open_toy))
    return opened


def test_a_registered_backend_runs_end_to_end(toy, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--model", "toy:anything", "--tasks", "pope", "--limit", "4", "--out",
                                       str(out), "--no-progress", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    [backend] = toy
    assert backend.options.batch_size == 2 and backend.calls == [3, 1]  # the backend's chunk size, not the batch's
    rows = [json.loads(line) for line in (out / "pope" / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["yes"] * 4 and {r["model_id"] for r in rows} == {"toy:anything"}
    assert {r["fp"]["model"] for r in rows} == {"toy-fingerprint"}
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "toy:anything" and config["model_fingerprint"] == "toy-fingerprint"
    assert config["backend"] == "toy" and config["device"] == "none"
    assert json.loads((out / "pope" / "metrics.json").read_text())["metrics"]["n_docs"] == 4


def test_an_unregistered_backend_is_unknown_again():
    assert "toy" not in BACKENDS
    with pytest.raises(UserError, match="unknown backend 'toy'"):
        resolve("toy:anything")
