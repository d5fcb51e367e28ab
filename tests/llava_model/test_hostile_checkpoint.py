"""Hostile checkpoints: code a checkpoint ships never runs (an `auto_map` anywhere in its JSON configs is
refused, even when the user answers "yes" to transformers' prompt), and every corrupt file, unknown name
or unavailable device ends in one `error:` line with exit status 2, through the CLI as a user meets it.
The checkpoints are the `tiny` preset saved once per module, then damaged one way each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from llava_eval.cli import main
from llava_model.checkpoint import load_bundle, save_bundle
from llava_model.checkpoint_files import refuse_remote_code
from llava_model.errors import CheckpointError
from tests.cli_checks import one_line_error, one_line_stderr

ROOT = Path(__file__).resolve().parents[2]

# Imported by transformers only if it trusts the checkpoint's code; then it leaves a marker file behind.
EVIL_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("code from the checkpoint ran")
from transformers import CLIPImageProcessor, PreTrainedTokenizerFast
class EvilProcessor(CLIPImageProcessor):
    pass
class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


@pytest.fixture(scope="module")
def saved(tiny_bundle, tmp_path_factory):
    """The tiny preset as a llava-hf style checkpoint directory (about 3 MB)."""
    return save_bundle(tiny_bundle, tmp_path_factory.mktemp("ckpt") / "tiny")


def copy_of(saved: Path, tmp_path: Path, name: str = "ckpt") -> Path:
    out = tmp_path / name
    shutil.copytree(saved, out)
    return out


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def plant_code(ckpt: Path, marker: Path) -> None:
    (ckpt / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))


def cli(*args, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin)



def cli_subprocess(args, tmp_path: Path, stdin: str = "yes\n", **env):
    """`python -m llava_eval ARGS` with the project importable and transformers' module cache in tmp."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "HF_MODULES_CACHE": str(tmp_path / "hf-modules"), **env}
    return subprocess.run([sys.executable, "-m", "llava_eval", *args], input=stdin, capture_output=True, text=True,
                          env=environ, cwd=tmp_path, timeout=120)



# ---- no code from a checkpoint runs -------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_code(saved, tmp_path_factory):
    """The saved checkpoint plus `evil.py`, named by `auto_map` in its preprocessor config."""
    tmp = tmp_path_factory.mktemp("evil")
    ckpt = copy_of(saved, tmp)
    marker = tmp / "MARKER"
    plant_code(ckpt, marker)
    edit_json(ckpt / "preprocessor_config.json", auto_map={"AutoImageProcessor": "evil.EvilProcessor"})
    return ckpt, marker


def commands(ckpt: Path, out: Path) -> dict:
    return {"run": ["run", "--model", str(ckpt), "--tasks", "pope", "--limit", "2", "--out", str(out),
                    "--device", "cpu"],
            "generate": ["generate", "--model", str(ckpt), "--prompt", "hi", "--device", "cpu"]}


@pytest.mark.parametrize("command", ["run", "generate"])
def test_checkpoint_code_is_refused_in_process(with_code, tmp_path, command):
    ckpt, marker = with_code
    result = cli(*commands(ckpt, tmp_path / "run")[command], stdin="y\ny\n")
    one_line_error(result, "ships its own code", "auto_map in preprocessor_config.json", str(ckpt))
    assert not marker.exists()


@pytest.mark.parametrize("command", ["run", "generate"])
def test_checkpoint_code_is_refused_in_a_subprocess(with_code, tmp_path, command):
    ckpt, marker = with_code
    proc = cli_subprocess(commands(ckpt, tmp_path / "run")[command], tmp_path)
    one_line_stderr(proc, "ships its own code", "never runs code from a checkpoint")
    assert not marker.exists()


def test_original_checkpoint_tokenizer_code_never_runs(tiny_bundle, tmp_path):
    """An original-layout checkpoint (model_type `llava_llama`, unknown to transformers) whose tokenizer
    config names its own class: transformers asks "run the custom code?" on stdin and, told yes, imports it."""
    from tests.llava_model.test_checkpoint import write_original

    tok_dir = tmp_path / "tok"
    tiny_bundle.tokenizer.save_pretrained(str(tok_dir))
    ckpt = write_original(tiny_bundle.model, tok_dir, tmp_path / "orig", "safetensors")
    edit_json(ckpt / "config.json", model_type="llava_llama")
    edit_json(ckpt / "tokenizer_config.json", tokenizer_class="EvilTokenizer",
              auto_map={"AutoTokenizer": [None, "evil.EvilTokenizer"]})
    marker = tmp_path / "MARKER"
    plant_code(ckpt, marker)
    proc = cli_subprocess(["generate", "--model", str(ckpt), "--prompt", "hi", "--device", "cpu"], tmp_path)
    one_line_stderr(proc, "ships its own code", "auto_map in tokenizer_config.json")
    assert not marker.exists()


