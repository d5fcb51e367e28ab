"""Conversation templates of LLaVA-1.5 as immutable values, and the one renderer that the harness
(generation prompts) and the trainer (training strings) share.

Reference: haotian-liu/LLaVA `llava/conversation.py` (`conv_vicuna_v1`, `conv_llava_v1`,
`conv_llava_plain`, `Conversation.get_prompt` for separator styles TWO and PLAIN).
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_types import ASSISTANT, IMAGE_PLACEHOLDER, USER, Message

from .errors import TemplateError


@dataclass(frozen=True)
class Template:
    """A conversation format: system prompt, role names and the two separators.

    `style` is `two` (vicuna: `sep` after user turns, `sep2` after assistant turns) or `plain`
    (stage-1 pretraining: messages joined by `sep`, no system prompt and no role names).
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

TEMPLATES: dict[str, Template] = {t.name: t for t in (VICUNA_V1, LLAVA_V1, PLAIN)}


def get_template(name: str) -> Template:
    if not isinstance(name, str) or name not in TEMPLATES:
        raise TemplateError(f"unknown conversation template {name!r}; valid: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name]


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
    raise ValueError(f"unknown separator style {template.style!r}")


def eval_messages(question: str, has_image: bool) -> tuple[Message, ...]:
    """The single user turn every LLaVA-1.5 eval script builds: `<image>\\n` + question.

    Reference: llava/eval/model_vqa_loader.py (`DEFAULT_IMAGE_TOKEN + '\\n' + qs`).
    """
    text = IMAGE_PLACEHOLDER + "\n" + question if has_image else question
    return (Message(USER, text),)
