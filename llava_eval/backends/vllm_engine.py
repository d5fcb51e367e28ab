"""The vLLM backend, `--model vllm:DIR`: vLLM's offline engine in this process (GPU machines, the optional extra
`pip install '.[vllm]'`) on a llava-hf checkpoint directory, with the paper's exact inputs: the prompt rendered
by llava_model's renderer (vLLM's tokenizer adds BOS to a text prompt, as LLaVA's does) and the images
preprocessed the protocol's way to the input size, so vLLM's own resize and crop are no-ops. Greedy, the task's
token cap; `--tensor-parallel` GPUs per engine, `--data-parallel` engine replicas (vLLM's data_parallel_size).
Reference: vLLM docs, "Multimodal Inputs" (`LLM.generate({"prompt", "multi_modal_data": {"image"}})`).
"""

from __future__ import annotations

from pathlib import Path

from llava_model.checkpoint import recorded_protocol
from llava_model.checkpoint_files import checkpoint_config
from llava_model.conversation import render
from llava_model.errors import CheckpointError
from llava_model.fingerprint import checkpoint_files_fingerprint
from llava_types import Request, UserError, digest

from .entry import BackendEntry, BackendOptions
from .exact_inputs import DEFAULT_IMAGE_SIZE, describe_preprocessing, prepare_image, with_pil_images

NAME = "vllm"


def import_vllm():
    try:
        import vllm
    except ImportError:
        raise UserError("--model vllm:DIR needs vLLM, which is not installed here: install the extra on a GPU "
                        "machine (pip install '.[vllm]'), or serve the model and use --model served:NAME") from None
    return vllm




class VllmBackend:
    """`Backend` over a vLLM `LLM`: a chunk's requests go to `LLM.generate` at once (vLLM batches them)."""

    def __init__(self, path: Path, options: BackendOptions, vllm):
        self.path, self.vllm = path, vllm
        self.template, self.image_mode = recorded_protocol(path, options.template, options.image_mode)
        _, config = checkpoint_config(path)
        vision = config.get("vision_config") if isinstance(config.get("vision_config"), dict) else {}
        self.image_size = options.image_size or vision.get("image_size") or DEFAULT_IMAGE_SIZE
        self.options = options
        engine = {"model": str(path), "tensor_parallel_size": options.tensor_parallel, "trust_remote_code": False,
                  "seed": 0, "dtype": "auto" if options.dtype == "auto" else options.dtype,
                  "enable_prefix_caching": True}
        if options.data_parallel > 1:
            engine["data_parallel_size"] = options.data_parallel
        self.llm = vllm.LLM(**engine)
        self.source = f"{NAME}:{path}"
        self.chunk_size = 256 * options.data_parallel  # vLLM schedules within a chunk; a crash loses at most this
        self._fingerprint = checkpoint_files_fingerprint(path)

    def prompt(self, request: Request) -> str:
        return render(self.template, request.messages, add_generation_prompt=True)

    def inputs(self, request: Request) -> dict:
        mode = request.image_mode or self.image_mode
        images = [prepare_image(image, mode, self.image_size) for image in with_pil_images(request).images]
        out: dict = {"prompt": self.prompt(request)}
        if images:
            out["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
        return out

    def generate(self, requests: list[Request]) -> list[str]:
        params = [self.vllm.SamplingParams(temperature=0.0, max_tokens=r.settings.max_new_tokens) for r in requests]
        outputs = self.llm.generate([self.inputs(r) for r in requests], params, use_tqdm=False)
        # Reference: llava/eval/model_vqa_loader.py (`outputs.strip()`).
        return [output.outputs[0].text.strip() for output in outputs]

    def fingerprint(self) -> str:
        return digest(NAME, self._fingerprint, self.template.name, self.image_mode,
                      describe_preprocessing(self.image_mode, self.image_size))

    def record(self) -> dict:
        return {"backend": NAME, "device": "vllm", "vllm": getattr(self.vllm, "__version__", None),
                "dtype": self.options.dtype, "tensor_parallel": self.options.tensor_parallel,
                "data_parallel": self.options.data_parallel, "template": self.template.name,
                "image_mode": self.image_mode,
                "preprocessing": describe_preprocessing(self.image_mode, self.image_size)}


def open_vllm(model: str, options: BackendOptions) -> VllmBackend:
    vllm = import_vllm()  # before anything else: without vLLM, one line
    path = Path(model)
    if not path.is_dir():
        raise CheckpointError(f"vllm:{model} is not a checkpoint directory")
    return VllmBackend(path, options, vllm)


ENTRY = BackendEntry(open=open_vllm)
