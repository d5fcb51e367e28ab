"""The transformers backend on tiny random Qwen2-VL, Idefics3, BLIP-2, LLaVA-OneVision, Qwen2.5-VL and
InstructBLIP checkpoints in the transformers format:
`llava-eval run --model DIR` evaluates them end to end; the answers equal each family's own processor and
`generate()` at batch size 1 and are the same at batch size 8 (CPU float32), rows stop at their own cap and at
the checkpoint's EOS ids, the checkpoint's sampling settings never leak, and bad checkpoints are one error line."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from llava_eval.backends.entry import BackendOptions
from llava_eval.backends.registry import open_backend, resolve
from llava_eval.backends.transformers_vlm import TransformersBackend, chat_messages
from llava_eval.cli import main
from llava_eval.data import load_docs
from llava_eval.runner import build_requests
from llava_model.vlm import family_dtype, greedy_config, load_processor
from llava_types import ASSISTANT, USER, GenerationSettings, Message, UserError
from tasks.registry import get_task
from tests.cli_checks import one_line_error
from tests.llava_eval import vlm_checkpoints

FAMILIES = list(vlm_checkpoints.BUILDERS)
PLAIN = {"blip-2": "Question: {question} Answer:", "instructblip": "{question}"}
RUN_FAMILIES = ("qwen2_vl", "idefics3", "blip-2")  # a run of 2 tasks x 4 rows x 128 tokens each; the CLI is shared
TASKS = ("pope", "mme")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    return {name: build(root / name) for name, build in vlm_checkpoints.BUILDERS.items()}


@pytest.fixture(scope="module")
def backends(checkpoints) -> dict[str, TransformersBackend]:
    return {name: open_backend(str(folder), BackendOptions(device="cpu", dtype="float32", batch_size=8))
            for name, folder in checkpoints.items()}


def task_requests(limit: int = 4) -> list:
    requests = []
    for name in TASKS:
        task = get_task(name)
        docs = load_docs(task, "synthetic", limit=limit)
        found, errors = build_requests(task, docs, range(len(docs)), None)
        assert not errors
        requests += found
    return requests


@pytest.fixture(scope="module")
def requests() -> list:
    """The synthetic POPE and MME questions, each row with its own cap (3 to 10 new tokens) to keep it short."""
    return [dataclasses.replace(r, settings=GenerationSettings(max_new_tokens=3 + i % 8))
            for i, r in enumerate(task_requests())]


def tokens(backend: TransformersBackend, requests: list, batch_size: int) -> list[list[int]]:
    same = TransformersBackend(backend.bundle, batch_size=batch_size)
    return same.strategy.schedule(same, requests)


# ---- the family's own transformers code, as its documentation calls it -----------------------------------
def reference_processor(name: str, folder: Path):
    from transformers import AutoProcessor

    if name in ("qwen2_vl", "qwen2_5_vl", "llava_onevision"):  # AutoProcessor needs torchvision for their video
        return load_processor(folder, name)
    return AutoProcessor.from_pretrained(str(folder), backend="pil", local_files_only=True)


def reference_model(folder: Path, eos_ids: list[int]):
    """The checkpoint through AutoModelForImageTextToText, greedy, stopping at `eos_ids` (its release's sampling
    settings replaced: the protocol decodes greedily)."""
    from transformers import AutoModelForImageTextToText, GenerationConfig

    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    model.generation_config = GenerationConfig(eos_token_id=eos_ids)
    if hasattr(model, "language_model"):  # BLIP-2 generates with its language model's config
        model.language_model.generation_config = model.generation_config
    return model.eval()


def reference_answer(name: str, model, processor, request) -> str:
    """Reference: the model cards: BLIP-2 `processor(images, "Question: ... Answer:")`, InstructBLIP
    `processor(images, question)`; chat models `processor.apply_chat_template(messages, add_generation_prompt=True,
    tokenize=True, return_dict=True)`."""
    question = request.messages[0].text.removeprefix("<image>\n")
    if name in PLAIN:
        inputs = processor(images=request.images[0], text=PLAIN[name].format(question=question), return_tensors="pt")
    else:
        messages = [{"role": "user", "content": [{"type": "image", "image": request.images[0]},
                                                 {"type": "text", "text": question}]}]
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, do_sample=False, num_beams=1,
                             max_new_tokens=request.settings.max_new_tokens)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    if new and new[-1] in model.generation_config.eos_token_id:  # generate() ends with the EOS it stopped at
        new = new[:-1]
    return processor.decode(new, skip_special_tokens=True).strip()


def checkpoint_eos(folder: Path) -> list[int]:
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    return eos if isinstance(eos, list) else [eos]


@pytest.mark.parametrize("name", FAMILIES)
def test_answers_equal_the_familys_own_generate_at_batch_size_1_and_8(checkpoints, backends, requests, name):
    folder, backend = checkpoints[name], backends[name]
    model, processor = reference_model(folder, checkpoint_eos(folder)), reference_processor(name, folder)
    expected = [reference_answer(name, model, processor, r) for r in requests]
    assert len(set(expected)) > len(expected) // 2  # the answers depend on the image and the question
    alone, batched = tokens(backend, requests, 1), tokens(backend, requests, 8)
    assert batched == alone
    assert [backend.bundle.tokenizer.decode(t, skip_special_tokens=True).strip() for t in alone] == expected


@pytest.mark.parametrize("name", FAMILIES)
def test_each_row_stops_at_its_own_cap_and_at_any_eos_id(checkpoints, backends, requests, name):
    """A token the first row generates third is declared an EOS id: in a batch of 8, that row stops before it,
    the others where they meet it, as the family's generate() (one row at a time) with the same EOS list."""
    backend = backends[name]
    free = tokens(backend, requests, 8)
    assert [len(t) for t in free] == [r.settings.max_new_tokens for r in requests]
    stop = free[0][2]
    eos = (*backend.bundle.eos_ids, stop)
    generation = greedy_config(backend.bundle.generation, eos, backend.bundle.generation.pad_token_id)
    stopped = TransformersBackend(dataclasses.replace(backend.bundle, eos_ids=eos, generation=generation))
    cut = tokens(stopped, requests, 8)
    assert cut[0] == free[0][:free[0].index(stop)]
    assert cut == [t[:t.index(stop)] if stop in t else t for t in free]
    model = reference_model(checkpoints[name], list(eos))
    processor = reference_processor(name, checkpoints[name])
    decode = backend.bundle.tokenizer.decode
    assert [reference_answer(name, model, processor, r) for r in requests[:3]] == [
        decode(t, skip_special_tokens=True).strip() for t in cut[:3]]


