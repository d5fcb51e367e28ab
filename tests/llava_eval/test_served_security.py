"""Keys and endpoints of served models: the key comes only from the environment variable named by
--model-api-key-env and is sent only to that server, never written to the run; a key given in its place, a URL
with credentials or of another scheme is one error line that does not repeat it; HTTPS certificates are
verified; an unreachable server, a rejected key or an unknown model stop the run before any work."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from llava_eval.backends import inflight
from llava_eval.cli import main
from tests.llava_eval.served_server import Server, _handler, serve

KEY = "sk-served0123456789abcdefghijklmnop"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(inflight, "BACKOFF", 0.01)


def run(out: Path, *options):
    return CliRunner().invoke(main, ["run", "--model", "served:m", "--tasks", "pope", "--limit", "2", "--out",
                                     str(out), "--no-progress", *options])


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and not any("Traceback" in x for x in lines), result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def test_the_key_is_read_from_the_environment_sent_to_the_server_and_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVED_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai0123456789abcdefghijklmnop")
    out = tmp_path / "run"
    with serve() as server:
        result = run(out, "--model-base-url", server.url, "--model-api-key-env", "SERVED_KEY")
    assert result.exit_code == 0, result.output
    assert {s.auth for s in server.seen} == {f"Bearer {KEY}"}
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
    assert json.loads((out / "config.json").read_text())["endpoint"] == server.url


def test_without_a_key_variable_no_key_is_sent_not_even_openais(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai0123456789abcdefghijklmnop")
    with serve() as server:
        result = run(tmp_path / "run", "--model-base-url", server.url)
    assert result.exit_code == 0, result.output
    assert {s.auth for s in server.seen} == {None}


@pytest.mark.parametrize("options,fragment,secret", [
    (["--model-api-key-env", KEY], "--model-api-key-env must name an environment variable", KEY),
    (["--model-base-url", "http://user:hunter2@127.0.0.1:8000/v1"], "without credentials", "hunter2"),
    (["--model-base-url", "http://127.0.0.1:8000/v1?api_key=abc123secret"], "without credentials", "abc123secret"),
    (["--model-base-url", "ftp://127.0.0.1/v1"], "must be http(s)://HOST[:PORT][/PATH]", None),
    ([], "needs --model-base-url", None),
    (["--model-base-url", "http://127.0.0.1:1/v1", "--model-api-key-env", "UNSET_SERVED_KEY"],
     "environment variable UNSET_SERVED_KEY, which is not set", None),
])
def test_bad_endpoints_and_keys_are_one_line_that_never_repeats_a_secret(tmp_path, monkeypatch, options, fragment,
                                                                         secret):
    monkeypatch.delenv("UNSET_SERVED_KEY", raising=False)
    result = run(tmp_path / "run", *options)
    line = one_line_error(result, fragment)
    assert secret is None or secret not in result.output, line
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("status,fragment", [
    ("401", "refused the key in (no key given) (401)"),
    ("404", "/chat/completions or the model was not found (404)"),
])
def test_a_rejected_key_or_unknown_model_stops_before_any_work(tmp_path, status, fragment):
    with serve(every=status) as server:
        result = run(tmp_path / "run", "--model-base-url", server.url)
    one_line_error(result, fragment)
    assert len(server.seen) == 1 and not (tmp_path / "run" / "config.json").exists()


def test_an_unreachable_server_stops_before_any_work(tmp_path):
    result = run(tmp_path / "run", "--model-base-url", "http://127.0.0.1:9/v1")
    one_line_error(result, "served model 'm' at http://127.0.0.1:9/v1 unusable", "cannot reach")
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_certificates_are_verified(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Server()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = run(tmp_path / "run", "--model-base-url", f"https://127.0.0.1:{httpd.server_address[1]}/v1")
    finally:
        httpd.shutdown()
        httpd.server_close()
    one_line_error(result, "TLS certificate not trusted")


def test_a_redirect_stops_before_any_work_naming_where_it_points(tmp_path):
    with serve(every="redirect") as server:
        result = run(tmp_path / "run", "--model-base-url", server.url)
    one_line_error(result, "redirects (301) to https://elsewhere.invalid/v1; give that URL as --model-base-url")


def test_an_oversized_reply_is_not_read_and_the_answer_is_missing(tmp_path, monkeypatch):
    from llava_eval.backends import http_pool

    monkeypatch.setattr(http_pool, "MAX_REPLY", 1024)
    with serve(plan=lambda seen, n: "huge") as server:
        result = run(tmp_path / "run", "--model-base-url", server.url)
    assert result.exit_code == 3, result.output
    assert len(server.answered()) == 2  # refused, not retried
    metrics = json.loads((tmp_path / "run" / "pope" / "metrics.json").read_text())["metrics"]
    assert set(metrics["unanswered"].values()) == {"refused by the server: reply larger than 1,024 bytes"}


def test_an_http_proxy_from_the_environment_is_used(tmp_path, monkeypatch):
    with serve() as server:
        monkeypatch.setenv("HTTP_PROXY", server.root)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        result = run(tmp_path / "run", "--model-base-url", "http://served.invalid:8000/v1")
    assert result.exit_code == 0, result.output
    assert {s.target for s in server.seen} == {"http://served.invalid:8000/v1/chat/completions"}


def test_a_proxy_with_credentials_is_one_line_that_does_not_repeat_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://me:hunter2@proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    result = run(tmp_path / "run", "--model-base-url", "https://served.invalid/v1")
    one_line_error(result, "the https proxy in the environment is not a plain http://HOST:PORT proxy")
    assert "hunter2" not in result.output
