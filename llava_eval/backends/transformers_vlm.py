"""The transformers backend: any checkpoint of a family transformers ships natively (`llava_model.vlm.FAMILIES`:
Qwen2-VL, Qwen2.5-VL, Idefics3, BLIP-2, InstructBLIP, LLaVA-OneVision, PaliGemma, InternVL), claimed by its
config's model_type. Prompt mode "model template": each task's question text (with the paper's suffixes) goes
through the model's own chat template, or the family's documented plain format where it has none; the
family's own preprocessing and token expansion; greedy, stopping at the checkpoint's EOS ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from PIL import Image

from llava_model import vlm
from llava_model.checkpoint_files import one_line
from llava_model.errors import CheckpointError
from llava_model.fingerprint import device_record, hash_weights, vocabulary
from llava_model.preprocess import load_image
from llava_types import IMAGE_PLACEHOLDER, USER, Message, Request, UserError, digest

from ..scheduling import Prepared, SortedBatches, get_strategy
from .entry import BackendEntry, BackendOptions

NAME = "transformers"
PROMPT_MODE = "model template"

# The documented prompt of a family whose checkpoints carry no chat template; {question} is the task's text.
# The BLIP processors put the image tokens in front of the text themselves.
PLAIN_FORMATS = {
    # Reference: transformers BLIP-2 docs and model cards ("Question: how many cats are there? Answer:"), the
    # zero-shot VQA prompt of the BLIP-2 paper (Li et al. 2023, sec. 4.1).
    "blip-2": "Question: {question} Answer:",
    # Reference: transformers InstructBLIP docs (the instruction is the prompt, as it is).
    "instructblip": "{question}",
    # Reference: google/paligemma model cards, the "answer {lang} {question}" task prefix for VQA. PaliGemmaProcessor
    # makes it `<image>`s + BOS + prompt + "\n"; the leading `<image>` is what it asks for (the same tokens as
    # without it, minus a warning on every call).
    "paligemma": "<image>answer en {question}",
}


@dataclass
class Rendered:
    """A request ready for the processor: its prompt text and its images, loaded (the runner has checked them)."""

    text: str
    images: list


def chat_messages(request: Request) -> list[dict]:
    """The request as chat-template messages: each `<image>` placeholder becomes an image part where it stands,
    the whitespace that set it apart from the question is dropped, the text parts are the task's as they are."""
    messages = []
    for message in request.messages:
        pieces = message.text.split(IMAGE_PLACEHOLDER)
        content = []
        for i, piece in enumerate(pieces):
            if i:
                content.append({"type": "image"})
            piece = piece.lstrip() if i else piece
            piece = piece.rstrip() if i < len(pieces) - 1 else piece
            if piece:
                content.append({"type": "text", "text": piece})
        messages.append({"role": message.role, "content": content})
    return messages


def question_text(request: Request) -> str:
    """The single user turn's text without its image placeholder, for a family's plain prompt format."""
    if len(request.messages) != 1 or request.messages[0].role != USER:
        raise UserError(f"request {request.doc_id!r}: this model's prompt format takes one user question, not a "
                        f"conversation of {len(request.messages)} turns")
    return " ".join(p.strip() for p in request.messages[0].text.split(IMAGE_PLACEHOLDER) if p.strip())


def chat_template_of(processor) -> str | None:
    """The checkpoint's chat template: the processor's (chat_template.jinja/.json, processor_config.json), else the
    tokenizer's (tokenizer_config.json); a set of named templates gives its "default"."""
    for template in (processor.chat_template, getattr(processor.tokenizer, "chat_template", None)):
        if isinstance(template, dict):
            template = template.get("default")
        if isinstance(template, str) and template.strip():
            return template
    return None