@pytest.mark.parametrize("name", FAMILIES)
def test_the_checkpoints_sampling_settings_do_not_leak(backends, name):
    model = backends[name].bundle.model
    configs = [m.generation_config for m in model.modules() if getattr(m, "generation_config", None) is not None]
    assert len(configs) >= (2 if name in PLAIN else 1)
    for config in configs:
        assert (config.do_sample, config.num_beams) == (False, 1)
        assert config.repetition_penalty in (None, 1.0) and config.no_repeat_ngram_size in (None, 0)
        assert config.temperature in (None, 1.0) and config.top_k in (None, 50) and config.top_p in (None, 1.0)


# ---- prompts -----------------------------------------------------------------------------------------------
def test_prompts_go_through_the_models_own_template(backends):
    request = task_requests(1)[0]
    question = "Is there a red square in the image?\nAnswer the question using a single word or phrase."
    assert request.messages[0].text == "<image>\n" + question
    assert chat_messages(request) == [{"role": "user", "content": [{"type": "image"},
                                                                   {"type": "text", "text": question}]}]
    assert backends["qwen2_vl"].prompt(request) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n")
    assert backends["idefics3"].prompt(request) == (
        f"<|begin_of_text|>User:<image>{question}<end_of_utterance>\nAssistant:")
    assert backends["llava_onevision"].prompt(request) == (
        f"<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n")


