"""The webhook at the end of an unattended run (`--notify URL`): a POST of the run's JSON.

Delivery is best effort within a hard bound: connection errors, timeouts, 5xx, 408 and 429 are
retried with exponential backoff; other answers are final. The whole call never takes longer than
its bound, even against a receiver that accepts a connection and then never answers, or answers
one byte at a time: a watchdog shuts the socket when the attempt's time is up. Certificates are
verified on https (the system's trust store, or `ca_file`); a certificate error is not retried.

The body is scrubbed again here (the caller should already pass a scrubbed document): the given
secrets, a password in the URL, and every field named like a password, secret or token become
`********`. The result says what happened (delivered, attempts, last status, last error) for the
caller to journal; a failed notification never raises and never changes a run's exit code.
Retries may deliver twice: every attempt carries the same `Idempotency-Key` for receivers that
deduplicate.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from remediate import __version__
from remediate.errors import InputError
from remediate.scrub import Scrubber

DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = 1.0
MAX_RESPONSE_BYTES = 64 * 1024
_RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class NotifyResult:
    """What became of one notification."""

    delivered: bool
    url: str
    """The URL without its secrets: scheme, host and port; path and query are not shown."""
    attempts: int
    status: int | None
    """The HTTP status of the last answer (None: no answer)."""
    last_error: str | None
    elapsed: float
    bound: float
    """The most the call was allowed to take, in seconds."""

    def to_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "url": self.url,
            "attempts": self.attempts,
            "status": self.status,
            "last_error": self.last_error,
            "elapsed_seconds": round(self.elapsed, 3),
            "bound_seconds": round(self.bound, 3),
        }

    def summary(self) -> str:
        """One line for people."""
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if self.delivered:
            return f"notification delivered to {self.url} (HTTP {self.status}, {tries})"
        return f"notification to {self.url} failed after {tries}: {self.last_error}"


def check_notify_url(url: str) -> str:
    """Refuse a URL that can never be notified (call it before the run starts); returns it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"--notify {redact_url(url)!r} is not an http:// or https:// URL with a host",
            reference="notify-url-invalid",
            hint="e.g. --notify https://hooks.example.com/remediate",
        )
    try:
        parts.port  # noqa: B018 (a bad port raises on access)
    except ValueError:
        raise InputError(
            f"--notify {redact_url(url)!r} has an invalid port", reference="notify-url-invalid"
        ) from None
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise InputError(
            "--notify URL contains spaces or control characters", reference="notify-url-invalid"
        )
    return url


def redact_url(url: str) -> str:
    """`scheme://host[:port]` plus `/…` when there was more: webhook paths and queries often hold
    tokens, and a user:password may precede the host."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    more = "/…" if parts.path not in ("", "/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{more}"


def notify(
    url: str,
    document: Mapping[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
    secrets: Collection[str] = (),
    ca_file: str | None = None,
) -> NotifyResult:
    """POST `document` as JSON to `url`. Each attempt gets at most `timeout` seconds; attempt n
    waits `backoff * 2**(n-2)` seconds after the one before. The whole call takes at most
    `attempts * timeout` plus the waits (the result's `bound`). Never raises for delivery."""
    attempts = max(1, attempts)
    bound = attempts * timeout + sum(backoff * 2**n for n in range(attempts - 1))
    started = time.monotonic()
    deadline = started + bound
    shown = redact_url(url)

    def result(delivered: bool, tries: int, status: int | None, error: str | None) -> NotifyResult:
        return NotifyResult(
            delivered, shown, tries, status, error, time.monotonic() - started, bound
        )

    try:
        check_notify_url(url)
    except InputError as error:
        return result(False, 0, None, error.message)
    parts = urlsplit(url)
    password = unquote(parts.password or "")
    scrubber = Scrubber([*secrets, password])
    body = json.dumps(scrubber.data(document), ensure_ascii=False, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"remediate/{__version__}",
        "Idempotency-Key": hashlib.sha256(body).hexdigest()[:32],
    }
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    status: int | None = None
    last_error: str | None = None
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            pause = backoff * 2 ** (attempt - 2)
            if time.monotonic() + pause >= deadline:
                return result(False, attempt - 1, status, last_error)
            time.sleep(pause)
        attempt_end = min(time.monotonic() + timeout, deadline)
        outcome = _post(parts, body, headers, attempt_end, ca_file)
        status, last_error = outcome.status, outcome.error
        if last_error is None:
            return result(True, attempt, status, None)
        if not outcome.retry:
            return result(False, attempt, status, last_error)
    return result(False, attempts, status, last_error)


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None
    retry: bool


def _post(
    parts: Any, body: bytes, headers: Mapping[str, str], end: float, ca_file: str | None
) -> _Outcome:
    """One attempt, over by `end` (a monotonic time) whatever the receiver does."""
    remaining = end - time.monotonic()
    if remaining <= 0:
        return _Outcome(None, "no time left for another attempt", False)
    host, port = parts.hostname, parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        connection = http.client.HTTPSConnection(host, port, timeout=remaining, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=remaining)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timed_out = threading.Event()

    def cut_off() -> None:
        # A receiver that trickles bytes never trips the socket timeout: shut the socket.
        timed_out.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(remaining, cut_off)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        answer = response.read(MAX_RESPONSE_BYTES)
    except ssl.SSLCertVerificationError as error:
        return _Outcome(None, f"the certificate was refused: {error.verify_message}", False)
    except (OSError, http.client.HTTPException) as error:
        if timed_out.is_set() or isinstance(error, TimeoutError | socket.timeout):
            return _Outcome(None, f"no complete answer within {remaining:.1f} s", True)
        return _Outcome(None, _describe(error), True)
    finally:
        watchdog.cancel()
        connection.close()
    if timed_out.is_set():  # cut off mid-answer: what arrived may be a fragment
        return _Outcome(None, f"no complete answer within {remaining:.1f} s", True)
    if 200 <= response.status < 300:
        return _Outcome(response.status, None, False)
    text = answer.decode("utf-8", errors="replace").strip().replace("\n", " ")[:200]
    retry = response.status >= 500 or response.status in _RETRIED_STATUSES
    detail = f": {text}" if text else ""
    return _Outcome(response.status, f"HTTP {response.status} {response.reason}{detail}", retry)


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "the connection was refused (is the receiver running?)"
    if isinstance(error, ConnectionResetError | http.client.RemoteDisconnected):
        return "the receiver closed the connection without an answer"
    if isinstance(error, socket.gaierror):
        return f"the host name cannot be resolved ({error.strerror})"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error})"
    return f"{type(error).__name__}: {error}"
