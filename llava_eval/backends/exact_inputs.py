"""The paper's exact inputs for a model we do not run ourselves (a served endpoint, vLLM's engine): images
preprocessed the protocol's way up to the model's input size and sent losslessly (PNG), so the server's own
resize and crop are no-ops on a square image of that size, and the prompt as `llava_model.conversation`
renders it (raw, or as chat messages for the shipped Jinja chat templates, which render the same bytes).

Reference: haotian-liu/LLaVA `llava/mm_utils.py` `expand2square` + `process_images` (pad), and the CLIP
processor of `openai/clip-vit-large-patch14-336` (shortest edge to 336, bicubic, centre crop).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import multiprocessing
import signal
import threading
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from llava_model.preprocess import IMAGE_MODES, expand_to_square, load_image, pad_color
from llava_types import IMAGE_PLACEHOLDER, Request

DEFAULT_IMAGE_SIZE = 336  # LLaVA-1.5's CLIP ViT-L/14-336
# Reference: transformers.image_utils OPENAI_CLIP_MEAN (the CLIP processor's image_mean); the pad colour
# LLaVA-1.5 fills with is int(x * 255) of it: (122, 116, 104).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
PAD_COLOR = pad_color(OPENAI_CLIP_MEAN)
TEMPLATE_DIR = Path(__file__).resolve().parent / "chat_templates"


def prepare_image(image: Image.Image, mode: str, size: int = DEFAULT_IMAGE_SIZE) -> Image.Image:
    """The RGB image the model's vision tower sees, before rescaling and normalising: `pad` pastes it on a
    square of the CLIP mean colour, then resizes to size x size (bicubic); `crop` resizes the shortest edge to
    `size` (bicubic) and cuts the centre square, as the CLIP processor does (its sizes and offsets)."""
    if mode not in IMAGE_MODES:
        raise ValueError(f"unknown image mode {mode!r}; valid: {', '.join(IMAGE_MODES)}")
    image = image.convert("RGB")
    if mode == "pad":
        image = expand_to_square(image, PAD_COLOR)
        return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BICUBIC)
    width, height = image.size
    # Reference: transformers get_resize_output_image_size(default_to_square=False): the long side is truncated.
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    if new != image.size:
        image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2  # Reference: transformers center_crop offsets
    return image.crop((left, top, left + size, top + size))


def describe_preprocessing(mode: str, size: int) -> str:
    """What config.json records about the images sent."""
    if mode == "pad":
        return f"pad to square with {PAD_COLOR}, bicubic resize to {size}x{size}, PNG"
    return f"shortest edge to {size} (bicubic), centre crop {size}x{size}, PNG"


def png_bytes(image: Image.Image) -> bytes:
    """Lossless PNG; compression level 1 (the pixels are what matters, and it is 5x faster than the default)."""
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def encode_image(pixels: bytes, image_size: tuple[int, int], mode: str, size: int) -> str:
    """The data URL of an RGB image given as raw pixels, prepared in `mode` (what an encoding process runs)."""
    return data_url(png_bytes(prepare_image(Image.frombytes("RGB", image_size, pixels), mode, size)))


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent handles it


class ImageEncoder:
    """Data URLs of prepared images, each distinct image (by pixels, mode and size) encoded once: the questions
    on one image share its encoding, also when several worker threads ask for it at the same moment. With
    `processes`, the preparation and PNG encoding (most of a served request's CPU) run in that many worker
    processes, outside this interpreter's lock, which the requests' threads need; the pixels sent are the same."""

    def __init__(self, size: int = DEFAULT_IMAGE_SIZE, keep: int = 512, processes: int = 0):
        self.size, self.keep, self.processes = size, keep, processes
        self._cache: OrderedDict[tuple, Future] = OrderedDict()  # (key, mode) -> data URL
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def key(self, image: Image.Image) -> bytes:
        """The image's identity: a hash of its mode, size and pixels (sha256: a third faster than blake2b here,
        with the CPU's SHA instructions)."""
        h = hashlib.sha256(f"{image.mode}|{image.size}".encode())
        h.update(image.tobytes())
        return h.digest()

    def url(self, image: Image.Image, mode: str, key: bytes | None = None) -> str:
        """The data URL of the image prepared in `mode`; `key`: its `key(image)` when already known."""
        key = (key or self.key(image), mode)
        with self._lock:
            future = self._cache.get(key)
            owner = future is None
            if owner:
                future = self._cache[key] = Future()
                while len(self._cache) > self.keep:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        if owner:
            try:
                future.set_result(self._encode(image, mode))
            except BaseException as exc:
                future.set_exception(exc)
                with self._lock:
                    self._cache.pop(key, None)
                raise
        return future.result()

    def _encode(self, image: Image.Image, mode: str) -> str:
        if not self.processes:
            return data_url(png_bytes(prepare_image(image, mode, self.size)))
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_ignore_interrupt)
        rgb = image.convert("RGB")  # prepare_image's first step, here so that raw pixels can travel
        return self._pool.submit(encode_image, rgb.tobytes(), rgb.size, mode, self.size).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def with_pil_images(request: Request) -> Request:
    """The request with its images as PIL images (a request may carry paths or bytes; the runner's carry PIL),
    read with the budgets of `load_image`."""
    if all(isinstance(image, Image.Image) for image in request.images):
        return request
    images = tuple(image if isinstance(image, Image.Image) else load_image(image) for image in request.images)
    return dataclasses.replace(request, images=images)


def chat_messages(request: Request, urls: list[str]) -> list[dict]:
    """OpenAI chat messages for a request: each turn's content split at its `<image>` placeholders into text
    parts and image parts (the i-th placeholder takes the i-th image), so a chat template that writes
    `<image>` for an image part and the text parts as they are rebuilds the turn byte for byte. A turn without
    an image is sent as plain text."""
    images = iter(urls)
    messages = []
    for message in request.messages:
        pieces = message.text.split(IMAGE_PLACEHOLDER)
        if len(pieces) == 1:
            messages.append({"role": message.role, "content": message.text})
            continue
        parts: list[dict] = []
        for number, piece in enumerate(pieces):
            if number:
                parts.append({"type": "image_url", "image_url": {"url": next(images)}})
            if piece:
                parts.append({"type": "text", "text": piece})
        messages.append({"role": message.role, "content": parts})
    return messages


def template_file(name: str) -> Path:
    """The shipped Jinja chat template of a conversation template (vicuna_v1, llava_v1, plain)."""
    return TEMPLATE_DIR / f"{name}.jinja"
