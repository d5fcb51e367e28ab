"""The shipped Jinja chat templates (`llava_eval/backends/chat_templates/*.jinja`, for vLLM/SGLang
`--chat-template`) render, from the OpenAI-style messages the served backend sends, bos_token followed by
exactly the bytes of `llava_model.conversation.render`: on every registered task's prompts (synthetic rows,
with and without an image), multi-turn and edge cases, in a sandboxed Jinja environment set up as
transformers and vLLM set theirs up, and through transformers' own `apply_chat_template`."""

from __future__ import annotations

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llava_eval.backends.exact_inputs import chat_messages, template_file
from llava_model.conversation import TEMPLATES, get_template, render
from llava_types import ASSISTANT, USER, Message, Request
from tasks.registry import get_task, load_all

URL = "data:image/png;base64,AAAA"


def environment() -> ImmutableSandboxedEnvironment:
    """As transformers' `_compile_jinja_template` (which vLLM uses) builds it."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env


def jinja_render(name: str, messages: list[dict], bos: str = "<s>", generation: bool = True) -> str:
    template = environment().from_string(template_file(name).read_text(encoding="utf-8"))
    return template.render(messages=messages, add_generation_prompt=generation, bos_token=bos, eos_token="</s>")


def task_requests():
    """Two synthetic rows of every registered task, each with and without an image."""
    for name in sorted(load_all()):
        task = get_task(name)
        for index, doc in enumerate(task.synthetic_docs(2)):
            for images in (("image",), ()):
                yield f"{name}-{index}-{len(images)}", task.request(doc, index, images)


REQUESTS = dict(task_requests())


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("bos", ["<s>", ""])
def test_every_task_prompt_renders_byte_identically(template, bos):
    assert len({key.split("-")[0] for key in REQUESTS}) == len(load_all())
    for key, request in REQUESTS.items():
        urls = [URL] * len(request.images)
        expected = bos + render(get_template(template), request.messages, add_generation_prompt=True)
        assert jinja_render(template, chat_messages(request, urls), bos) == expected, key


def conversation(*turns: str, images: int = 0) -> Request:
    roles = [USER, ASSISTANT]
    return Request("x", tuple(Message(roles[i % 2], t) for i, t in enumerate(turns)), ("img",) * images)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("request_", [
    conversation("<image>\nWhat is it?", images=1),
    conversation("What is it? <image> and <image>?", images=2),  # placeholders anywhere, several images
    conversation("<image>", images=1),
    conversation("<image>\nQ1", "A1", "Q2", images=1),  # multi-turn
    conversation(""),  # an empty user turn: the role name alone
    conversation("  spaces kept  \n"),
    conversation("图中是什么？ {{ not jinja }} {% raw %}"),  # template syntax in the data is data
], ids=["image-first", "two-images", "image-only", "multi-turn", "empty", "spaces", "braces"])
def test_edge_cases_render_byte_identically(template, request_):
    urls = [URL] * len(request_.images)
    messages = chat_messages(request_, urls)
    expected = "<s>" + render(get_template(template), request_.messages, add_generation_prompt=True)
    assert jinja_render(template, messages) == expected
    if len(request_.messages) > 1:  # the training rendering (no generation prompt) agrees too
        full = conversation(*[m.text for m in request_.messages], "final answer", images=len(request_.images))
        assert jinja_render(template, chat_messages(full, urls), generation=False) == "<s>" + render(
            get_template(template), full.messages, add_generation_prompt=False)


def test_image_parts_sit_where_the_placeholders_were():
    messages = chat_messages(conversation("a<image>b<image>", images=2), ["u1", "u2"])
    assert messages == [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u1"}},
        {"type": "text", "text": "b"}, {"type": "image_url", "image_url": {"url": "u2"}}]}]


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("messages", [
    [{"role": "assistant", "content": "hi"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],  # generation prompt after assistant
    [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}],
])
def test_what_the_renderer_refuses_the_template_refuses(template, messages):
    with pytest.raises(jinja2.exceptions.TemplateError):
        jinja_render(template, messages)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_transformers_apply_chat_template_renders_the_same(template):
    from llava_model.tiny_tokenizer import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    source = template_file(template).read_text(encoding="utf-8")
    for key, request in list(REQUESTS.items())[::7]:
        messages = chat_messages(request, [URL] * len(request.images))
        text = tokenizer.apply_chat_template(messages, chat_template=source, tokenize=False,
                                             add_generation_prompt=True)
        assert text == tokenizer.bos_token + render(get_template(template), request.messages, True), key
