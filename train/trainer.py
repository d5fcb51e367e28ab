"""The two-stage LLaVA-1.5 trainer on transformers' Trainer (with DeepSpeed when a config is given).

One `run_stage(recipe, out_dir)` serves both stages: the model has the recipe's projector, and samples
are rendered with the recipe's template (`plain` in stage 1, `vicuna_v1` in stage 2 of the paper), which
the result records. Stage 1 (projector only) writes the trainable components alone; stage 2 (projector
+ LLM, optional LoRA) loads them and writes a checkpoint directory that `llava-eval run --model DIR`
loads. Interrupted runs resume from the last Trainer checkpoint in the output directory, and a finished
stage is reused when rerun with the same recipe (`train/resume.py`).
Reference: haotian-liu/LLaVA `llava/train/train.py`, `llava/train/llava_trainer.py`, `scripts/v1_5/*.sh`.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

import torch
from torch import nn

from llava_model.checkpoint import LlavaBundle, load_bundle, save_bundle
from llava_model.conversation import get_template
from llava_model.images import SQUARE_IMAGES, VisionInputs
from llava_model.model import apply_projector_type, build_llava, embed_inputs, image_features, projector_type
from llava_model.preprocess import load_image
from llava_types import UserError

from . import resume as resume_state
from .lora import apply_lora
from .masking import IGNORE_INDEX, encode_plain, encode_v1

log = logging.getLogger("llava_train")
TRAINABLE_FILE = "trainable.safetensors"


class MaskingError(UserError):
    pass


class ConversationDataset(torch.utils.data.Dataset):
    """Samples -> (input_ids, labels, pixel_values), encoded lazily with the bundle's template and
    image mode (the recipe's, which the checkpoint records); images are opened per item."""

    def __init__(self, samples, image_folder, bundle: LlavaBundle, max_length: int, allow_mismatch: bool = False):
        self.samples, self.image_folder, self.bundle = samples, Path(image_folder or "."), bundle
        self.max_length, self.allow_mismatch = max_length, allow_mismatch

    def __len__(self):
        return len(self.samples)

    def encode(self, sample, image_tokens: int | None = None):
        """The sample's ids and labels, its image taking `image_tokens` positions (default: the model's
        `image_seq_length`; LLaVA-NeXT's count depends on the image)."""
        b = self.bundle
        count = b.image_seq_length if image_tokens is None else image_tokens
        # Reference: train.py preprocess(): preprocess_plain for a PLAIN-style template, else preprocess_v1.
        if b.template.style == "plain":
            return encode_plain(sample.turns, b.tokenizer, b.image_token_id, count, self.max_length)
        return encode_v1(sample.turns, sample.image is not None, b.tokenizer, b.template, b.image_token_id, count,
                         self.max_length)

    def __getitem__(self, index):
        sample, b = self.samples[index], self.bundle
        pixels, count = None, None
        if sample.image is not None:
            image = load_image(self.image_folder / sample.image)
            pixels = b.vision.preprocess(b, [image], b.image_mode)
            [count] = b.vision.token_counts(b, pixels)
        enc = self.encode(sample, count)
        if enc.mismatch and not self.allow_mismatch:
            raise MaskingError(f"sample {sample.id}: tokenization mismatch {enc.mismatch[0]} vs {enc.mismatch[1]}")
        return {"input_ids": torch.tensor(enc.input_ids), "labels": torch.tensor(enc.labels), "pixel_values": pixels}


def count_mismatches(dataset: ConversationDataset) -> list[tuple[str, tuple[int, int]]]:
    """Encode every sample's text once (no images) and list the masking mismatches."""
    from .progress import Progress

    progress = Progress("encoding samples (masking check)", len(dataset.samples), log)
    mismatches = []
    for done, sample in enumerate(dataset.samples, start=1):
        if (enc := dataset.encode(sample)).mismatch:
            mismatches.append((sample.id, enc.mismatch))
        progress(done)
    progress.finish()
    return mismatches


class Collator:
    """Reference: DataCollatorForSupervisedDataset: right padding, labels padded with -100, attention
    mask from the padding; the images of the batch's image samples stacked in order."""

    def __init__(self, pad_id: int, max_length: int, pad_to_multiple_of: int = 1, vision: VisionInputs = SQUARE_IMAGES):
        self.pad_id, self.max_length, self.multiple, self.vision = pad_id, max_length, pad_to_multiple_of, vision

    def __call__(self, items):
        longest = max(len(it["input_ids"]) for it in items)
        width = min(self.max_length, -(-longest // self.multiple) * self.multiple)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for row, it in enumerate(items):
            n = min(len(it["input_ids"]), width)
            ids[row, :n], labels[row, :n] = it["input_ids"][:n], it["labels"][:n]
        mask = torch.zeros_like(ids)
        for row, it in enumerate(items):
            mask[row, :min(len(it["input_ids"]), self.max_length)] = 1
        pixels = [it["pixel_values"] for it in items if it["pixel_values"] is not None]
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if pixels:
            batch["pixel_values"] = self.vision.collate(pixels)
        return batch


class LlavaTrainModule(nn.Module):
    """The LLaVA model with the image splice inside `forward`, so DDP and DeepSpeed see one module."""

    def __init__(self, model, vision: VisionInputs = SQUARE_IMAGES):
        super().__init__()
        self.model = model
        self.vision = vision
        # The LLaVA model under a peft wrapper, kept unregistered so its parameters are not listed twice.
        object.__setattr__(self, "_llava", model.get_base_model() if hasattr(model, "get_base_model") else model)

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids, labels, attention_mask, pixel_values=None):
        features = None if pixel_values is None else self.vision.features(self._llava, pixel_values)
        embeds = embed_inputs(self._llava, input_ids, features=features)
        if pixel_values is None:
            # Reference: train.py feeds a zero image to text-only batches; running the tower keeps every
            # rank's graph the same under ZeRO-3 (its output contributes nothing).
            size = self._llava.config.vision_config.image_size
            dummy = image_features(self._llava, torch.zeros(1, 3, size, size, device=embeds.device))
            embeds = embeds + 0.0 * dummy.sum()
        return self.model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)


# ---- model initialisation ------------------------------------------------------------------------------
def init_bundle(recipe, device: str = "cpu") -> LlavaBundle:
    """The starting model of a stage, with the recipe's projector, template and image mode: a preset
    (`tiny`, seeded), a llava checkpoint directory, or an LLM directory (Vicuna) plus the CLIP tower
    (`vision_tower`) with a fresh projector, as the original."""
    from llava_model.presets import NEXT_PRESETS, PRESETS

    init = recipe.model_init
    next_model = init in NEXT_PRESETS or _is_llava_dir(Path(init), "llava_next")
    if (recipe.image_mode == "anyres") != next_model:
        raise UserError(f"image_mode {recipe.image_mode!r} does not fit model_init {init!r}: anyres is for the "
                        "LLaVA-NeXT machinery (presets tiny-hd, ...), pad and crop for LLaVA-1.5")
    if next_model:
        from llava_model.next import load_next_bundle

        if recipe.projector != "mlp2x_gelu":
            raise UserError(f"model_init {init!r} is a LLaVA-NeXT model: its projector is mlp2x_gelu")
        bundle = load_next_bundle(init, device=device, dtype="float32", seed=recipe.seed)
    elif init in PRESETS or (Path(init) / "llava_eval.json").is_file() or _is_llava_dir(Path(init)):
        bundle = load_bundle(init, device=device, dtype="float32", seed=recipe.seed)
        _use_projector(bundle, recipe, fresh=init in PRESETS)
    else:
        bundle = _from_llm_and_tower(Path(init), recipe.vision_tower, recipe.seed, projector=recipe.projector,
                                     template=recipe.template, image_mode=recipe.image_mode)
    bundle.template = get_template(recipe.template)
    bundle.image_mode = recipe.image_mode
    return bundle


def _use_projector(bundle: LlavaBundle, recipe, fresh: bool) -> None:
    """Give a preset's random model the recipe's projector type (seeded); a trained checkpoint's
    projector cannot be swapped, so a different one there is refused."""
    held = projector_type(bundle.model)
    if held != recipe.projector and not fresh:
        raise UserError(f"model_init {recipe.model_init!r} holds a {held} projector but the recipe asks for "
                        f"{recipe.projector}; set the recipe's projector to {held!r}")
    bundle.model.config.llava_projector = recipe.projector
    if held != recipe.projector:
        torch.manual_seed(recipe.seed)
        apply_projector_type(bundle.model)
        bundle.model.to(bundle.device)


def _is_llava_dir(path: Path, model_type: str = "llava") -> bool:
    from llava_model.checkpoint_files import read_json_object

    config = path / "config.json"
    return config.is_file() and read_json_object(config).get("model_type") == model_type


def _from_llm_and_tower(llm_dir: Path, tower: str | None, seed: int, *, projector: str = "mlp2x_gelu",
                        template: str = "vicuna_v1", image_mode: str = "pad") -> LlavaBundle:
    """Reference: train.py builds LlavaLlamaForCausalLM from the Vicuna weights, loads the CLIP tower and
    a randomly initialised projector; the tokenizer's pad token is its unk token. The defaults are
    LLaVA-1.5's stage 2."""
    from transformers import CLIPVisionConfig, LlamaConfig

    from llava_model.checkpoint import clip_image_processor, convert_original_keys
    from llava_model.checkpoint_files import load_config, load_tokenizer, read_weights, refuse_remote_code
    from llava_model.config import build_llava_config
    from llava_model.vision_tower import tower_dir, vision_tower_weights

    if not llm_dir.is_dir():
        raise UserError(f"model_init {str(llm_dir)!r} is neither a preset, a llava checkpoint nor an LLM folder")
    if not tower:
        raise UserError(f"model_init {str(llm_dir)!r} is an LLM folder: the recipe needs vision_tower (a CLIP "
                        "directory or hub id)")
    refuse_remote_code(llm_dir)
    text = load_config(LlamaConfig, llm_dir)
    tower_path = tower_dir(tower)
    vision = load_config(CLIPVisionConfig, tower_path)
    cfg = build_llava_config(text, vision, projector=projector, template=template, image_mode=image_mode)
    model = build_llava(cfg, seed=seed)
    state = convert_original_keys(read_weights(llm_dir))
    state.update(vision_tower_weights(tower_path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "multi_modal_projector" not in k]
    if missing or unexpected:
        raise UserError(f"LLM/vision weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    tokenizer = load_tokenizer(llm_dir)
    tokenizer.pad_token = tokenizer.unk_token
    return LlavaBundle(model, tokenizer, clip_image_processor(vision.image_size), get_template(template),
                       image_mode, str(llm_dir))


def load_trainable(bundle: LlavaBundle, path: Path) -> list[str]:
    """Load a stage-1 output (our `trainable.safetensors`, or an original `mm_projector.bin`)."""
    from llava_model.checkpoint import convert_original_keys
    from llava_model.checkpoint_files import read_weight_file

    file = path / TRAINABLE_FILE if path.is_dir() else path
    if not file.is_file() and path.is_dir() and (path / "mm_projector.bin").is_file():
        file = path / "mm_projector.bin"
    if not file.is_file():
        raise UserError(f"no stage-1 weights at {path} (expected {TRAINABLE_FILE} or mm_projector.bin)")
    state = convert_original_keys(read_weight_file(file))
    own = bundle.model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise UserError(f"{file}: keys not in the model: {unknown[:5]}")
    absent = [k for k in own if k.startswith("model.multi_modal_projector.") and k not in state]
    if absent:
        raise UserError(f"{file}: lacks projector weights {absent[:5]} of the recipe's "
                        f"{projector_type(bundle.model)} projector (stage 1 trained another projector type)")
    bundle.model.load_state_dict(state, strict=False)
    return sorted(state)


# ---- one stage -----------------------------------------------------------------------------------------
def load_stage_samples(recipe, work_dir: Path, skip_invalid: bool, max_samples: int | None = None):
    """(samples, image folder) of a stage; `synthetic:stage1|stage2` generates the shapes-world data, at most
    `max_samples` records of it (what a `--max-steps` run can use)."""
    import time

    from .data import check_or_skip, load_samples, subsample
    from .synthetic_data import synthetic_data

    data_path, folder = recipe.data_path, recipe.image_folder
    if data_path.startswith("synthetic:"):
        data_path, folder = synthetic_data(data_path, work_dir, max_samples)
    samples = load_samples(data_path)
    started = time.monotonic()
    log.info("validating %d samples of %s", len(samples), data_path)
    samples = check_or_skip(samples, folder, skip_invalid, template=recipe.template)
    log.info("validated %d samples in %.1f s", len(samples), time.monotonic() - started)
    if recipe.data_fraction < 1.0:
        samples = subsample(samples, recipe.data_fraction, recipe.seed)
    return samples, folder


def training_arguments(recipe, out_dir: Path, max_steps: int | None, deepspeed: str | None):
    from transformers import TrainingArguments

    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=recipe.per_device_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps, learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler, warmup_steps=recipe.warmup_ratio, weight_decay=recipe.weight_decay,
        num_train_epochs=recipe.epochs, max_steps=max_steps or -1, save_steps=recipe.save_steps,
        save_total_limit=2, logging_steps=recipe.logging_steps, seed=recipe.seed, data_seed=recipe.seed,
        bf16=on_gpu and recipe.bf16, tf32=None, use_cpu=not on_gpu, deepspeed=deepspeed,
        activation_checkpointing=on_gpu and recipe.gradient_checkpointing, report_to=[],
        remove_unused_columns=False, dataloader_num_workers=0,
        disable_tqdm=True, ddp_backend="gloo" if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )


def make_trainer(module, args, dataset, collator, recipe, lengths):
    from transformers import Trainer

    from .sampler import LengthGroupedSampler

    class LlavaTrainer(Trainer):
        """Reference: llava_trainer.py: modality-length grouping and a separate projector learning rate."""

        def _get_train_sampler(self, *a, **kw):
            if not recipe.group_by_modality_length:
                return super()._get_train_sampler(*a, **kw)
            world = self.args.world_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(self.args.train_batch_size, world, lengths, group_by_modality=True)

        def create_optimizer(self, *a, **kw):
            if recipe.projector_lr is None or self.optimizer is not None:
                return super().create_optimizer(*a, **kw)
            params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            groups = [
                {"params": [p for n, p in params if "multi_modal_projector" not in n],
                 "weight_decay": self.args.weight_decay},
                {"params": [p for n, p in params if "multi_modal_projector" in n],
                 "weight_decay": self.args.weight_decay, "lr": recipe.projector_lr},
            ]
            cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
            self.optimizer = cls([g for g in groups if g["params"]], **kwargs)
            return self.optimizer

    return LlavaTrainer(model=module, args=args, train_dataset=dataset, data_collator=collator)


def run_stage(recipe, out_dir: Path, *, init_from: Path | None = None, max_steps: int | None = None,
              deepspeed: str | None = None, skip_invalid: bool = False, allow_mismatch: bool = False,
              resume: bool = True) -> Path:
    """Train one stage into `out_dir`; returns the directory of its result (trainable weights for stage
    1, a full checkpoint for stage 2)."""
    from .freeze import freeze_for_stage

    out_dir.mkdir(parents=True, exist_ok=True)
    record = resume_state.run_record(recipe, init_from, max_steps)
    if resume:
        done = resume_state.finished_result(out_dir, record)
        if done is not None:
            log.info("%s: this stage already finished with the same recipe; reusing %s", out_dir.name, done)
            return done
        resume_state.check_checkpoints_match(out_dir, recipe)
    resume_state.mark_started(out_dir, recipe)
    random.seed(recipe.seed)
    bundle = init_bundle(recipe)
    if init_from is not None:
        loaded = load_trainable(bundle, init_from)
        log.info("loaded %d tensors from %s", len(loaded), init_from)
    from .synthetic_data import samples_needed

    samples, folder = load_stage_samples(recipe, out_dir, skip_invalid, samples_needed(recipe, max_steps))
    dataset = ConversationDataset(samples, folder, bundle, recipe.max_length, allow_mismatch)
    mismatches = count_mismatches(dataset)
    if mismatches:
        shown = ", ".join(f"{sid} ({a} vs {b})" for sid, (a, b) in mismatches[:5])
        message = f"{len(mismatches)} of {len(samples)} samples have a tokenization mismatch: {shown}"
        if not allow_mismatch:
            raise MaskingError(message + " (pass --allow-mismatch to mask them out as the original does)")
        log.warning("%s; they are fully masked as in the original", message)
    model = bundle.model
    freeze_for_stage(model, recipe.stage, unfreeze_vision=recipe.unfreeze_vision, log=log.info)
    if recipe.lora and recipe.stage == 2:
        model = apply_lora(model, recipe.lora)
    from .data import modality_lengths

    module = LlavaTrainModule(model, bundle.vision)
    args = training_arguments(recipe, out_dir, max_steps, deepspeed)
    collator = Collator(bundle.tokenizer.pad_token_id or 0, recipe.max_length, recipe.pad_to_multiple_of,
                        bundle.vision)
    trainer = make_trainer(module, args, dataset, collator, recipe, modality_lengths(samples))
    checkpoints = resume_state.checkpoints(out_dir)
    resumed_from = checkpoints[-1].name if resume and checkpoints else None
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if resumed_from else None)
    result = save_result(trainer, bundle, model, recipe, out_dir)
    if trainer.is_world_process_zero():
        resume_state.write_summary(out_dir, record, global_step=trainer.state.global_step,
                                   resumed_from=resumed_from, samples=len(samples), mismatches=len(mismatches),
                                   log_history=trainer.state.log_history)
    trainer.accelerator.wait_for_everyone()  # a next pass on any rank reads `final/` only once it is written
    return result


def save_result(trainer, bundle: LlavaBundle, model, recipe, out_dir: Path) -> Path:
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped if trainer.is_deepspeed_enabled else trainer.model)
    result = out_dir / "final"
    if not trainer.is_world_process_zero():
        return result
    result.mkdir(exist_ok=True)
    if recipe.stage == 1:
        from safetensors.torch import save_file

        trainable = {n for n, p in bundle.model.named_parameters() if p.requires_grad}
        weights = {k.removeprefix("model."): v.detach().cpu().contiguous() for k, v in state.items()
                   if k.removeprefix("model.") in trainable}
        save_file(weights, str(result / TRAINABLE_FILE))
        meta = {"stage": 1, "template": bundle.template.name, "image_mode": bundle.image_mode,
                "projector": projector_type(bundle.model), "tensors": sorted(weights)}
        (result / "llava_eval.json").write_text(json.dumps(meta, indent=2))
        return result
    if recipe.lora:
        bundle.model = model.merge_and_unload()
    save_bundle(bundle, result)
    return result
