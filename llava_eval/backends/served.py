"""The served backend, `--model served:NAME --model-base-url URL`: a model behind an OpenAI-compatible endpoint
(vLLM's and SGLang's servers, TGI, hosted APIs), greedy (temperature 0, the task's `max_new_tokens`), with the
paper's exact inputs (exact_inputs.py) and many requests in flight (inflight.py).

Two modes. `chat` (default): POST {base}/chat/completions with the turns as OpenAI messages, images as PNG data
URLs where the `<image>` placeholders were; launched with the shipped chat template (docs/serving.md), the
server renders the paper's prompt. `generate`: SGLang's native POST {base}/generate with the prompt rendered
here (`text`, no BOS: the server's tokenizer adds it) and the images (`image_data`); the OpenAI completions
API has no standard field for images. The key comes only from the environment variable named by
`--model-api-key-env` (no Authorization header without one); a URL with credentials is refused; HTTPS
certificates are verified.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections import deque
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from llava_model.conversation import get_template, render
from llava_types import USER, GenerationSettings, Message, Request, Unanswered, UserError, digest

from ..judge.config import ENV_NAME
from ..redact import looks_secret
from .entry import BackendEntry, BackendOptions
from .exact_inputs import DEFAULT_IMAGE_SIZE, ImageEncoder, chat_messages, describe_preprocessing, with_pil_images
from .http_pool import ConnectionPool, ReplyTooLarge
from .inflight import Dispatcher, Refused, Retry, SetupError, Window

NAME = "served"
MODES = ("chat", "generate")
PATHS = {"chat": "/chat/completions", "generate": "/generate"}
WIDE_WINDOW = 16  # in-flight requests from which image encoding moves to worker processes


def check_endpoint(base_url: str | None, api_key_env: str | None) -> None:
    """Refuse a missing or credential-bearing URL and a key where the variable's name belongs; the message
    never repeats a value that may be a secret."""
    if api_key_env is not None and (not ENV_NAME.fullmatch(api_key_env) or looks_secret(api_key_env)):
        raise UserError("--model-api-key-env must name an environment variable (letters, digits, _), not hold a "
                        "key; the value given is not shown")
    if not base_url:
        raise UserError("--model served:NAME needs --model-base-url, the server's OpenAI-compatible base URL "
                        "(e.g. http://127.0.0.1:8000/v1)")
    try:
        parts = urlsplit(base_url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if looks_secret(base_url) or parts is None or parts.username is not None or parts.password is not None:
        raise UserError("--model-base-url must be a plain URL without credentials (user:password@, key "
                        "parameters); put the key in an environment variable and name it with --model-api-key-env. "
                        "The value given is not shown")
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or parts.query or parts.fragment:
        raise UserError(f"--model-base-url {base_url!r} must be http(s)://HOST[:PORT][/PATH] without a query")


def encoding_processes(options: BackendOptions) -> int:
    """Processes that prepare and encode the images: none for a small window (tests, a rate-limited API: the
    requests' threads have CPU to spare), else one per two cores, at most four."""
    if options.max_in_flight < WIDE_WINDOW:
        return 0
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def public_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class Endpoint:
    """One HTTP endpoint (http_pool.py); the request's fate by the reply's status: Retry for what another try
    may fix (429, 5xx, timeouts, dropped connections, a body that is not JSON), Refused for this request alone
    (other 4xx), SetupError for everything (401, 403, 404, an untrusted certificate, a redirect)."""

    def __init__(self, base_url: str, api_key_env: str | None, timeout: float):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key_env is not None:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise UserError(f"the served model needs an API key in the environment variable {api_key_env}, "
                                "which is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.url, self.api_key_env, self.timeout = public_url(base_url), api_key_env, timeout
        self.pool = ConnectionPool(self.url, timeout, headers)

    def post(self, path: str, body: dict):
        """The reply's JSON value."""
        try:
            reply = self.pool.post(path, json.dumps(body).encode())
        except TimeoutError:
            raise Retry(f"no answer within {self.timeout:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise SetupError(f"{self.url}: TLS certificate not trusted ({exc.verify_message})") from None
        except ReplyTooLarge as exc:
            raise Refused(str(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Retry(f"cannot reach {self.url} ({type(exc).__name__})") from None
        status = reply.status
        if status == 429:
            raise Retry("429 rate limited", retry_after(reply.headers), rate_limited=True)
        if status >= 500 or status == 408:
            raise Retry(f"server error {status}", retry_after(reply.headers))
        if status in (401, 403):
            raise SetupError(f"{self.url} refused the key in {self.api_key_env or '(no key given)'} ({status})")
        if status == 404:
            raise SetupError(f"{self.url}{path} or the model was not found (404)")
        if 300 <= status < 400:
            raise SetupError(f"{self.url} redirects ({status}) to {_short(reply.headers.get('location'))}; give "
                             "that URL as --model-base-url")
        if status != 200:
            raise Refused(f"HTTP {status} {_short(reply.body.decode('utf-8', 'replace'))}")
        try:
            return json.loads(reply.body)
        except (ValueError, RecursionError):
            raise Retry("malformed reply (not JSON)") from None


def retry_after(headers) -> float | None:
    """Seconds the server asks us to wait (retry-after-ms first), capped at 10 minutes; None when it does not."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name))
        except (TypeError, ValueError):
            continue  # absent, or an HTTP date: our own back-off
        if value >= 0:
            return min(value * scale, 600.0)
    return None


def _short(text, width: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def answer_text(reply, mode: str) -> str:
    """The answer in a reply, stripped as the original scripts strip it; a reply of another shape is a failed
    attempt (retried), never an answer. Reference: llava/eval/model_vqa_loader.py (`outputs.strip()`)."""
    try:
        text = reply["choices"][0]["message"]["content"] if mode == "chat" else reply["text"]
    except (KeyError, IndexError, TypeError):
        raise Retry(f"malformed reply (not a {'chat completion' if mode == 'chat' else 'generate reply'})") from None
    if not isinstance(text, str):
        raise Retry(f"malformed reply (the answer is {type(text).__name__}, not text)")
    return text.strip()


class ServedBackend:
    """`Backend` over an endpoint: answers a chunk's requests concurrently, ordered by image."""

    def __init__(self, model: str, options: BackendOptions, endpoint: Endpoint | None = None):
        check_endpoint(options.base_url, options.api_key_env)
        if options.served_mode not in MODES:
            raise UserError(f"unknown --served-mode {options.served_mode!r}; valid: {', '.join(MODES)}")
        self.model, self.mode = model, options.served_mode
        self.template = get_template(options.template or "vicuna_v1")
        self.image_mode = options.image_mode or "pad"
        self.encoder = ImageEncoder(options.image_size or DEFAULT_IMAGE_SIZE, processes=encoding_processes(options))
        self.endpoint = endpoint or Endpoint(options.base_url, options.api_key_env, options.request_timeout)
        self.window = Window(options.max_in_flight)
        self.dispatcher = Dispatcher(self.window, options.request_retries)
        self.source = f"{NAME}:{model}"
        self.chunk_size = 8 * options.max_in_flight  # eight windows: a crash loses at most these answers

    def prompt(self, request: Request) -> str:
        return render(self.template, request.messages, add_generation_prompt=True)

    def body(self, request: Request, keys: tuple = ()) -> dict:
        """The request's JSON body; `keys`: its images' `ImageEncoder.key`s when already known."""
        mode = request.image_mode or self.image_mode
        keys = keys or (None,) * len(request.images)
        urls = [self.encoder.url(image, mode, key) for image, key in zip(request.images, keys, strict=True)]
        cap = request.settings.max_new_tokens
        if self.mode == "generate":
            return {"text": self.prompt(request), "image_data": urls,
                    "sampling_params": {"temperature": 0.0, "max_new_tokens": cap}}
        return {"model": self.model, "messages": chat_messages(request, urls), "temperature": 0.0, "top_p": 1.0,
                "max_tokens": cap}

    def ask(self, body: dict) -> str:
        return answer_text(self.endpoint.post(PATHS[self.mode], body), self.mode)

    def generate(self, requests: list[Request]) -> list[str | Unanswered]:
        return next(iter(self.generate_stream([requests])))

    def generate_stream(self, chunks: Iterable[list[Request]]) -> Iterator[list[str | Unanswered]]:
        """Each chunk's answers in request order, chunk by chunk, the next chunk's requests already going out
        while the caller stores this one's answers (the window stays full across chunks)."""
        orders: deque = deque()

        def jobs():
            for requests in chunks:
                requests = [with_pil_images(request) for request in requests]
                keys = self._image_keys(requests)
                # The questions on one image go out next to each other (in order of first appearance), so the
                # server's prefix cache holds an image while its questions arrive.
                first: dict = {}
                group = [first.setdefault(key, index) for index, key in enumerate(keys)]
                order = sorted(range(len(requests)), key=lambda index: (group[index], index))
                orders.append(order)
                yield [(requests[i], keys[i]) for i in order]

        for answers in self.dispatcher.stream(jobs(), self.ask, prepare=lambda job: self.body(*job)):
            order, out = orders.popleft(), [None] * len(answers)
            for position, index in enumerate(order):
                out[index] = answers[position]
            yield out

    def _image_keys(self, requests: list[Request]) -> list[tuple]:
        """Each request's image keys, each image object hashed once (the runner hands the questions on one
        image the same object); equal keys mean equal pixels."""
        known: dict[int, bytes] = {}  # by id(): the requests hold every image for the call's duration
        out = []
        for request in requests:
            for image in request.images:
                if id(image) not in known:
                    known[id(image)] = self.encoder.key(image)
            out.append(tuple(known[id(image)] for image in request.images))
        return out

    def probe(self) -> None:
        """One tiny request: an unreachable server, a wrong key or model name stops here, before any work."""
        probe = Request("probe", (Message(USER, "ping"),), settings=GenerationSettings(max_new_tokens=1))
        result = Dispatcher(Window(1), retries=2).run([probe], self.ask, prepare=self.body)[0]
        if isinstance(result, Unanswered):
            raise SetupError(f"served model {self.model!r} at {self.endpoint.url} unusable: {result.reason}")

    def fingerprint(self) -> str:
        """Backend, model name, server host (no credentials; not the port, which a restarted server may change),
        mode, template and image preprocessing."""
        return digest(NAME, self.model, urlsplit(self.endpoint.url).hostname, self.mode, self.template.name,
                      self.image_mode, describe_preprocessing(self.image_mode, self.encoder.size))

    def record(self) -> dict:
        return {"backend": NAME, "device": "served", "served_model": self.model, "endpoint": self.endpoint.url,
                "served_mode": self.mode, "template": self.template.name, "image_mode": self.image_mode,
                "preprocessing": describe_preprocessing(self.image_mode, self.encoder.size),
                "max_in_flight": self.window.limit}


def open_served(model: str, options: BackendOptions) -> ServedBackend:
    backend = ServedBackend(model, options)
    backend.probe()
    return backend


ENTRY = BackendEntry(open=open_served)