class TransformersBackend:
    """`Backend` over a loaded `VlmBundle`: sorted, left-padded batches of `batch_size` (the scheduling is
    `SortedBatches`; prefix sharing is the LLaVA engine's)."""

    def __init__(self, bundle, batch_size: int = 8):
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        self.bundle, self.batch_size = bundle, batch_size
        self.source = bundle.source
        self.strategy = SortedBatches()
        self.chunk_size = self.strategy.chunk_size(batch_size)
        self.template = chat_template_of(bundle.processor)
        self.plain_format = None if self.template else PLAIN_FORMATS.get(bundle.model_type)
        if self.template is None and self.plain_format is None:
            raise CheckpointError(f"{bundle.source} has no chat template (chat_template.jinja, chat_template.json, or "
                                  f"one in its processor or tokenizer config) and {bundle.family} has no "
                                  "documented plain prompt format; add the release's chat template")
        self._probe()

    @property
    def prompt_format(self) -> str:
        return "chat template" if self.template else self.plain_format

    def _probe(self) -> None:
        """Render and process a sample question on a blank image once, so that a broken template, or a processor
        that puts no image tokens in the prompt, is refused before any row runs."""
        image = Image.new("RGB", (64, 48), (128, 128, 128))
        text = self.prompt(Request("probe", (Message(USER, f"{IMAGE_PLACEHOLDER}\nIs this a probe?"),), (image,)))
        if vlm.image_token_count(self.bundle, text, image) == 0:
            raise CheckpointError(f"the processor of {self.source} puts no image token in the prompt, so the image "
                                  "would be ignored (BLIP-2 and InstructBLIP need num_query_tokens in their "
                                  "processor config)")

    def prompt(self, request: Request) -> str:
        if self.plain_format is not None:
            return self.plain_format.format(question=question_text(request))
        try:
            return self.bundle.processor.apply_chat_template(chat_messages(request), chat_template=self.template,
                                                             add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # noqa: BLE001 - a template's own checks raise any type
            raise CheckpointError(f"the chat template of {self.source} cannot render a question: "
                                  f"{one_line(exc)}") from None

    def prepare(self, index: int, request: Request) -> Prepared:
        if self.plain_format is not None and len(request.images) != 1:
            raise UserError(f"request {request.doc_id!r}: {self.bundle.family} answers about exactly one image; "
                            f"this request has {len(request.images)}")
        # The processor expands the image tokens and stacks the pixels per batch, so a prepared row carries its
        # rendered prompt and images; its ids (before expansion) only order the batches by length.
        text = self.prompt(request)
        ids = self.bundle.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Prepared(index, ids, Rendered(text, [load_image(image) for image in request.images]),
                        request.settings.max_new_tokens)

    def generate_batch(self, batch: list[Prepared]) -> list[list[int]]:
        # Text-only rows and rows with images go through the processor apart: its image arguments are per batch.
        out: dict[int, list[int]] = {}
        for with_images in (False, True):
            rows = [p for p in batch if bool(p.pixel_values.images) == with_images]
            if rows:
                tokens = vlm.generate_batch(self.bundle, [p.pixel_values.text for p in rows],
                                        [image for p in rows for image in p.pixel_values.images],
                                        [p.max_new_tokens for p in rows])
                out.update(zip((p.index for p in rows), tokens, strict=True))
        return [out[p.index] for p in batch]

    def generate(self, requests: list[Request]) -> list[str]:
        # Reference: model_vqa_loader.py decodes the new tokens with special tokens skipped and strips the text.
        decode = self.bundle.tokenizer.decode
        return [decode(tokens, skip_special_tokens=True).strip()
                for tokens in self.strategy.schedule(self, requests)]

    def fingerprint(self) -> str:
        """Weights (sampled as for LLaVA), vocabulary, processor settings, image backend, chat template or plain
        format, stopping ids and this backend's name."""
        bundle = self.bundle
        h = hashlib.sha256()
        hash_weights(h, bundle.model)
        h.update(digest(*vocabulary(bundle.tokenizer), bundle.processor.to_dict(), bundle.image_processor_backend,
                        self.template, self.plain_format, bundle.eos_ids, NAME, PROMPT_MODE).encode())
        return h.hexdigest()[:16]

    def record(self) -> dict:
        bundle = self.bundle
        return device_record(bundle) | {
            "backend": NAME, "strategy": self.strategy.name, "family": bundle.family, "model_type": bundle.model_type,
            "prompt_mode": PROMPT_MODE, "prompt_format": self.prompt_format,
            "image_processor": bundle.image_processor_backend, "eos_token_ids": list(bundle.eos_ids)}


def open_transformers(model: str, options: BackendOptions) -> TransformersBackend:
    get_strategy(options.engine)  # a bad name is refused before the weights load; both run sorted batches here
    for flag, value in (("--template", options.template), ("--image-mode", options.image_mode),
                        ("--vision-tower", options.vision_tower)):
        if value is not None:
            raise UserError(f"{flag} applies to LLaVA checkpoints; {model} is prompted with its own chat template "
                            "and preprocessed by its own processor")
    return TransformersBackend(vlm.load_vlm(model, device=options.device, dtype=options.dtype), options.batch_size)


def claims(config: dict) -> bool:
    model_type = config.get("model_type")
    return isinstance(model_type, str) and model_type in vlm.FAMILIES


ENTRY = BackendEntry(
    open=open_transformers,
    architectures=f"transformers (model_type {', '.join(vlm.FAMILIES)})",
    claims=claims,
)
