"""Tokenisation and label masking of training conversations, exactly as LLaVA-1.5 does it: only the
assistant answers and their `</s>` are supervised. The original's silent whole-sample masking on a
token-count mismatch is kept, but the mismatch is returned so the trainer can count it and refuse.

Reference: haotian-liu/LLaVA `llava/train/train.py` `preprocess_multimodal`, `preprocess_plain`,
`preprocess_v1`, `DataCollatorForSupervisedDataset`; protocol section 2.3.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_model.conversation import Template, render
from llava_model.tokenization import tokenize_prompt
from llava_types import ASSISTANT, IMAGE_PLACEHOLDER, USER, Message

IGNORE_INDEX = -100
ROLES = {"human": USER, "gpt": ASSISTANT}


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    mismatch: tuple[int, int] | None = None  # (counted, actual) when the masking arithmetic disagreed


def prepare_turns(turns, has_image: bool) -> list[tuple[str, str]]:
    """Reference: preprocess_multimodal (the image placeholder moved to the front of its turn, followed
    by a newline, then the whole turn stripped) and preprocess_v1 (a leading gpt turn is skipped)."""
    turns = list(turns)
    if turns and turns[0][0] != "human":
        turns = turns[1:]
    out = []
    for role, value in turns:
        if has_image and IMAGE_PLACEHOLDER in value:
            value = (IMAGE_PLACEHOLDER + "\n" + value.replace(IMAGE_PLACEHOLDER, "").strip()).strip()
        out.append((role, value))
    return out


def _expand(ids: list[int], labels: list[int], image_token_id: int, image_seq_length: int):
    """One image id -> `image_seq_length` ids, unsupervised (the 576 feature positions)."""
    out_ids, out_labels = [], []
    for tok, lab in zip(ids, labels, strict=True):
        if tok == image_token_id:
            out_ids.extend([image_token_id] * image_seq_length)
            out_labels.extend([IGNORE_INDEX] * image_seq_length)
        else:
            out_ids.append(tok)
            out_labels.append(lab)
    return out_ids, out_labels


def encode_plain(turns, tokenizer, image_token_id: int, image_seq_length: int, max_length: int) -> Encoded:
    """Stage 1. Reference: preprocess_plain: the human turn becomes just `<image>`, the sample text is
    `<image>` + caption + `\\n` (the template's sep), and the `<image>` prefix (BOS + image) is masked."""
    if len(turns) != 2 or IMAGE_PLACEHOLDER not in turns[0][1]:
        raise ValueError("a stage-1 sample needs exactly one human turn with <image> and one gpt turn")
    text = IMAGE_PLACEHOLDER + turns[1][1] + "\n"
    ids = tokenize_prompt(text, tokenizer, image_token_id, 1)
    prefix = len(tokenize_prompt(IMAGE_PLACEHOLDER, tokenizer, image_token_id, 1))
    labels = [IGNORE_INDEX] * prefix + ids[prefix:]
    ids, labels = _expand(ids, labels, image_token_id, image_seq_length)
    return Encoded(ids[:max_length], labels[:max_length])


def round_correction(tokenizer, template: Template) -> int:
    """How many tokens longer a round after `</s>` is when tokenised alone than in context.

    Reference: preprocess_v1 subtracts 1 for rounds after the first when the tokenizer is non-legacy and
    tokenizers >= 0.14 (a fresh sequence gets a prefix-space token that does not exist after `</s>`),
    else 0. The flag only stands for that tokenizer behaviour, so it is measured here on the tokenizer
    itself; for Vicuna's tokenizer this is the original's number in both modes, and other tokenizers do
    not silently lose every multi-turn sample to a mismatch."""
    role = template.roles[0] + ": x"
    alone = len(tokenizer(role).input_ids)  # its BOS stands for the closing `</s>` of the previous round
    head = tokenizer("y" + template.sep2).input_ids
    in_context = len(tokenizer("y" + template.sep2 + role).input_ids) - len(head) + 1
    return alone - in_context


def _count(text: str, tokenizer, has_image: bool, image_token_id: int) -> int:
    if has_image:
        return len(tokenize_prompt(text, tokenizer, image_token_id, 1))
    return len(tokenizer(text).input_ids)


def encode_v1(turns, has_image: bool, tokenizer, template: Template, image_token_id: int, image_seq_length: int,
              max_length: int) -> Encoded:
    """Stage 2 (`vicuna_v1`). Reference: preprocess_v1, step by step:
    render the conversation; labels = ids with position 0 (BOS) masked; split the string into rounds on
    `</s>`; in each round mask the instruction (up to and including `" ASSISTANT: "`), whose length is
    its own token count minus 2 (its BOS, and the trailing-space token that merges with the answer);
    a round's length is its own token count, whose BOS stands in for the `</s>` that closed it. Rounds
    after the first lose `round_correction` tokens from both lengths (see there). Everything after the
    last round is masked; if the count disagrees with the real length the whole sample is masked (and
    reported)."""
    turns = prepare_turns(turns, has_image)
    messages = tuple(Message(ROLES[r], v) for r, v in turns)
    conversation = render(template, messages, add_generation_prompt=False)
    if has_image:
        ids = tokenize_prompt(conversation, tokenizer, image_token_id, 1)
    else:
        ids = tokenizer(conversation).input_ids[:max_length]  # Reference: truncation=True, text-only only
    labels = list(ids)
    pad_id = tokenizer.pad_token_id
    total = sum(1 for t in ids if t != pad_id)
    sep = template.sep + template.roles[1] + ": "
    correction = round_correction(tokenizer, template)
    cur = 1
    labels[:cur] = [IGNORE_INDEX] * cur
    for i, rou in enumerate(conversation.split(template.sep2)):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        instruction = parts[0] + sep
        round_len = _count(rou, tokenizer, has_image, image_token_id)
        instruction_len = _count(instruction, tokenizer, has_image, image_token_id) - 2
        if i != 0:
            round_len -= correction
            instruction_len -= correction
        labels[cur:cur + instruction_len] = [IGNORE_INDEX] * len(labels[cur:cur + instruction_len])
        cur += round_len
    labels[cur:] = [IGNORE_INDEX] * len(labels[cur:])
    mismatch = None
    if cur < max_length and cur != total:
        labels = [IGNORE_INDEX] * len(labels)
        mismatch = (cur, total)
    ids, labels = _expand(ids, labels, image_token_id, image_seq_length)
    # Reference: since Nov 2023 the spliced sequence is cut to tokenizer_model_max_length.
    return Encoded(ids[:max_length], labels[:max_length], mismatch)
