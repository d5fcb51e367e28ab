"""Conversation templates and the shared renderer: golden prompt strings byte for byte, the eval prompt as
a prefix of the training string, the plain template, image-placeholder handling and input validation.
Reproduces haotian-liu/LLaVA llava/conversation.py (conv_vicuna_v1, conv_llava_v1, conv_llava_plain,
Conversation.get_prompt) and llava/train/train.py preprocess_multimodal (`<image>` moved to the front).
"""

from __future__ import annotations

import dataclasses

import pytest

from llava_model.conversation import (
    LLAVA_V1,
    PLAIN,
    TEMPLATES,
    VICUNA_V1,
    eval_messages,
    get_template,
    move_image_to_front,
    render,
)
from llava_types import ASSISTANT, IMAGE_PLACEHOLDER, USER, Message

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

QUESTIONS = [
    "What is the colour of the circle?\nAnswer the question using a single word or phrase.",
    "How many 12-sided shapes are there?",
    "Which one?\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly.",
    "图中是什么颜色？\n请直接回答选项字母。",
    "  leading and trailing spaces are kept  ",
]


def user(text: str) -> Message:
    return Message(USER, text)


def assistant(text: str) -> Message:
    return Message(ASSISTANT, text)


# --- golden strings -------------------------------------------------------------------------------


def test_vicuna_v1_single_turn_eval_prompt_golden():
    prompt = render(VICUNA_V1, eval_messages("What is shown?", True), add_generation_prompt=True)
    assert prompt == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. USER: <image>\nWhat is shown? ASSISTANT:"
    )


@pytest.mark.parametrize("question", QUESTIONS)
def test_vicuna_v1_eval_prompt_for_many_questions(question):
    prompt = render(VICUNA_V1, eval_messages(question, True), add_generation_prompt=True)
    assert prompt == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. USER: <image>\n"
        + question
        + " ASSISTANT:"
    )


def test_vicuna_v1_eval_prompt_without_image():
    prompt = render(VICUNA_V1, eval_messages("Say hi.", False), add_generation_prompt=True)
    assert prompt == VICUNA_SYSTEM + " USER: Say hi. ASSISTANT:"
    assert IMAGE_PLACEHOLDER not in prompt


def test_vicuna_v1_multi_turn_training_string_golden():
    messages = [user("<image>\nQ1"), assistant("A1"), user("Q2"), assistant("A2")]
    text = render(VICUNA_V1, messages, add_generation_prompt=False)
    assert text == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. "
        "USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>"
    )


def test_vicuna_v1_multi_turn_generation_prompt_golden():
    messages = [user("<image>\nQ1"), assistant("A1"), user("Q2")]
    text = render(VICUNA_V1, messages, add_generation_prompt=True)
    assert text == VICUNA_SYSTEM + " USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"


def test_messages_may_be_tuple_or_list():
    msgs = (user("<image>\nQ1"), assistant("A1"))
    assert render(VICUNA_V1, msgs, False) == render(VICUNA_V1, list(msgs), False)


@pytest.mark.parametrize("template", [VICUNA_V1, LLAVA_V1])
@pytest.mark.parametrize("question", QUESTIONS)
def test_eval_prompt_is_prefix_of_training_string(template, question):
    prompt = render(template, eval_messages(question, True), add_generation_prompt=True)
    training = render(template, [*eval_messages(question, True), assistant("Blue")], add_generation_prompt=False)
    assert training.startswith(prompt)
    # The answer follows the generation prompt after the role separator ": " and ends with sep2.
    assert training[len(prompt):] == " Blue</s>"


def test_multi_turn_eval_prompt_is_prefix_of_training_string():
    history = [user("<image>\nQ1"), assistant("A1"), user("Q2")]
    prompt = render(VICUNA_V1, history, add_generation_prompt=True)
    training = render(VICUNA_V1, [*history, assistant("A2")], add_generation_prompt=False)
    assert training.startswith(prompt)
    assert training == prompt + " A2</s>"


def test_llava_v1_uses_human_system_prompt():
    assert LLAVA_V1.system == LLAVA_SYSTEM
    prompt = render(LLAVA_V1, eval_messages("Q?", True), add_generation_prompt=True)
    assert prompt == (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the human's questions. USER: <image>\nQ? ASSISTANT:"
    )


def test_template_fields_match_original():
    assert VICUNA_V1.system == VICUNA_SYSTEM
    for template in (VICUNA_V1, LLAVA_V1):
        assert template.roles == ("USER", "ASSISTANT")
        assert template.style == "two"
        assert template.sep == " "
        assert template.sep2 == "</s>"
    assert PLAIN.system == ""
    assert PLAIN.roles == ("", "")
    assert PLAIN.style == "plain"
    assert PLAIN.sep == "\n"
    assert PLAIN.sep2 is None


# --- plain template ------------------------------------------------------------------------------


def test_plain_generation_prompt_is_user_text_and_newline():
    assert render(PLAIN, [user("<image>\nDescribe it.")], add_generation_prompt=True) == "<image>\nDescribe it.\n"
    assert render(PLAIN, [user("hello")], add_generation_prompt=True) == "hello\n"


