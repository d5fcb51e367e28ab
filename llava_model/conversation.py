"""Conversation templates of LLaVA-1.5 and LLaVA-NeXT (1.6) as immutable values, and the one renderer that
the harness (generation prompts) and the trainer (training strings) share.

Reference: haotian-liu/LLaVA `llava/conversation.py` (`conv_vicuna_v1`, `conv_llava_v1`, `conv_llava_plain`,
`conv_mistral_instruct`, `conv_chatml_direct`; `Conversation.get_prompt` for the styles TWO, PLAIN, LLAMA_2, MPT).
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_types import ASSISTANT, IMAGE_PLACEHOLDER, USER, Message

from .errors import TemplateError


@dataclass(frozen=True)
class Template:
    """A conversation format: system prompt, role names and the two separators.

    `style` is `two` (vicuna: `sep` after user turns, `sep2` after assistant turns), `plain` (stage-1
    pretraining: messages joined by `sep`, no system prompt and no role names), `llama_2` (`[INST] ... [/INST]`
    user turns, the system prompt wrapped in `<<SYS>>` inside the first) or `mpt` (ChatML: each turn is its
    role string, its text and `sep`; the roles carry the `<|im_start|>` markers).
    """

    name: str
    system: str
    roles: tuple[str, str]
    style: str
    sep: str
    sep2: str | None = None


# Reference: llava/conversation.py `conv_vicuna_v1` (the v1.5 scripts pass `--conv-mode vicuna_v1`;
# training `--version v1` resolves to this same object).
VICUNA_V1 = Template(
    name="vicuna_v1",
    system="A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    roles=("USER", "ASSISTANT"),
    style="two",
    sep=" ",
    sep2="</s>",
)

# Reference: llava/conversation.py `conv_llava_v1` (default `--conv-mode` of the eval .py files;
# "human" instead of "user" in the system prompt, otherwise identical to vicuna_v1).
LLAVA_V1 = Template(
    name="llava_v1",
    system="A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    roles=("USER", "ASSISTANT"),
    style="two",
    sep=" ",
    sep2="</s>",
)

# Reference: llava/conversation.py `conv_llava_plain` (stage-1 feature alignment).
PLAIN = Template(name="plain", system="", roles=("", ""), style="plain", sep="\n", sep2=None)

# Reference: llava/conversation.py `conv_mistral_instruct` (`--conv-mode mistral_instruct`, the template of
# llava-v1.6-mistral-7b: no system prompt, SeparatorStyle.LLAMA_2 with sep "" and sep2 "</s>").
MISTRAL_INSTRUCT = Template(name="mistral_instruct", system="", roles=("USER", "ASSISTANT"), style="llama_2", sep="",
                            sep2="</s>")

# Reference: llava/conversation.py `conv_chatml_direct` (`--conv-mode chatml_direct`, the template of
# llava-v1.6-34b on Nous-Hermes-2-Yi-34B: SeparatorStyle.MPT, sep "<|im_end|>", no newline between turns).
CHATML_DIRECT = Template(
    name="chatml_direct",
    system="<|im_start|>system\nAnswer the questions.",
    roles=("<|im_start|>user\n", "<|im_start|>assistant\n"),
    style="mpt",
    sep="<|im_end|>",
)

# The LLaVA-1.5 templates; the trainer encodes these (its label masking is the TWO and PLAIN styles').
TEMPLATES: dict[str, Template] = {t.name: t for t in (VICUNA_V1, LLAVA_V1, PLAIN)}
# Templates the harness also prompts with: the LLaVA-NeXT releases' own (evaluation only).
NEXT_TEMPLATES: dict[str, Template] = {t.name: t for t in (MISTRAL_INSTRUCT, CHATML_DIRECT)}
ALL_TEMPLATES: dict[str, Template] = TEMPLATES | NEXT_TEMPLATES


def get_template(name: str) -> Template:
    if not isinstance(name, str) or name not in ALL_TEMPLATES:
        raise TemplateError(f"unknown conversation template {name!r}; valid: {', '.join(sorted(ALL_TEMPLATES))}")
    return ALL_TEMPLATES[name]


def move_image_to_front(text: str) -> str:
    """Put the image placeholder at the very start of a user turn, followed by a newline.

    Reference: llava/train/train.py `preprocess_multimodal` (strips `<image>` wherever it is, then
    prepends `<image>\\n`) and `Conversation.get_prompt` (same for tuple messages).
    """
    if IMAGE_PLACEHOLDER not in text:
        return text
    return IMAGE_PLACEHOLDER + "\n" + text.replace(IMAGE_PLACEHOLDER, "").strip()


def render(template: Template, messages: tuple[Message, ...] | list[Message], add_generation_prompt: bool) -> str:
    """Render a conversation to the exact string the original code builds.

    With `add_generation_prompt`, an empty assistant turn is appended (`ASSISTANT:` with nothing after
    it), which is how every LLaVA eval script prompts the model. Training renders the full
    conversation without it, so the eval prompt is a prefix of the training string.
    """
    turns = [(m.role, m.text) for m in messages]
    for i, (role, _) in enumerate(turns):
        expected = USER if i % 2 == 0 else ASSISTANT
        if role != expected:
            raise ValueError(f"turn {i} has role {role!r}; turns must alternate user/assistant starting with user")
    if add_generation_prompt:
        if turns and turns[-1][0] == ASSISTANT:
            raise ValueError("cannot add a generation prompt after an assistant turn")
        turns.append((ASSISTANT, ""))
    if template.style == "two":
        # Reference: Conversation.get_prompt, SeparatorStyle.TWO.
        seps = (template.sep, template.sep2)
        out = template.system + template.sep
        for i, (role, text) in enumerate(turns):
            name = template.roles[0 if role == USER else 1]
            out += f"{name}: {text}{seps[i % 2]}" if text else f"{name}:"
        return out
    if template.style == "plain":
        # Reference: Conversation.get_prompt, SeparatorStyle.PLAIN (empty messages add nothing).
        out = template.system
        for i, (_, text) in enumerate(turns):
            if text:
                sep = template.sep if i % 2 == 0 else (template.sep2 or "")
                out += text + sep
        return out
    if template.style == "llama_2":
        return _render_llama_2(template, turns)
    if template.style == "mpt":
        # Reference: Conversation.get_prompt, SeparatorStyle.MPT (an empty turn adds its role alone).
        out = template.system + template.sep
        for role, text in turns:
            name = template.roles[0 if role == USER else 1]
            out += name + text + template.sep if text else name
        return out
    raise ValueError(f"unknown separator style {template.style!r}")


def _render_llama_2(template: Template, turns: list[tuple[str, str]]) -> str:
    """Reference: Conversation.get_prompt, SeparatorStyle.LLAMA_2: the system prompt (when set) wrapped in
    `<<SYS>>` in front of the first user text, user turns as `sep[INST] text [/INST]`, assistant turns as
    ` text sep2`, an empty turn adds nothing, and `sep`'s characters stripped from the left at the end
    (`str.lstrip`, as the original)."""
    out = ""
    for i, (role, text) in enumerate(turns):
        if not text:
            continue
        if i == 0 and template.system:
            text = f"<<SYS>>\n{template.system}\n<</SYS>>\n\n{text}"
        out += f"{template.sep}[INST] {text} [/INST]" if role == USER else f" {text} {template.sep2}"
    return out.lstrip(template.sep)


def eval_messages(question: str, has_image: bool) -> tuple[Message, ...]:
    """The single user turn every LLaVA-1.5 eval script builds: `<image>\\n` + question.

    Reference: llava/eval/model_vqa_loader.py (`DEFAULT_IMAGE_TOKEN + '\\n' + qs`).
    """
    text = IMAGE_PLACEHOLDER + "\n" + question if has_image else question
    return (Message(USER, text),)