def test_blip2_is_prompted_in_its_documented_format(backends):
    request = task_requests(1)[0]
    question = request.messages[0].text.removeprefix("<image>\n")
    assert backends["blip-2"].prompt(request) == f"Question: {question} Answer:"
    assert backends["instructblip"].prompt(request) == question
    record = backends["blip-2"].record()
    assert record["prompt_mode"] == "model template" and record["prompt_format"] == "Question: {question} Answer:"
    assert record["family"] == "BLIP-2" and record["image_processor"] == "BlipImageProcessorPil"


def test_image_placeholders_become_image_parts_where_they_stand():
    request = dataclasses.replace(task_requests(1)[0], messages=(
        Message(USER, "Compare <image> with\n<image>\nWhich is larger?"), Message(ASSISTANT, "The first."),
        Message(USER, "Why?")))
    assert chat_messages(request) == [
        {"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image"},
                                     {"type": "text", "text": "with"}, {"type": "image"},
                                     {"type": "text", "text": "Which is larger?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "The first."}]},
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]}]


@pytest.mark.parametrize("name,device,config,expected", [
    ("auto", "cpu", {"torch_dtype": "bfloat16"}, torch.float32),
    ("auto", "cuda", {"torch_dtype": "bfloat16"}, torch.bfloat16),  # the release's own dtype on a GPU
    ("auto", "cuda:1", {"dtype": "float32"}, torch.float32),
    ("auto", "cuda", {}, torch.float16),
    ("auto", "cuda", {"torch_dtype": ["bfloat16"]}, torch.float16),  # a hostile value is no dtype
    ("float16", "cuda", {"torch_dtype": "bfloat16"}, torch.float16),  # --dtype wins
])
def test_auto_dtype_follows_the_release_on_a_gpu(name, device, config, expected):
    assert family_dtype(name, device, config) == expected


