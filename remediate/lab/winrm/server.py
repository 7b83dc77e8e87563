"""The lab's WinRM listener: HTTP 5985 and HTTPS 5986 on the Genesys host's address.

HTTP/1.1 with keep-alive, one thread per connection. Authentication is Basic (checked on every
request) or NTLM/Negotiate through pyspnego's acceptor (it belongs to the TCP connection, as on
Windows); after NTLM, messages may be wrapped as `multipart/encrypted` with
`application/HTTP-SPNEGO-session-encrypted`, and answers to wrapped requests are wrapped the same
way. Every response carries a Content-Length and is written with one `sendall` on a TCP_NODELAY
socket. Channel binding tokens are not checked (Windows' CbtHardeningLevel=None). The lab's faults
are read on every request.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import spnego
import spnego.exceptions

from remediate.lab.layout import GENESYS_HOST_NAME, LabLayout, active_faults
from remediate.lab.tls import ensure_certificates
from remediate.lab.windows import WindowsHost
from remediate.lab.winrm.wsman import (
    ShellService,
    fault_envelope,
    internal_error_fault,
    message_id_of,
)

MAX_HEADER_BYTES = 65536
MAX_BODY_BYTES = 64 * 1024 * 1024
IDLE_SECONDS = 120.0  # HTTP.sys drops idle connections after 2 minutes
STALL_POLL_SECONDS = 0.1
BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE = (
    f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
)
SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
CHALLENGES = ("Negotiate", 'Basic realm="WSMAN"')
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}


class _ConnectionClosed(Exception):
    pass


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str | None = None
    authenticate: list[str] = field(default_factory=list)
    close: bool = False

    def serialize(self) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Error')}",
            "Server: Microsoft-HTTPAPI/2.0",
        ]
        lines.extend(f"WWW-Authenticate: {value}" for value in self.authenticate)
        if self.content_type:
            lines.append(f"Content-Type: {self.content_type}")
        lines.append(f"Content-Length: {len(self.body)}")
        if self.close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class _Connection:
    """One client connection: its buffer and its authentication."""

    def __init__(self, endpoint: WinRMEndpoint, sock: socket.socket, scheme: str) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.scheme = scheme
        self.buffer = bytearray()
        self.context: Any = None  # pyspnego acceptor while NTLM/Negotiate is in progress or done
        self.context_scheme = ""
        self.authenticated = False

    # Reading

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _ConnectionClosed
        self.buffer.extend(data)

    def read_request(self) -> HttpRequest:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise _ConnectionClosed
            self._fill()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _ConnectionClosed
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        else:
            length = int(headers.get("content-length", "0") or 0)
            if length > MAX_BODY_BYTES:
                raise _ConnectionClosed
            while len(self.buffer) < length:
                self._fill()
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        return HttpRequest(parts[0], parts[1], headers, body)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            while b"\r\n" not in self.buffer:
                self._fill()
            size_line, _, rest = bytes(self.buffer).partition(b"\r\n")
            self.buffer = bytearray(rest)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            while len(self.buffer) < size + 2:
                self._fill()
            body.extend(self.buffer[:size])
            del self.buffer[: size + 2]
            if size == 0:
                return bytes(body)
            if len(body) > MAX_BODY_BYTES:
                raise _ConnectionClosed

    def send(self, response: HttpResponse) -> None:
        self.sock.sendall(response.serialize())

    # Serving

    def serve(self) -> None:
        while not self.endpoint.stopping.is_set():
            request = self.read_request()
            faults = active_faults(self.endpoint.layout)
            if "winrm-drop" in faults:
                return
            if "winrm-stall" in faults:
                self.stall()
                return
            response = self.respond(request, faults)
            self.send(response)
            if response.close or request.headers.get("connection", "").lower() == "close":
                return

    def stall(self) -> None:
        """Hold the request unanswered until the client hangs up or the fault is switched off."""
        self.sock.settimeout(STALL_POLL_SECONDS)
        while not self.endpoint.stopping.is_set() and "winrm-stall" in active_faults(
            self.endpoint.layout
        ):
            try:
                if not self.sock.recv(65536):
                    return
            except (TimeoutError, ssl.SSLWantReadError):
                continue

    def respond(self, request: HttpRequest, faults: frozenset[str]) -> HttpResponse:
        if request.path.split("?")[0].rstrip("/").lower() != "/wsman":
            return HttpResponse(404)
        if request.method != "POST":
            return HttpResponse(405)
        refuse_all = "winrm-401" in faults
        final_token: list[str] = []
        authorization = request.headers.get("authorization", "")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            scheme = scheme.lower()
            if scheme == "basic":
                if refuse_all or not self.endpoint.basic_valid(token.strip()):
                    return HttpResponse(401, authenticate=list(CHALLENGES))
            elif scheme in ("negotiate", "ntlm"):
                outcome = self.step(scheme, token.strip())
                if isinstance(outcome, HttpResponse):
                    return outcome
                if refuse_all:
                    # As a Windows host whose account is refused: the handshake runs, then 401.
                    self.context, self.authenticated = None, False
                    return HttpResponse(401, authenticate=list(CHALLENGES))
                final_token = outcome
            else:
                return HttpResponse(401, authenticate=list(CHALLENGES))
        elif refuse_all or not self.authenticated:
            self.context, self.authenticated = None, False
            return HttpResponse(401, authenticate=list(CHALLENGES))
        encrypted = (
            request.headers.get("content-type", "").lower().startswith("multipart/encrypted")
        )
        try:
            body = self.unwrap(request.body) if encrypted else request.body
        except (ValueError, spnego.exceptions.SpnegoError):
            return HttpResponse(400, close=True)
        if not body:
            return HttpResponse(200, authenticate=final_token)
        if "winrm-500" in faults:
            status, answer = (
                500,
                fault_envelope(internal_error_fault(), message_id_of(body), GENESYS_HOST_NAME),
            )
        else:
            status, answer = self.endpoint.shells.handle(body, self.endpoint.url(self.scheme))
        if encrypted:
            return HttpResponse(status, self.wrap(answer), ENCRYPTED_CONTENT_TYPE, final_token)
        return HttpResponse(status, answer, SOAP_CONTENT_TYPE, final_token)

    def step(self, scheme: str, token: str) -> HttpResponse | list[str]:
        """One NTLM/Negotiate leg: a 401 with the next challenge, or the final token (if any)."""
        title = "NTLM" if scheme == "ntlm" else "Negotiate"
        try:
            incoming = base64.b64decode(token)
            if self.context is None or self.context.complete or self.context_scheme != scheme:
                self.context = spnego.server(
                    hostname=GENESYS_HOST_NAME, service="http", protocol="negotiate"
                )
                self.context_scheme = scheme
                self.authenticated = False
            outgoing = self.context.step(incoming)
        except (spnego.exceptions.SpnegoError, ValueError):
            self.context, self.authenticated = None, False
            return HttpResponse(401, authenticate=list(CHALLENGES))
        if not self.context.complete:
            return HttpResponse(
                401, authenticate=[f"{title} {base64.b64encode(outgoing or b'').decode()}"]
            )
        self.authenticated = True
        return [f"{title} {base64.b64encode(outgoing).decode()}"] if outgoing else []

    def unwrap(self, payload: bytes) -> bytes:
        if self.context is None or not self.context.complete:
            raise ValueError("encrypted message on a connection without NTLM")
        message = b""
        parts = [part for part in payload.split(BOUNDARY + b"\r\n") if part]
        for index in range(0, len(parts) - 1, 2):
            header, data = parts[index], parts[index + 1]
            expected = int(header.split(b"Length=")[1].split(b"\r\n")[0])
            data = data.removesuffix(BOUNDARY + b"--\r\n")
            data = data.split(b"application/octet-stream\r\n", 1)[1]
            (signature_length,) = struct.unpack("<i", data[:4])
            signature = data[4 : 4 + signature_length]
            plain = self.context.unwrap(signature + data[4 + signature_length :]).data
            if len(plain) != expected:
                raise ValueError("encrypted message length mismatch")
            message += plain
        return message

    def wrap(self, message: bytes) -> bytes:
        sealed: bytes = self.context.wrap(message, encrypt=True).data
        signature, data = sealed[:16], sealed[16:]
        return (
            BOUNDARY + b"\r\n"
            b"\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(message)).encode()
            + b"\r\n"
            + BOUNDARY
            + b"\r\n"
            b"\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(signature))
            + signature
            + data
            + BOUNDARY
            + b"--\r\n"
        )


class WinRMEndpoint:
    """WinRM on `layout.addresses.genesys_host`, HTTP and HTTPS, backed by a WindowsHost."""

    def __init__(self, host: WindowsHost, layout: LabLayout) -> None:
        self.host = host
        self.layout = layout
        self.stopping = threading.Event()
        self.shells = ShellService(host, layout.credentials.winrm_user, GENESYS_HOST_NAME)
        self._listeners: list[tuple[socket.socket, str]] = []
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def url(self, scheme: str) -> str:
        address = self.layout.addresses
        port = address.winrm_https_port if scheme == "https" else address.winrm_http_port
        return f"{scheme}://{address.genesys_host}:{port}/wsman"

    def basic_valid(self, token: str) -> bool:
        try:
            user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        domain, _, name = user.rpartition("\\")
        credentials = self.layout.credentials
        return (
            domain.lower() in ("", ".", GENESYS_HOST_NAME.lower())
            and name.lower() == credentials.winrm_user.lower()
            and password == credentials.winrm_password
        )

    def _write_ntlm_users(self) -> None:
        """pyspnego's NTLM acceptor reads accounts from the file named by NTLM_USER_FILE."""
        credentials = self.layout.credentials
        if ":" in credentials.winrm_user + credentials.winrm_password:
            raise ValueError("the lab's WinRM user and password must not contain ':'")
        path = self.layout.run_dir / "winrm-ntlm-users"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            f"{domain}:{credentials.winrm_user}:{credentials.winrm_password}"
            for domain in ("", GENESYS_HOST_NAME)
        ]
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.environ["NTLM_USER_FILE"] = str(path)

    def start(self) -> None:
        self._write_ntlm_users()
        ensure_certificates(self.layout)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(self.layout.server_cert, self.layout.server_key)
        address = self.layout.addresses
        for port, scheme in (
            (address.winrm_http_port, "http"),
            (address.winrm_https_port, "https"),
        ):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((address.genesys_host, port))
            except OSError:
                listener.close()
                self.close()
                raise
            listener.listen(64)
            listener.settimeout(0.2)
            self._listeners.append((listener, scheme))
        for listener, scheme in self._listeners:
            thread = threading.Thread(
                target=self._accept, args=(listener, scheme), name=f"winrm-{scheme}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _accept(self, listener: socket.socket, scheme: str) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(client, scheme), name="winrm-connection", daemon=True
            ).start()

    def _serve(self, client: socket.socket, scheme: str) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.settimeout(IDLE_SECONDS)
        sock = client
        with self._lock:
            self._connections.add(client)
        try:
            if scheme == "https":
                assert self._tls is not None
                sock = self._tls.wrap_socket(client, server_side=True)
            _Connection(self, sock, scheme).serve()
        except (_ConnectionClosed, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with self._lock:
                self._connections.discard(client)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.stopping.set()
        for listener, _ in self._listeners:
            with contextlib.suppress(OSError):
                listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 0.8
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._listeners.clear()
        self._threads.clear()
        self.shells.close()
