"""HTTP/1.1 keep-alive connections to one server, pooled across threads, through the standard library's
`http.client`: it costs a fifth of the openai client's CPU per request (measured: 0.11 vs 0.52 ms), and a
client's CPU per request is what bounds a served run's rate. TLS certificates and host names are verified
(`ssl.create_default_context`); an `http://` proxy from the environment (HTTP_PROXY / HTTPS_PROXY, NO_PROXY) is
used as curl would; a reply larger than `MAX_REPLY` is refused rather than read into memory.
"""

from __future__ import annotations

import http.client
import queue
import ssl
import urllib.request
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from llava_types import UserError

MAX_REPLY = 16 * 2**20  # bytes; an answer of 1,024 tokens is a few kilobytes


class ReplyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes


class ConnectionPool:
    """POSTs to `base_url` + path; idle connections are kept for the next request of any thread."""

    def __init__(self, base_url: str, timeout: float, headers: dict):
        parts = urlsplit(base_url)
        self.https, self.host = parts.scheme == "https", parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path, self.timeout, self.headers = parts.path.rstrip("/"), timeout, headers
        self.context = ssl.create_default_context() if self.https else None
        self.proxy = _proxy(parts.scheme, self.host)
        self.idle: queue.LifoQueue = queue.LifoQueue()

    def _connect(self) -> http.client.HTTPConnection:
        if self.proxy and self.https:  # CONNECT through the proxy, TLS with the server inside the tunnel
            conn = http.client.HTTPSConnection(*self.proxy, timeout=self.timeout, context=self.context)
            conn.set_tunnel(self.host, self.port)
            return conn
        if self.proxy:
            return http.client.HTTPConnection(*self.proxy, timeout=self.timeout)
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, path: str, payload: bytes) -> Reply:
        target = self.path + path
        if self.proxy and not self.https:  # a plain-HTTP proxy takes the absolute URL
            target = f"http://{self.host}:{self.port}{target}"
        for attempt in range(2):
            try:
                conn, reused = self.idle.get_nowait(), True
            except queue.Empty:
                conn, reused = self._connect(), False
            try:
                conn.request("POST", target, body=payload, headers=self.headers)
                response = conn.getresponse()
                body = response.read(MAX_REPLY + 1)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle connection: once more on a new one
                raise
            except BaseException:
                conn.close()
                raise
            if len(body) > MAX_REPLY:
                conn.close()
                raise ReplyTooLarge(f"reply larger than {MAX_REPLY:,} bytes")
            if response.will_close:
                conn.close()
            else:
                self.idle.put(conn)
            return Reply(response.status, response.headers, body)
        raise AssertionError("unreachable")  # pragma: no cover


def _proxy(scheme: str, host: str) -> tuple[str, int] | None:
    """(host, port) of the proxy the environment names for this URL, or None (no proxy, or NO_PROXY)."""
    url = urllib.request.getproxies().get(scheme)
    if not url or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or parts.username is not None or not parts.hostname:
        raise UserError(f"the {scheme} proxy in the environment is not a plain http://HOST:PORT proxy; served "
                        "models support only those (set NO_PROXY for the server's host to go direct)")
    return parts.hostname, parts.port or 80