def test_qwen2_vl_expands_each_image_by_its_grid(backends, make_image):
    """Reference: Qwen2VLProcessor.replace_image_token: `<|image_pad|>` repeated grid_t*grid_h*grid_w //
    merge_size**2 times, between `<|vision_start|>` and `<|vision_end|>`."""
    processor = backends["qwen2_vl"].bundle.processor
    tok = processor.tokenizer
    pad, start, end = (tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>"))
    sizes = [(208, 208), (100, 60), (300, 56), (40, 200)]
    text = "<|vision_start|><|image_pad|><|vision_end|>What is it?"
    out = processor(text=[text] * len(sizes), images=[make_image(w, h, i) for i, (w, h) in enumerate(sizes)],
                    padding=True, return_tensors="pt")
    merge = processor.image_processor.merge_size
    counts = set()
    for row, grid in zip(out["input_ids"].tolist(), out["image_grid_thw"].tolist(), strict=True):
        n = grid[0] * grid[1] * grid[2] // merge ** 2
        first = row.index(start)
        assert row[first + 1:first + 2 + n] == [pad] * n + [end]
        counts.add(n)
    assert len(counts) > 1  # the grid follows the image's size
    assert torch.equal(out["mm_token_type_ids"], (out["input_ids"] == pad).long())
    assert out["pixel_values"].shape[0] == sum(t * h * w for t, h, w in out["image_grid_thw"].tolist())


def test_llava_onevision_expands_each_image_to_its_anyres_features(backends, make_image):
    """The image-only LlavaOnevisionProcessor puts as many `<image>` tokens as the model makes features for that
    image's anyres grid (the model refuses any other count), and the count follows the image's shape."""
    bundle = backends["llava_onevision"].bundle
    token = bundle.model.config.image_token_id
    counts = set()
    for i, (w, h) in enumerate([(208, 208), (100, 60), (300, 56), (40, 200)]):
        inputs = bundle.processor(text=["<image>\nWhat is it?"], images=[make_image(w, h, i)], return_tensors="pt")
        with torch.inference_mode():
            features = bundle.model.model.get_image_features(inputs["pixel_values"], inputs["image_sizes"],
                                                             vision_feature_layer=-1,
                                                             vision_feature_select_strategy="full")
        n = int((inputs["input_ids"] == token).sum())
        assert n == sum(f.shape[0] for f in getattr(features, "pooler_output", features))
        counts.add(n)
    assert len(counts) > 1


# ---- what a run records ------------------------------------------------------------------------------------
def quick_stopping(folder: Path, to: Path) -> Path:
    """A copy of the checkpoint whose EOS ids are half its vocabulary, so that a random model's answers to tasks
    that allow 128 new tokens end within a few."""
    folder = copy(folder, to)
    vocab = json.loads((folder / "config.json").read_text())["text_config"]["vocab_size"]
    generation = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps(generation | {"eos_token_id": list(range(vocab // 2))}))
    return folder


@pytest.mark.parametrize("name", RUN_FAMILIES)
def test_run_evaluates_the_checkpoint_end_to_end(checkpoints, tmp_path, name):
    folder, out = quick_stopping(checkpoints[name], tmp_path / "ckpt"), tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--model", str(folder), "--tasks", ",".join(TASKS),
                                       "--limit", "4", "--out", str(out), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    backend = open_backend(str(folder), BackendOptions(device="cpu"))
    assert config["backend"] == "transformers" and config["prompt_mode"] == "model template"
    assert config["model_type"] == name and config["image_processor"].endswith("Pil")
    assert config["model_fingerprint"] == backend.fingerprint()
    texts = []
    for task in TASKS:
        rows = [json.loads(line) for line in (out / task / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 4 and {r["model_id"] for r in rows} == {str(folder)}
        assert json.loads((out / task / "metrics.json").read_text())["metrics"]["n_docs"] == 4
        texts += [r["text"] for r in rows]
    assert any(texts) and texts == backend.generate(task_requests())


def test_the_record_names_backend_family_prompt_mode_and_image_backend(backends):
    record = backends["qwen2_vl"].record()
    assert record["backend"] == "transformers" and record["strategy"] == "sorted-batches"
    assert record["family"] == "Qwen2-VL" and record["prompt_mode"] == "model template"
    assert record["prompt_format"] == "chat template" and record["device"] == "cpu"
    assert record["image_processor"] == "Qwen2VLImageProcessorPil"
    assert record["eos_token_ids"] == list(backends["qwen2_vl"].bundle.eos_ids) and len(record["eos_token_ids"]) == 2


def test_the_fingerprint_covers_the_processor_and_the_template(checkpoints, backends, tmp_path):
    folder = copy(checkpoints["qwen2_vl"], tmp_path / "same")
    assert open_backend(str(folder), BackendOptions(device="cpu")).fingerprint() == backends["qwen2_vl"].fingerprint()
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    settings["size"]["longest_edge"] = 28 * 28 * 8
    (folder / "preprocessor_config.json").write_text(json.dumps(settings))
    smaller = open_backend(str(folder), BackendOptions(device="cpu")).fingerprint()
    template = vlm_checkpoints.QWEN2_VL_TEMPLATE.replace("helpful", "careful")
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    careful = open_backend(str(folder), BackendOptions(device="cpu")).fingerprint()
    assert len({smaller, careful, backends["qwen2_vl"].fingerprint()}) == 3


# ---- bad checkpoints ---------------------------------------------------------------------------------------
def copy(folder: Path, to: Path) -> Path:
    return Path(shutil.copytree(folder, to))


def run_model(model: str, tmp_path: Path, *extra: str):
    return CliRunner().invoke(main, ["run", "--model", model, "--tasks", "pope", "--limit", "2", "--out",
                                     str(tmp_path / "run"), "--no-progress", "--device", "cpu", *extra])


@pytest.mark.parametrize("model_type", ["gemma3", "qwen9_vl"])  # known to transformers but not claimed; unknown
def test_an_unsupported_architecture_is_one_line_naming_it(checkpoints, tmp_path, model_type):
    folder = copy(checkpoints["qwen2_vl"], tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": model_type}))
    one_line_error(run_model(str(folder), tmp_path), "unsupported model architecture", f"'{model_type}'",
                   "transformers (model_type qwen2_vl")
    one_line_error(run_model(f"transformers:{folder}", tmp_path), f"model_type '{model_type}' is not a supported")


@pytest.mark.parametrize("scheme", ["", "transformers:"])
def test_a_checkpoint_needing_remote_code_is_refused(checkpoints, tmp_path, scheme):
    folder = copy(checkpoints["qwen2_vl"], tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": "modeling_x.Model"}}))
    one_line_error(run_model(scheme + str(folder), tmp_path), "ships its own code", "auto_map in config.json")


@pytest.mark.parametrize("name", FAMILIES)
def test_a_missing_processor_file_is_one_line(checkpoints, tmp_path, name):
    folder = copy(checkpoints[name], tmp_path / "ckpt")
    for file in ("preprocessor_config.json", "processor_config.json"):
        (folder / file).unlink(missing_ok=True)
    one_line_error(run_model(str(folder), tmp_path), "no image processor config",
                   "preprocessor_config.json or processor_config.json")
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_missing_chat_template_is_one_line(checkpoints, tmp_path):
    folder = copy(checkpoints["qwen2_vl"], tmp_path / "ckpt")
    (folder / "chat_template.json").unlink()
    one_line_error(run_model(str(folder), tmp_path), "has no chat template", "Qwen2-VL")


@pytest.mark.parametrize("damage,fragment", [
    (lambda f: (f / "tokenizer.json").write_text("{not json"), "cannot load the tokenizer of"),
    (lambda f: (f / "preprocessor_config.json").write_text("[1]"), "preprocessor_config.json holds a JSON list"),
    (lambda f: (f / "model.safetensors").write_bytes(b"\0" * 10), "cannot read weights"),
], ids=["tokenizer", "processor-config", "weights"])
def test_damaged_files_are_one_line(checkpoints, tmp_path, damage, fragment):
    folder = copy(checkpoints["qwen2_vl"], tmp_path / "ckpt")
    damage(folder)
    one_line_error(run_model(str(folder), tmp_path), fragment)


def test_weights_that_do_not_match_the_config_are_one_line(checkpoints, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy(checkpoints["qwen2_vl"], tmp_path / "ckpt")
    weights = load_file(str(folder / "model.safetensors"))
    dropped = sorted(k for k in weights if "layers.1." in k)[0]
    del weights[dropped]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    one_line_error(run_model(str(folder), tmp_path), "do not match the model", "missing keys", "layers.1.")


def test_llava_options_are_refused_for_other_families(checkpoints, tmp_path):
    one_line_error(run_model(str(checkpoints["qwen2_vl"]), tmp_path, "--template", "vicuna_v1"),
                   "--template applies to LLaVA checkpoints")


def test_a_directory_resolves_to_the_transformers_backend_by_model_type(checkpoints):
    for folder in checkpoints.values():
        assert resolve(str(folder)) == ("transformers", str(folder))


def test_a_processor_that_expands_no_image_is_refused(checkpoints, tmp_path):
    folder = copy(checkpoints["blip-2"], tmp_path / "ckpt")
    settings = json.loads((folder / "processor_config.json").read_text())
    del settings["num_query_tokens"]
    (folder / "processor_config.json").write_text(json.dumps(settings))
    one_line_error(run_model(str(folder), tmp_path), "puts no image token in the prompt", "num_query_tokens")


def test_plain_format_families_refuse_a_request_without_one_image(backends):
    request = dataclasses.replace(task_requests(1)[0], images=())
    with pytest.raises(UserError, match="answers about exactly one image"):
        backends["blip-2"].generate([request])