def test_plain_assistant_turn_adds_no_separator():
    # conv_llava_plain has sep2=None: the assistant text is appended as is.
    assert render(PLAIN, [user("<image>"), assistant("a cat")], add_generation_prompt=False) == "<image>\na cat"


# --- lookup, validation, immutability -------------------------------------------------------------


def test_get_template_by_name():
    assert get_template("vicuna_v1") is VICUNA_V1
    assert get_template("llava_v1") is LLAVA_V1
    assert get_template("plain") is PLAIN
    assert set(TEMPLATES) == {"vicuna_v1", "llava_v1", "plain"}


def test_get_template_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        get_template("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in ("vicuna_v1", "llava_v1", "plain"):
        assert name in message


@pytest.mark.parametrize(
    "messages",
    [
        [assistant("A1")],
        [user("Q1"), user("Q2")],
        [user("Q1"), assistant("A1"), assistant("A2")],
        [Message("system", "x")],
    ],
)
def test_roles_must_alternate_starting_with_user(messages):
    with pytest.raises(ValueError, match="alternate"):
        render(VICUNA_V1, messages, add_generation_prompt=False)


def test_generation_prompt_after_assistant_turn_is_rejected():
    with pytest.raises(ValueError):
        render(VICUNA_V1, [user("Q1"), assistant("A1")], add_generation_prompt=True)


def test_unknown_style_is_rejected():
    # The original's SINGLE style, which no template here uses.
    bogus = dataclasses.replace(VICUNA_V1, name="bogus", style="single")
    with pytest.raises(ValueError):
        render(bogus, [user("Q")], add_generation_prompt=True)


def test_templates_and_messages_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        VICUNA_V1.system = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PLAIN.sep = " "  # type: ignore[misc]
    msg = user("Q")
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.text = "other"  # type: ignore[misc]
    assert VICUNA_V1.system == VICUNA_SYSTEM


# --- image placeholder ---------------------------------------------------------------------------


def test_eval_messages_shape():
    assert eval_messages("Q?", True) == (Message(USER, "<image>\nQ?"),)
    assert eval_messages("Q?", False) == (Message(USER, "Q?"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is <image> this?", "<image>\nWhat is  this?"),  # inner double space is not collapsed
        ("Describe the picture.<image>", "<image>\nDescribe the picture."),
        ("<image>\nAlready in front.", "<image>\nAlready in front."),
        ("<image>Q", "<image>\nQ"),
        ("  Q with spaces  <image>  ", "<image>\nQ with spaces"),
        ("No image here.", "No image here."),
        ("  untouched without image  ", "  untouched without image  "),
    ],
)
def test_move_image_to_front(text, expected):
    assert move_image_to_front(text) == expected


# --- LLaVA-NeXT templates (mistral_instruct: SeparatorStyle.LLAMA_2, chatml_direct: SeparatorStyle.MPT) ----------


def test_mistral_instruct_eval_prompt_golden():
    prompt = render(get_template("mistral_instruct"), eval_messages("What is shown?", True), add_generation_prompt=True)
    assert prompt == "[INST] <image>\nWhat is shown? [/INST]"


def test_mistral_instruct_multi_turn_golden_and_eval_prompt_is_a_prefix():
    history = [user("<image>\nQ1"), assistant("A1"), user("Q2")]
    template = get_template("mistral_instruct")
    prompt = render(template, history, add_generation_prompt=True)
    assert prompt == "[INST] <image>\nQ1 [/INST] A1 </s>[INST] Q2 [/INST]"
    assert render(template, [*history, assistant("A2")], add_generation_prompt=False) == prompt + " A2 </s>"


def test_llama_2_style_wraps_the_system_prompt_and_strips_the_separator_characters_on_the_left():
    # conv_llava_llama_2's shape: sep "<s>" is stripped from the left with str.lstrip (a set of characters).
    llama_2 = dataclasses.replace(get_template("mistral_instruct"), name="llama_2_like", system="Be brief.", sep="<s>")
    assert render(llama_2, [user("Q1"), assistant("A1"), user("Q2")], add_generation_prompt=True) == (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST]")


def test_chatml_direct_eval_prompt_golden():
    prompt = render(get_template("chatml_direct"), eval_messages("What is shown?", True), add_generation_prompt=True)
    assert prompt == ("<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<image>\nWhat is shown?"
                      "<|im_end|><|im_start|>assistant\n")


def test_chatml_direct_training_string_extends_the_eval_prompt():
    template = get_template("chatml_direct")
    prompt = render(template, eval_messages("Q?", True), add_generation_prompt=True)
    training = render(template, [*eval_messages("Q?", True), assistant("Blue")], add_generation_prompt=False)
    assert training == prompt + "Blue<|im_end|>"


def test_next_templates_are_looked_up_but_not_trainable():
    from llava_model.conversation import ALL_TEMPLATES, NEXT_TEMPLATES

    assert set(NEXT_TEMPLATES) == {"mistral_instruct", "chatml_direct"}
    assert ALL_TEMPLATES == TEMPLATES | NEXT_TEMPLATES and not set(TEMPLATES) & set(NEXT_TEMPLATES)
    assert get_template("chatml_direct").style == "mpt" and get_template("mistral_instruct").style == "llama_2"
