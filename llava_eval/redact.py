"""Keeping secrets out of what a run records or prints: the command line stored in `config.json` has the
values of secret-named options, key-like items (`sk-...`, `hf_...`, `Bearer ...`, long random tokens) and
credentials inside URLs replaced by `***`. `looks_secret` serves the checks that refuse a key given where a
name or a plain URL belongs.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"
# Words that make an option's value a secret (--api-key, --hf-token, --password=...). An option naming an
# environment variable (--api-key-env) holds a name, which is what the record should keep.
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "auth", "credential", "credentials"}
# Well-known key shapes (OpenAI, Hugging Face, GitHub, Slack, AWS, bearer tokens), found anywhere in an item.
_KEY_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{16,}|gh[opsu]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16})|(?<=Bearer )\S+", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_URL_QUERY_SECRET = re.compile(r"([?&][\w-]*(key|token|secret|passw(or)?d|sig|signature)[\w-]*=)[^&#\s]*",
                               re.IGNORECASE)
_HEX = re.compile(r"[0-9a-fA-F]{32,}")
_TOKEN_PIECE = re.compile(r"[A-Za-z0-9+=]{24,}")


def looks_random(item: str) -> bool:
    """A bare token of 32+ characters that is not a path or a word list: all hex, or holding a 24+ character
    run of mixed letters and digits (a file name like `llava_v15_7b_finetune_final` has short pieces)."""
    if "/" in item or len(item) < 32 or not re.fullmatch(r"[A-Za-z0-9+=_.-]+", item):
        return False
    if _HEX.fullmatch(item):
        return True
    return any(re.search(r"\d", p) and re.search(r"[A-Za-z]", p) for p in _TOKEN_PIECE.findall(item))


def _redact_url(match: re.Match) -> str:
    url = match.group(0)
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.username is not None or parts.password is not None:
        url = url.replace(parts.netloc, MASK + "@" + parts.netloc.rpartition("@")[2], 1)
    return _URL_QUERY_SECRET.sub(lambda m: m.group(1) + MASK, url)


def redact_text(text: str, random_tokens: bool = True) -> str:
    """`text` with URL credentials, secret URL parameters, key-shaped items and (unless `random_tokens` is
    off, as for messages that may name hash-named files) random tokens masked."""
    text = _KEY_SHAPES.sub(MASK, _URL.sub(_redact_url, text))
    if not random_tokens:
        return text
    return " ".join(MASK if looks_random(word) else word for word in text.split(" "))


def looks_secret(text: str) -> bool:
    return redact_text(text) != text


def _secret_option(name: str) -> bool:
    words = re.split(r"[-_]", name.lstrip("-").lower())
    return name.startswith("-") and words[-1] != "env" and bool(_SECRET_WORDS.intersection(words))


def redact_argv(argv: list[str]) -> list[str]:
    """The command line with every secret masked: the value after (or `=` inside) a secret-named option, and
    any item that holds a key, a random token or a URL with credentials."""
    out: list[str] = []
    hide_next = False
    for item in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, _ = item.partition("=")
        if _secret_option(name):
            if eq:
                out.append(f"{name}={MASK}")
            else:
                out.append(item)
                hide_next = True
            continue
        out.append(redact_text(item))
    return out
