"""A small Llama-style SentencePiece tokenizer for the `tiny` preset, trained offline and
deterministically from built-in text (no download): BPE with byte fallback, split digits and the
dummy-prefix space, ids 0/1/2 = <unk>/<s>/</s> like Llama, plus `<image>` and `<pad>` added as special
tokens like the llava-hf checkpoints.
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

from .conversation import LLAVA_V1, VICUNA_V1

VOCAB_SIZE = 768

_WORDS = (
    "red green blue yellow purple orange black white gray brown pink cyan circle square triangle star "
    "rectangle ellipse shape shapes object objects color colour count number how many what which where is "
    "are there a an the of in on at left right top bottom middle center above below next to image picture "
    "photo yes no not one two three four five six seven eight nine ten zero text word letter sign says read "
    "written large small big tiny bright dark background foreground answer question option choice choices "
    "from the given directly single word phrase using with letter unanswerable when provided information "
    "insufficient respond reference OCR token context hint describe detail details scene contains shows"
)
_SENTENCES = (
    VICUNA_V1.system,
    LLAVA_V1.system,
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "When the provided information is insufficient, respond with 'Unanswerable'.",
    "请直接回答选项字母。",
    "Reference OCR token: ",
    "USER: ASSISTANT: A. B. C. D. E.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12",
)


def _corpus() -> str:
    words = _WORDS.split()
    lines = list(_SENTENCES) * 20
    for i, w in enumerate(words):
        lines.append(" ".join(words[i:i + 8]))
        lines.append(w.capitalize() + " " + w + "?")
    return "\n".join(lines)


def train_sentencepiece(model_prefix: Path, text: str, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train a Llama-style SentencePiece BPE model on `text`; returns the `.model` path."""
    import sentencepiece as spm

    corpus = model_prefix.with_suffix(".txt")
    corpus.write_text(text, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(model_prefix), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        hard_vocab_limit=False, minloglevel=2, character_coverage=1.0,
    )
    return model_prefix.with_suffix(".model")


def llama_tokenizer_from_spm(model_file: Path, directory: Path):
    """Load a SentencePiece model as transformers' (Llama) tokenizer, as a Vicuna checkpoint ships it."""
    from transformers import AutoTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.model").write_bytes(Path(model_file).read_bytes())
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 2048,
    }))
    return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)


@lru_cache(maxsize=1)
def _tiny_tokenizer():
    with tempfile.TemporaryDirectory() as tmp:
        model = train_sentencepiece(Path(tmp) / "tiny", _corpus())
        tok = llama_tokenizer_from_spm(model, Path(tmp) / "hf")
    tok.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": ["<image>"]})
    return tok


def tiny_tokenizer():
    """A fresh copy of the tiny tokenizer (trained once per process)."""
    import copy

    return copy.deepcopy(_tiny_tokenizer())
