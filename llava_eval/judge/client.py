"""Chat completions through the official `openai` client, with our own retry loop: 429 waits for the
server's Retry-After (retry-after-ms first), 5xx, timeouts and dropped connections back off exponentially,
401/403/404 and other 4xx stop at once; a 200 whose body is no chat completion is retried like a 5xx. The
key is read from the environment and scrubbed from every message this module raises. `LazyJudgeClient` makes
the client and probes the endpoint only when a first request must really be sent."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from llava_types import UserError

from .config import JudgeConfig


class JudgeSetupError(UserError):
    """The endpoint, key or model is wrong: nothing can be judged."""


class JudgeCallError(Exception):
    """One request failed after all retries (the verdict stays missing)."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class JudgeClient:
    def __init__(self, config: JudgeConfig, sleep=time.sleep):
        import openai

        self.config, self.sleep = config, sleep
        self._key = config.api_key()
        common = {"api_key": self._key, "timeout": config.timeout, "max_retries": 0}
        if config.provider == "azure":
            self.client = openai.AzureOpenAI(azure_endpoint=config.base_url, api_version=config.azure_api_version,
                                             **common)
        else:
            self.client = openai.OpenAI(base_url=config.base_url, **common)

    def scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def probe(self, model: str) -> None:
        """One 1-token request: a wrong key, model or endpoint stops here, before any work is spent."""
        try:
            self._once([{"role": "user", "content": "ping"}], model, 0.0, 1)
        except _Retryable as exc:
            if exc.rate_limited:
                return  # reachable, key and model accepted; the judging loop waits as the server asks
            raise JudgeSetupError(f"judge endpoint {self.client.base_url} unusable: {exc.reason}") from None
        except JudgeCallError as exc:
            raise JudgeSetupError(f"judge endpoint unusable: {exc}") from None

    def complete(self, messages: list[dict], model: str, temperature: float, max_tokens: int) -> Completion:
        delay = 1.0
        for attempt in range(self.config.retries + 1):
            try:
                return self._once(messages, model, temperature, max_tokens)
            except _Retryable as exc:
                if attempt == self.config.retries:
                    raise JudgeCallError(f"gave up after {attempt + 1} tries: {exc.reason}") from None
                wait = exc.retry_after if exc.retry_after is not None else delay * (1 + random.random())
                delay = min(delay * 2, 60.0)
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, messages, model, temperature, max_tokens) -> Completion:
        import openai

        try:
            response = self.client.chat.completions.create(model=model, messages=messages, temperature=temperature,
                                                           max_tokens=max_tokens)
        except openai.RateLimitError as exc:
            raise _Retryable("429 rate limited", _retry_after(exc.response), rate_limited=True) from None
        except openai.AuthenticationError:
            raise JudgeSetupError(f"the judge endpoint rejected the key in {self.config.api_key_env} (401)") from None
        except openai.PermissionDeniedError:
            raise JudgeSetupError(f"the key in {self.config.api_key_env} may not use model {model!r} (403)") from None
        except openai.NotFoundError:
            raise JudgeSetupError(f"model {model!r} or the endpoint path was not found (404) at "
                                  f"{self.client.base_url}") from None
        except openai.InternalServerError as exc:
            raise _Retryable(f"server error {exc.status_code}", _retry_after(exc.response)) from None
        except openai.APITimeoutError:
            raise _Retryable(f"no answer within {self.config.timeout:g} s", None) from None
        except openai.APIConnectionError:
            raise _Retryable(f"cannot reach {self.client.base_url}", None) from None
        except openai.APIStatusError as exc:
            raise JudgeCallError(self.scrub(f"judge request refused ({exc.status_code})")) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError):
            raise _Retryable("malformed reply (not JSON)", None) from None
        return _completion(response)


class LazyJudgeClient:
    """A JudgeClient made, and its endpoint probed, on the first request that must be sent: once, under a lock,
    with that request's model. A rerun whose verdicts are all stored or cached reads no key and sends nothing,
    so it works offline. A failed setup (no key, a 401 at the probe) is raised again to every later caller."""

    def __init__(self, config: JudgeConfig, make: Callable[[JudgeConfig], JudgeClient] = JudgeClient):
        self.config, self.make = config, make
        self._client: JudgeClient | None = None
        self._failure: Exception | None = None
        self._lock = threading.Lock()

    def client(self, model: str) -> JudgeClient:
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._client is None:
                try:
                    client = self.make(self.config)
                    client.probe(model)
                except UserError as exc:
                    self._failure = exc
                    raise
                self._client = client
            return self._client

    def complete(self, messages: list[dict], model: str, temperature: float, max_tokens: int) -> Completion:
        return self.client(model).complete(messages, model, temperature, max_tokens)

    def scrub(self, text: str) -> str:
        if self._client is not None:
            return self._client.scrub(text)
        key = os.environ.get(self.config.api_key_env)  # nothing asked yet: scrub with the key the client would read
        return text.replace(key, "***") if key else text


def _completion(response) -> Completion:
    """The text and token counts of a chat completion. The client does not validate the body, so a reply that
    is JSON but no chat completion (`[1]`, `{"choices": "x"}`, a number as content) shows up here as odd
    attributes: a failed attempt, retried like a 5xx, never a crash."""
    try:
        choices = response.choices
        text = choices[0].message.content if choices else None
        usage = response.usage
    except (AttributeError, TypeError, IndexError, KeyError):
        raise _Retryable("malformed reply (not a chat completion)", None) from None
    if text is None:
        raise _Retryable("empty completion", None)
    if not isinstance(text, str):
        raise _Retryable(f"malformed reply (content is {type(text).__name__}, not text)", None)
    return Completion(text, _count(getattr(usage, "prompt_tokens", 0)), _count(getattr(usage, "completion_tokens", 0)))


def _count(value) -> int:
    """A token count as reported, or 0 for anything that is not one (the verdict does not depend on it)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None, rate_limited: bool = False):
        super().__init__(reason)
        self.reason, self.retry_after, self.rate_limited = reason, retry_after, rate_limited


def _retry_after(response) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: fall back to our own back-off
    return None
