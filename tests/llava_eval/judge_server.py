"""A real HTTP server on 127.0.0.1 speaking the chat-completions API, scripted per request (good verdicts, 429
with Retry-After, 500, answers slower than the timeout, malformed verdicts, replies that are no chat
completion), for the judge's tests. `serve()` yields its state: url, script, the verdict function and every
request seen (in `state["script"].requests`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tasks.mmvet import RETRY_SUFFIX


def verdict_for(body: dict) -> str:
    """The good verdict for a request: a function of its content (without MM-Vet's retry suffix)."""
    content = body["messages"][-1]["content"].removesuffix(RETRY_SUFFIX)
    h = int(hashlib.sha256(content.encode()).hexdigest(), 16)
    if body["max_tokens"] == 3:  # MM-Vet grader
        return ("0.0", "0.5", "1.0", "0.3")[h % 4]
    return f"{6 + h % 3} {3 + h % 7}\nAssistant 2 is judged against Assistant 1."


# HTTP 200 bodies that are no chat completion (or one with junk token counts, "bad-usage", still a verdict).
MALFORMED = {"notjson": b"<html>upstream busy</html>", "empty": b"{}", "choices-str": b'{"choices": "x"}',
             "list": b"[1]",
             "content-int": b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]}'}


class Script:
    """What the server does with the n-th request carrying a given content: a list of actions, the last
    one repeated. Actions: "ok", "429", "500", "slow", "bad" (malformed verdict), "401", "404", a key of
    MALFORMED (that body with status 200) and "bad-usage" (a good verdict with junk token counts)."""

    def __init__(self, plan=("ok",), default=None):
        self.plan, self.default = list(plan), default
        self.seen: dict[str, int] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def action(self, body) -> str:
        content = body["messages"][-1]["content"]
        if content == "ping":
            return self.default or "ok"
        key = content.removesuffix(RETRY_SUFFIX)
        with self.lock:
            n = self.seen.get(key, 0)
            self.seen[key] = n + 1
        return self.plan[min(n, len(self.plan) - 1)]


def _handler(state: dict):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script = state["script"]
            with script.lock:
                script.requests.append({"auth": self.headers.get("Authorization"), "body": body})
            action = script.action(body)
            if action == "slow":
                time.sleep(1.0)
                action = "ok"
            if action in ("429", "500", "401", "404"):
                payload = json.dumps({"error": {"message": f"scripted {action}", "type": "x"}}).encode()
                self.send_response(int(action))
                if action == "429":
                    self.send_header("retry-after-ms", "20")
                self._send(payload)
                return
            text = "Sorry, I cannot." if action == "bad" else state["verdict"](body)
            usage = {"prompt_tokens": "many", "completion_tokens": -1} if action == "bad-usage" else {
                "prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
            payload = MALFORMED.get(action) or json.dumps({
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage}).encode()
            try:
                self.send_response(200)
                self._send(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (timeout test)

        def _send(self, payload: bytes) -> None:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextlib.contextmanager
def serve(verdict=verdict_for):
    """The running server's state: url, script (replaceable) and verdict (request body -> reply text)."""
    state = {"script": Script(), "verdict": verdict}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
