"""Greedy generation on a loaded LLaVA bundle: a request's prompt ids and pixels, left-padded batches through
transformers' `generate`, and the two steps of prefix reuse (prefill the `[system][image]` prefixes once,
then a batched greedy decode from their KV cache). Which requests run together is the harness's choice.
Reference: haotian-liu/LLaVA `llava/eval/model_vqa_loader.py` (greedy, stop at EOS).
"""

from __future__ import annotations

import torch

from llava_types import Request

from .checkpoint import LlavaBundle
from .conversation import render
from .errors import UserError
from .model import embed_inputs
from .preprocess import load_image
from .tokenization import count_images, tokenize_prompt


def pad_token_id(bundle: LlavaBundle) -> int:
    pad = bundle.tokenizer.pad_token_id
    return pad if pad is not None else 0


def prompt_text(bundle: LlavaBundle, request: Request) -> str:
    return render(bundle.template, request.messages, add_generation_prompt=True)


def encode(bundle: LlavaBundle, request: Request, pixel_values=None):
    """(prompt token ids, preprocessed images) of a request; `pixel_values` reuses another request's
    identical image instead of preprocessing it again. Each image takes the positions its family gives it."""
    prompt = prompt_text(bundle, request)
    n = count_images(prompt)
    if n != len(request.images):
        raise UserError(f"request {request.doc_id!r}: prompt has {n} <image> placeholders but "
                        f"{len(request.images)} images were given")
    if request.images and pixel_values is None:
        images = [load_image(src) for src in request.images]
        pixel_values = bundle.vision.preprocess(bundle, images, request.image_mode or bundle.image_mode)
    counts = bundle.vision.token_counts(bundle, pixel_values) if request.images else []
    ids = tokenize_prompt(prompt, bundle.tokenizer, bundle.image_token_id, counts)
    return ids, pixel_values


def batch_features(bundle: LlavaBundle, pixel_values: list):
    """Features of several requests' images (None entries: requests without one), in order; None if none."""
    pixels = [p for p in pixel_values if p is not None]
    return bundle.vision.features(bundle.model, bundle.vision.collate(pixels)) if pixels else None


def _cut(tokens: list[int], cap: int, eos_id: int) -> list[int]:
    # Greedy decoding is causal, so cutting a row at its own cap equals generating with that cap.
    tokens = tokens[:cap]
    return tokens[:tokens.index(eos_id)] if eos_id in tokens else tokens


@torch.inference_mode()
def generate_padded(bundle: LlavaBundle, prompts: list[list[int]], pixel_values: list, caps: list[int]):
    """New tokens of each prompt (EOS and what follows removed), left-padded into one batch and decoded
    greedily by transformers' `generate`; `pixel_values` holds each row's images (None for text-only)."""
    from transformers import GenerationConfig

    model, device, tok = bundle.model, bundle.device, bundle.tokenizer
    pad = pad_token_id(bundle)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    embeds = embed_inputs(model, ids.to(device), features=batch_features(bundle, pixel_values))
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max(caps), eos_token_id=tok.eos_token_id,
                              pad_token_id=pad, bos_token_id=tok.bos_token_id)
    new_tokens = model.generate(inputs_embeds=embeds, attention_mask=mask.to(device), generation_config=config)
    return [_cut(new_tokens[row].tolist(), cap, tok.eos_token_id) for row, cap in enumerate(caps)]


@torch.inference_mode()
def prefill_prefixes(bundle: LlavaBundle, prefixes: list[list[int]], pixel_values: list, owners: list[int]):
    """KV cache of equally long prefixes (one image each, `pixel_values[i]` for prefix i, encoded in one vision
    pass, prefilled in one forward pass without padding), its rows then repeated so that cache row i holds
    prefix `owners[i]`."""
    model, device = bundle.model, bundle.device
    features = batch_features(bundle, pixel_values)
    ids = torch.tensor(prefixes, device=device)
    embeds = embed_inputs(model, ids, features=features)
    positions = torch.arange(ids.shape[1], device=device)[None].expand(len(prefixes), -1)
    cache = model.model.language_model(inputs_embeds=embeds, position_ids=positions, use_cache=True).past_key_values
    cache.reorder_cache(torch.tensor(owners, device=device))
    return cache


@torch.inference_mode()
def greedy_decode(bundle: LlavaBundle, cache, prefix_len: int, suffixes: list[list[int]], caps: list[int]):
    """Greedy decode on a prefix cache with one row per suffix: the suffixes (text only) left-padded after the
    prefix, padding masked out, positions continuing from the prefix; each row stops at EOS or its own cap."""
    model, device, eos_id = bundle.model, bundle.device, bundle.tokenizer.eos_token_id
    lm, head = model.model.language_model, model.lm_head
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), width), pad_token_id(bundle), dtype=torch.long)
    suffix_mask = torch.zeros((len(suffixes), width), dtype=torch.long)
    for row, suffix in enumerate(suffixes):
        ids[row, width - len(suffix):] = torch.tensor(suffix)
        suffix_mask[row, width - len(suffix):] = 1
    ids, suffix_mask = ids.to(device), suffix_mask.to(device)
    mask = torch.cat([torch.ones((len(suffixes), prefix_len), dtype=torch.long, device=device), suffix_mask], 1)
    positions = prefix_len + (suffix_mask.cumsum(1) - 1).clamp(min=0)
    embeds = lm.get_input_embeddings()(ids)
    tokens: list[list[int]] = [[] for _ in suffixes]
    done = [False] * len(suffixes)
    step_pos = positions[:, -1:]
    for _ in range(max(caps)):
        out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                 use_cache=True)
        cache = out.past_key_values
        next_ids = head(out.last_hidden_state[:, -1]).argmax(-1)
        for row, token in enumerate(next_ids.tolist()):
            if done[row]:
                continue
            if token == eos_id:
                done[row] = True
                continue
            tokens[row].append(token)
            done[row] = len(tokens[row]) >= caps[row]
        if all(done):
            break
        step_pos = step_pos + 1
        positions = step_pos
        mask = torch.cat([mask, torch.ones((len(suffixes), 1), dtype=torch.long, device=device)], 1)
        embeds = lm.get_input_embeddings()(next_ids[:, None])
    return tokens