def test_auto_map_nested_in_a_sub_config_is_refused(saved, tmp_path):
    ckpt = copy_of(saved, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    config["text_config"]["auto_map"] = {"AutoModel": "evil.Model"}
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"auto_map in config\.json"):
        load_bundle(str(ckpt), device="cpu")


def test_a_token_spelled_auto_map_is_no_code_reference(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"auto_map": 5}}}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    refuse_remote_code(tmp_path)  # no error


def test_every_loader_is_told_not_to_trust_remote_code(saved, monkeypatch):
    """Even with no auto_map in sight, each transformers loader gets `trust_remote_code=False`."""
    import transformers

    calls = []

    def spy_on(cls):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, **kwargs):
            calls.append((cls.__name__, kwargs.get("trust_remote_code", "not passed")))
            return original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))

    for name in ("LlavaConfig", "LlavaForConditionalGeneration", "AutoImageProcessor", "AutoTokenizer",
                 "LlamaTokenizer", "CLIPVisionConfig", "LlamaConfig"):
        spy_on(getattr(transformers, name))
    load_bundle(str(saved), device="cpu")
    called = {name for name, _ in calls}
    assert {"LlavaConfig", "LlavaForConditionalGeneration", "AutoImageProcessor", "LlamaTokenizer"} <= called
    assert all(trust is False for _, trust in calls), calls


# ---- bad checkpoint files: one line, never a traceback -------------------------------------------------
def truncate_weights(ckpt):
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def config_text(text: str):
    return lambda ckpt: (ckpt / "config.json").write_text(text)


def garbage(name: str):
    return lambda ckpt: (ckpt / name).write_bytes(bytes(range(256)) * 3)


def config(**changes):
    return lambda ckpt: edit_json(ckpt / "config.json", **changes)


def meta(**changes):
    return lambda ckpt: edit_json(ckpt / "llava_eval.json", **changes)


def without_meta(**changes):
    def mutate(ckpt):
        (ckpt / "llava_eval.json").unlink()
        edit_json(ckpt / "config.json", **changes)

    return mutate


