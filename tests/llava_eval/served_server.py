"""A real HTTP server on 127.0.0.1 for the served backend's tests, speaking its two request forms: OpenAI chat
completions (`/v1/chat/completions`, the messages rendered with the shipped chat template, as vLLM/SGLang
launched with `--chat-template` render them) and SGLang's `/generate` (the raw prompt). It reads every request
as a server would - prompt bytes, images decoded from their data URLs, temperature, token cap, key - records it
in `seen`, notes what breaks the protocol in `problems`, and answers as scripted per (prompt, image): "ok",
"429" (with Retry-After), "500", "slow" (past the client's timeout), "drop" (connection closed), "400", "401",
"404", "redirect", "huge" (a 4 KiB body) or a malformed 200 body. It also serves as a plain-HTTP proxy to
itself. The answer is a function of prompt and pixels, so any two runs against it agree."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from PIL import Image

from llava_eval.backends.exact_inputs import template_file

BOS = "<s>"
MALFORMED = {"notjson": b"<html>upstream busy</html>", "empty": b"{}", "list": b"[1]",
             "choices-str": b'{"choices": "x"}',
             "content-int": b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]}'}


def answer_for(prompt: str, images: list[Image.Image]) -> str:
    """A deterministic answer: yes/no and a word, from the prompt and the pixels (with spaces to be stripped)."""
    h = hashlib.sha256(prompt.encode())
    for image in images:
        h.update(image.tobytes())
    n = int(h.hexdigest(), 16)
    return f"  {('Yes', 'No')[n % 2]}, word{n % 97}\n"


@dataclass
class Seen:
    path: str
    prompt: str
    images: list
    temperature: object
    max_tokens: object
    model: object
    auth: str | None
    started: float
    key: str = ""
    target: str = ""


@dataclass
class Server:
    """State of the running server. `plan(seen, n)` -> the action for the n-th request (0-based) with that
    (prompt, images) key, the backend's 1-token probe excepted; `every`: one action for every request, the probe
    included; `delay` is a service time in seconds for every request."""

    template: str = "vicuna_v1"
    plan: object = None
    every: str | None = None
    delay: float = 0.0
    slow: float = 1.0
    url: str = ""
    root: str = ""
    seen: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self) -> list:
        """The requests of the run (the backend's 1-token probe left out)."""
        return [s for s in self.seen if s.max_tokens != 1]

    def render(self, messages) -> str:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        template = env.from_string(template_file(self.template).read_text(encoding="utf-8"))
        text = template.render(messages=messages, add_generation_prompt=True, bos_token=BOS)
        if not text.startswith(BOS):
            self.problems.append(f"rendered prompt does not start with BOS: {text[:40]!r}")
        return text.removeprefix(BOS)


def _raise(message):
    raise jinja2.exceptions.TemplateError(message)


def decode_image(url, problems: list) -> Image.Image | None:
    prefix = "data:image/png;base64,"
    if not isinstance(url, str) or not url.startswith(prefix):
        problems.append(f"image is not a PNG data URL: {str(url)[:40]!r}")
        return None
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))
    image.load()
    if image.format != "PNG" or image.mode != "RGB":
        problems.append(f"image is {image.format} {image.mode}, not an RGB PNG")
    return image


def read_request(server: Server, path: str, body: dict, auth: str | None) -> Seen:
    """What a vLLM/SGLang server would make of the request; protocol breaks go to `server.problems`."""
    problems = server.problems
    if path == "/v1/chat/completions":
        messages = body.get("messages")
        images = []
        for message in messages:
            if isinstance(message["content"], list):
                for part in message["content"]:
                    if set(part) - {"type", "text", "image_url"}:
                        problems.append(f"unexpected content part fields {sorted(part)}")
                    if part["type"] == "image_url":
                        images.append(decode_image(part["image_url"]["url"], problems))
        return Seen(path, server.render(messages), images, body.get("temperature"), body.get("max_tokens"),
                    body.get("model"), auth, time.monotonic())
    if path == "/generate":
        params = body.get("sampling_params") or {}
        images = [decode_image(url, problems) for url in body.get("image_data") or []]
        return Seen(path, body.get("text"), images, params.get("temperature"), params.get("max_new_tokens"),
                    body.get("model"), auth, time.monotonic())
    problems.append(f"request to an unknown path {path}")
    return Seen(path, "", [], None, None, None, auth, time.monotonic())


def _handler(server: Server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers

        def log_message(self, *args):
            pass

        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            path = urlsplit(self.path).path  # a request through a proxy names the absolute URL
            seen = read_request(server, path, json.loads(raw), self.headers.get("Authorization"))
            seen.target = self.path
            with server.lock:
                seen.key = hashlib.sha256(seen.prompt.encode() + b"".join(
                    im.tobytes() for im in seen.images if im is not None)).hexdigest()
                n = server.counts.get(seen.key, 0)
                server.counts[seen.key] = n + 1
                server.seen.append(seen)
                server.in_flight += 1
                server.most_in_flight = max(server.most_in_flight, server.in_flight)
            try:
                self._answer(seen, server.every or (server.plan(seen, n) if server.plan and seen.max_tokens != 1
                                                    else "ok"))
            finally:
                with server.lock:
                    server.in_flight -= 1

        def _answer(self, seen: Seen, action: str) -> None:
            time.sleep(server.delay)
            if action == "slow":
                time.sleep(server.slow)
            if action == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if action == "huge":
                self.send_response(200)
                self._send(b'{"text": "' + b"x" * 4096 + b'"}')
                return
            if action == "redirect":
                self.send_response(301)
                self.send_header("Location", "https://elsewhere.invalid/v1")
                self._send(b"{}")
                return
            if action in ("429", "500", "400", "401", "404"):
                self.send_response(int(action))
                if action in ("429", "500"):
                    self.send_header("retry-after-ms", "20")
                self._send(json.dumps({"error": {"message": f"scripted {action}"}}).encode())
                return
            text = answer_for(seen.prompt, [im for im in seen.images if im is not None])
            reply = {"text": text, "meta_info": {}} if seen.path == "/generate" else {
                "id": "x", "object": "chat.completion", "created": 0, "model": seen.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
            self.send_response(200)
            self._send(MALFORMED.get(action) or json.dumps(reply).encode())

        def _send(self, payload: bytes) -> None:
            try:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (timeout test)

    return Handler


@contextlib.contextmanager
def serve(**settings):
    """A running server (`Server` fields as keyword arguments); `url` is the chat base URL, `root` SGLang's."""
    server = Server(**settings)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server.root = f"http://127.0.0.1:{httpd.server_address[1]}"
    server.url = server.root + "/v1"
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
