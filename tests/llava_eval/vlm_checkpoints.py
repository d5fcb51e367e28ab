"""Tiny random checkpoints of transformers vision-language families, written in the transformers format
(model.save_pretrained, tokenizer, processor config, chat template) with no download: a byte-level BPE
tokenizer trained here with the family's special tokens, the PIL image processor, a 1-2 layer model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CORPUS = (
    "Is there a red circle in the image? Answer the question using a single word or phrase. yes no "
    "Please answer yes or no. How many shapes are there? What colour is the square on the left? "
    "system user assistant You are a helpful assistant. Question: Answer: one two three blue green"
)

# Reference: the chat template of Qwen/Qwen2-VL-7B-Instruct (chat_template.json), video branch dropped.
QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Reference: the chat template of HuggingFaceM4/Idefics3-8B-Llama3 (it starts with BOS).
IDEFICS3_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# In the style of llava-hf/llava-onevision-qwen2-*-ov-hf's chat template: ChatML, the images first, then the text.
ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# What a release's generation_config.json may hold besides its stopping ids; greedy evaluation ignores it.
SAMPLING = {"do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.8, "repetition_penalty": 1.5,
            "no_repeat_ngram_size": 2}


def tiny_tokenizer(specials: list[str], bos: str | None = None, **tokens):
    """A byte-level BPE tokenizer of ~300 tokens whose first ids are `specials`; `bos` is prepended to every
    encoding (as OPT's and Llama 3's tokenizers do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS] * 4, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, **tokens)


def _save(model, processor, out: Path, generation: dict) -> Path:
    with torch.no_grad():  # weights 5x the default spread, so that answers differ with the image and question
        for param in model.parameters():
            param.mul_(5)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    config = json.loads((out / "generation_config.json").read_text())
    (out / "generation_config.json").write_text(json.dumps(config | generation))
    return out


class LegacyLayout:
    """Saves a processor's parts as the older releases do: no processor_config.json, the image processor in
    preprocessor_config.json, the chat template in chat_template.json."""

    def __init__(self, image_processor, tokenizer, chat_template: str):
        self.parts, self.chat_template = (image_processor, tokenizer), chat_template

    def save_pretrained(self, out: str) -> None:
        for part in self.parts:
            part.save_pretrained(out)
        (Path(out) / "chat_template.json").write_text(json.dumps({"chat_template": self.chat_template}))


def qwen2_vl(out: Path) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = tiny_tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    # The layout of the Qwen2-VL releases: preprocessor_config.json, chat_template.json, the tokenizer's files.
    processor = LegacyLayout(image_processor, tok, QWEN2_VL_TEMPLATE)
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}, eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"], bos_token_id=None, tie_word_embeddings=False),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    # Reference: Qwen2-VL-7B-Instruct's generation_config.json stops at <|im_end|> and <|endoftext|>.
    eos = {"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]], "pad_token_id": ids["<|endoftext|>"]}
    return _save(model, processor, out, SAMPLING | eos)


def idefics3(out: Path) -> Path:
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<pad>", "<fake_token_around_image>", "<image>",
                "<end_of_utterance>", "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = tiny_tokenizer(specials, bos="<|begin_of_text|>", eos_token="<|end_of_text|>", pad_token="<pad>")
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    # image_seq_len = (image_size / patch_size)^2 / scale_factor^2 = (32 / 8)^2 / 2^2
    processor = Idefics3Processor(image_processor, tok, image_seq_len=4, chat_template=IDEFICS3_TEMPLATE)
    config = Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id),
        scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    eos = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_utterance>")]
    return _save(model, processor, out, SAMPLING | {"eos_token_id": eos})


def blip2(out: Path) -> Path:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessorPil

    tok = tiny_tokenizer(["<pad>", "</s>", "<image>"], bos="</s>", eos_token="</s>", pad_token="<pad>")
    processor = Blip2Processor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tok, num_query_tokens=4)
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            encoder_hidden_size=32, vocab_size=64),
        text_config=dict(model_type="opt", vocab_size=len(tok), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=1024, word_embed_proj_dim=32,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        num_query_tokens=4, image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config)
    return _save(model, processor, out, SAMPLING | {"eos_token_id": tok.eos_token_id})


def llava_onevision(out: Path) -> Path:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
    )

    from llava_model.vlm import image_only

    tok = tiny_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
                         eos_token="<|im_end|>", pad_token="<|endoftext|>")
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]  # anyres grids of 32-pixel tiles
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints)
    # LlavaOnevisionProcessor cannot be built without torchvision (its video processor): the image-only one saves
    # the same processor_config.json. num_image_tokens = (image_size / patch_size)^2 = (32 / 8)^2.
    processor = image_only(LlavaOnevisionProcessor)(image_processor, tok, None, num_image_tokens=16,
                                                     vision_feature_select_strategy="full",
                                                     chat_template=ONEVISION_TEMPLATE)
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False),
        image_token_index=tok.convert_tokens_to_ids("<image>"), video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints, vision_feature_select_strategy="full", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(config)
    return _save(model, processor, out, SAMPLING | {"eos_token_id": tok.eos_token_id})


def qwen2_5_vl(out: Path) -> Path:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessorPil,
    )

    from llava_model.vlm import image_only

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = tiny_tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    processor = image_only(Qwen2_5_VLProcessor)(image_processor, tok, None, chat_template=QWEN2_VL_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}, eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"], bos_token_id=None, tie_word_embeddings=False),
        # two vision blocks: one with window attention (56-pixel windows), one with full attention
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           window_size=56, fullatt_block_indexes=[1], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return _save(model, processor, out, SAMPLING | {"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]]})


def instructblip(out: Path) -> Path:
    from transformers import (
        BlipImageProcessorPil,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    tok = tiny_tokenizer(["<unk>", "<s>", "</s>", "<image>"], bos="<s>", eos_token="</s>", pad_token="<unk>")
    qformer_tok = tiny_tokenizer(["[PAD]", "[CLS]", "[SEP]"], bos="[CLS]", pad_token="[PAD]")  # BERT-style
    processor = InstructBlipProcessor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tok, qformer_tok,
                                      num_query_tokens=4)
    config = InstructBlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            encoder_hidden_size=32, vocab_size=len(qformer_tok), pad_token_id=0),
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id),
        num_query_tokens=4, image_token_index=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    model = InstructBlipForConditionalGeneration(config)
    return _save(model, processor, out, SAMPLING | {"eos_token_id": tok.eos_token_id})


BUILDERS = {"qwen2_vl": qwen2_vl, "idefics3": idefics3, "blip-2": blip2, "llava_onevision": llava_onevision,
            "qwen2_5_vl": qwen2_5_vl, "instructblip": instructblip}