BAD_CHECKPOINTS = {
    "truncated safetensors": (truncate_weights, ("model.safetensors",)),
    "empty safetensors": (lambda c: (c / "model.safetensors").write_bytes(b""), ("model.safetensors",)),
    "config is a list": (config_text("[]"), ("config.json", "not an object")),
    "config is a number": (config_text("3"), ("config.json", "not an object")),
    "config is a string": (config_text('"x"'), ("config.json", "not an object")),
    "config is not UTF-8": (garbage("config.json"), ("config.json", "UTF-8")),
    "config field of the wrong type": (config(text_config=3), ("config", "text_config")),
    "bundle metadata is a list": (lambda c: (c / "llava_eval.json").write_text("[1]"), ("llava_eval.json",)),
    "unknown template in llava_eval.json": (meta(template="nope"), ("llava_eval.json", "'nope'", "vicuna_v1")),
    "unknown template in config.json": (without_meta(llava_template="nope"), ("config.json", "'nope'", "llava_v1")),
    "unknown image mode in llava_eval.json": (meta(image_mode="stretch"), ("llava_eval.json", "'stretch'", "pad")),
    "tokenizer.json is garbage": (garbage("tokenizer.json"), ("tokenizer",)),
    "tokenizer.json is empty JSON": (lambda c: (c / "tokenizer.json").write_text("{}"), ("tokenizer",)),
    "tokenizer_config.json is cut short": (lambda c: (c / "tokenizer_config.json").write_text('{"a": '),
                                           ("tokenizer_config.json",)),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_one_line(saved, tmp_path, case):
    mutate, fragments = BAD_CHECKPOINTS[case]
    ckpt = copy_of(saved, tmp_path)
    mutate(ckpt)
    one_line_error(cli("generate", "--model", str(ckpt), "--prompt", "hi", "--device", "cpu"), *fragments)


def test_a_recorded_image_mode_can_be_overridden(saved, tmp_path):
    ckpt = copy_of(saved, tmp_path)
    meta(image_mode="stretch")(ckpt)
    assert load_bundle(str(ckpt), device="cpu", image_mode="crop").image_mode == "crop"


def test_unknown_template_flag_lists_valid_names(saved):
    one_line_error(cli("generate", "--model", str(saved), "--prompt", "hi", "--device", "cpu", "--template", "nope"),
                   "'nope'", "vicuna_v1", "llava_v1", "plain")


def test_weights_of_the_wrong_shape_are_named(saved, tmp_path):
    ckpt = copy_of(saved, tmp_path)
    config = json.loads((ckpt / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 64
    (ckpt / "config.json").write_text(json.dumps(config))
    one_line_error(cli("generate", "--model", str(ckpt), "--prompt", "hi", "--device", "cpu"),
                   "wrong shapes", "mlp.down_proj.weight")


# ---- devices ----------------------------------------------------------------------------------------
def _has(device: str) -> bool:
    kind, _, index = device.partition(":")
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.device_count() > int(index or 0)
    return kind == "mps" and torch.backends.mps.is_available()


@pytest.mark.parametrize("device,fragments", [
    ("cuda", ("'cuda'", "not available", "--device cpu")),
    ("cuda:3", ("'cuda:3'", "not available")),
    ("mps", ("'mps'", "not available")),
    ("gpu7", ("'gpu7'", "cpu, cuda")),
])
def test_unavailable_device_is_refused_before_loading(saved, device, fragments):
    if _has(device):
        pytest.skip(f"{device} exists on this machine")
    one_line_error(cli("generate", "--model", str(saved), "--prompt", "hi", "--device", device), *fragments)


# ---- original layout: a missing vision tower ---------------------------------------------------------
@pytest.fixture(scope="module")
def original_without_tower(tmp_path_factory):
    """Just enough of an original LLaVA checkpoint to reach the vision tower lookup."""
    from safetensors.torch import save_file

    ckpt = tmp_path_factory.mktemp("orig") / "llava-orig"
    ckpt.mkdir()
    save_file({"model.embed_tokens.weight": torch.zeros(2, 2)}, str(ckpt / "model.safetensors"))
    return ckpt


def point_tower(ckpt: Path, tower: str) -> None:
    (ckpt / "config.json").write_text(json.dumps({"architectures": ["LlavaLlamaForCausalLM"],
                                                  "model_type": "llava_llama", "mm_vision_tower": tower}))


def test_missing_tower_directory_is_not_looked_up_on_the_hub(original_without_tower, tmp_path):
    point_tower(original_without_tower, str(tmp_path / "no-such-clip"))
    one_line_error(cli("generate", "--model", str(original_without_tower), "--prompt", "hi", "--device", "cpu"),
                   "vision tower directory", "not found", "--vision-tower")


def test_uncached_tower_offline_is_one_line(original_without_tower, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    point_tower(original_without_tower, "llava-eval-tests/no-such-tower")
    one_line_error(cli("generate", "--model", str(original_without_tower), "--prompt", "hi", "--device", "cpu"),
                   "'llava-eval-tests/no-such-tower'", "HF_HUB_OFFLINE", "--vision-tower")


def test_unreachable_hub_fails_at_once_in_one_line(original_without_tower, tmp_path):
    """Online mode with a hub that refuses connections (a closed local port): one request, no retries,
    and none of the hub's retry warnings on stderr."""
    import time

    point_tower(original_without_tower, "llava-eval-tests/no-such-tower")
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
    start = time.monotonic()
    proc = cli_subprocess(["generate", "--model", str(original_without_tower), "--prompt", "hi", "--device", "cpu"],
                          tmp_path, **env)
    one_line_stderr(proc, "cannot fetch vision tower", "--vision-tower")
    assert time.monotonic() - start < 20  # the hub's own retries wait about 25 s


# ---- other directories that are loaded: a vision tower, the trainer's LLM and stage-1 weights ------------
def test_vision_tower_directory_with_code_is_refused(tmp_path):
    from llava_model.vision_tower import tower_dir

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip", "auto_map": {"AutoConfig": "x.C"}}))
    with pytest.raises(CheckpointError, match="ships its own code"):
        tower_dir(str(tmp_path))


def test_training_llm_directory_with_code_is_refused(tmp_path):
    from train.trainer import _from_llm_and_tower

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "auto_map": {"AutoConfig": "x.C"}}))
    with pytest.raises(CheckpointError, match=r"auto_map in config\.json"):
        _from_llm_and_tower(tmp_path, str(tmp_path / "clip"), seed=0)


@pytest.mark.parametrize("name,data", [("trainable.safetensors", b"\x08" + bytes(20)),
                                       ("mm_projector.bin", b"not a pickle")], ids=["safetensors", "bin"])
def test_corrupt_stage1_weights_are_one_error(tiny_bundle, tmp_path, name, data):
    from train.trainer import load_trainable

    (tmp_path / name).write_bytes(data)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_trainable(tiny_bundle, tmp_path)


def test_training_llm_directory_without_a_tower_is_one_error(tmp_path):
    from llava_types import UserError
    from train.trainer import _from_llm_and_tower

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="vision_tower"):
        _from_llm_and_tower(tmp_path, None, seed=0)
