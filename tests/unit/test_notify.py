"""The webhook, against real HTTP servers on 127.0.11.1 in threads: delivery, retries, the bound
(a receiver that is down, one that never answers, one that trickles), https, secrets."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from remediate.errors import InputError
from remediate.lab.layout import LabAddresses, LabLayout
from remediate.lab.tls import ensure_certificates
from remediate.notify import check_notify_url, notify, redact_url

HOST = "127.0.11.1"
RUN = {
    "schema_version": 1,
    "kind": "apply-run",
    "run_id": "20261205T163000Z-5f2a",
    "status": "committed",
    "exit_code": 0,
    "dns": ["5001", "5002"],
}


class Receiver(ThreadingHTTPServer):
    """Records every request; answers with the statuses it is given, then 204."""

    daemon_threads = True

    def __init__(self, statuses: list[int]) -> None:
        super().__init__((HOST, 0), Handler)
        self.statuses = statuses
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/hooks/remediate"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, dict(self.headers.items()), body))
        status = self.server.statuses.pop(0) if self.server.statuses else 204
        text = b"receiver overloaded" if status >= 400 else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(list(getattr(request, "param", [])))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_delivers_the_runs_json(receiver: Receiver) -> None:
    result = notify(receiver.url, RUN, timeout=5, attempts=3, backoff=0.1)
    assert result.delivered and result.attempts == 1 and result.status == 204
    assert result.last_error is None
    ((path, headers, body),) = receiver.requests
    assert path == "/hooks/remediate"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("remediate/")
    assert json.loads(body) == RUN
    assert "delivered" in result.summary() and "HTTP 204" in result.summary()


@pytest.mark.parametrize("receiver", [[503, 500]], indirect=True)
def test_5xx_is_retried_with_one_idempotency_key(receiver: Receiver) -> None:
    started = time.monotonic()
    result = notify(receiver.url, RUN, timeout=5, attempts=3, backoff=0.2)
    assert result.delivered and result.attempts == 3 and result.status == 204
    assert time.monotonic() - started >= 0.2 + 0.4  # backoff doubled between attempts
    keys = {headers["Idempotency-Key"] for _, headers, _ in receiver.requests}
    assert len(receiver.requests) == 3 and len(keys) == 1


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_4xx_is_final(receiver: Receiver) -> None:
    result = notify(receiver.url, RUN, timeout=5, attempts=3, backoff=0.1)
    assert not result.delivered and result.attempts == 1 and result.status == 400
    assert result.last_error == "HTTP 400 Bad Request: receiver overloaded"
    assert "failed after 1 attempt: HTTP 400" in result.summary()


@pytest.mark.parametrize("receiver", [[503, 503, 503]], indirect=True)
def test_giving_up_reports_the_last_error(receiver: Receiver) -> None:
    result = notify(receiver.url, RUN, timeout=5, attempts=3, backoff=0.05)
    assert not result.delivered and result.attempts == 3 and result.status == 503
    assert result.last_error is not None and "HTTP 503" in result.last_error


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def test_a_receiver_that_is_down_is_tried_and_given_up_on() -> None:
    started = time.monotonic()
    result = notify(f"http://{HOST}:{free_port()}/x", RUN, timeout=2, attempts=3, backoff=0.1)
    assert not result.delivered and result.attempts == 3 and result.status is None
    assert result.last_error is not None and "refused" in result.last_error
    assert time.monotonic() - started < 2


@pytest.fixture
def silent_listener() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A receiver that accepts connections and never says a word."""
    server = socket.create_server((HOST, 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server, accepted
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    server.close()


def test_a_receiver_that_never_answers_cannot_hang_the_run(
    silent_listener: tuple[socket.socket, list[socket.socket]],
) -> None:
    server, accepted = silent_listener
    url = f"http://{HOST}:{server.getsockname()[1]}/x"
    started = time.monotonic()
    result = notify(url, RUN, timeout=0.5, attempts=2, backoff=0.1)
    elapsed = time.monotonic() - started
    assert not result.delivered and result.attempts == 2
    assert result.last_error is not None and "no complete answer within 0.5 s" in result.last_error
    assert elapsed <= result.bound + 0.3 and result.bound == pytest.approx(1.1)
    assert len(accepted) == 2


def test_a_receiver_that_trickles_is_cut_off_at_the_bound() -> None:
    server = socket.create_server((HOST, 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 1000:
                if stop.wait(0.05):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    result = notify(f"http://{HOST}:{server.getsockname()[1]}/", RUN, timeout=1, attempts=1)
    elapsed = time.monotonic() - started
    stop.set()
    thread.join(5)
    server.close()
    assert not result.delivered and result.last_error == "no complete answer within 1.0 s"
    assert 0.9 <= elapsed < 1.5


def test_secrets_never_reach_the_receiver(receiver: Receiver) -> None:
    document = {
        **RUN,
        "message": "GAX login as default with Lab-GAX-2b81d4! failed",
        "settings": {"genesys_gax_password": "anything", "api_token": "t0k3n"},
    }
    url = receiver.url.replace("http://", "http://hook:s3cr%40t@") + "/T00/B00/XXXXSECRET?sig=abc"
    result = notify(url, document, timeout=5, secrets=["Lab-GAX-2b81d4!"])
    assert result.delivered
    ((_, headers, body),) = receiver.requests
    text = body.decode()
    assert "Lab-GAX-2b81d4!" not in text and "t0k3n" not in text and "anything" not in text
    assert json.loads(body)["message"] == "GAX login as default with ******** failed"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"hook:s3cr@t").decode()
    # What the journal records of the URL: no password, no path token, no query.
    assert result.url == f"http://{HOST}:{receiver.server_address[1]}/…"
    assert "s3cr" not in json.dumps(result.to_json()) and "XXXX" not in result.summary()


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    layout = LabLayout(tmp_path / "tls", LabAddresses(genesys_host=HOST))
    ensure_certificates(layout)
    server = Receiver([])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(layout.server_cert, layout.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, layout.ca_cert
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_https_verifies_the_certificate(tls_receiver: tuple[Receiver, Path]) -> None:
    server, ca = tls_receiver
    url = server.url.replace("http://", "https://")
    trusted = notify(url, RUN, timeout=5, ca_file=str(ca))
    assert trusted.delivered and len(server.requests) == 1
    refused = notify(url, RUN, timeout=5, attempts=3, backoff=0.1)  # the system's trust store
    assert not refused.delivered and refused.attempts == 1  # not retried: it cannot improve
    assert refused.last_error is not None and "certificate was refused" in refused.last_error
    assert len(server.requests) == 1


def test_urls_are_checked_before_the_run_and_never_raise_after_it() -> None:
    assert check_notify_url("https://hooks.example.com/x") == "https://hooks.example.com/x"
    for bad in ("ftp://hooks.example.com/", "hooks.example.com/x", "http://", "http://h:99999/"):
        with pytest.raises(InputError) as caught:
            check_notify_url(bad)
        assert caught.value.reference == "notify-url-invalid"
    result = notify("ftp://hooks.example.com/", RUN)
    assert not result.delivered and result.attempts == 0
    assert result.last_error is not None and "not an http:// or https:// URL" in result.last_error


def test_redact_url() -> None:
    assert (
        redact_url("https://u:p@hooks.example.com:8443/a/b?t=1")
        == "https://hooks.example.com:8443/…"
    )
    assert redact_url("http://[::1]:8080/") == "http://[::1]:8080"
