"""A GAX-style REST API over the lab's configuration objects (DESIGN 2.2), on HTTP and HTTPS.

Every response carries `Content-Type: application/json` (but 204) and a Content-Length, and is
written in one send; connections are HTTP/1.1 keep-alive.

Session
  POST /gax/api/session/login
      body {"username": str, "password": str, "isPasswordEncrypted": false}
      200 {"username": "default"} with `Set-Cookie: JSESSIONID=<token>; Path=/gax; HttpOnly`
      401 wrong credentials; 400 malformed body (or isPasswordEncrypted true: the lab has no key)
  POST /gax/api/session/logout  200 {} and the session is gone
  Every other request needs the JSESSIONID cookie, else 401.

Objects (type is `CfgSwitch` or `CfgDN`)
  GET    /gax/api/cfg/objects?type=CfgDN&name=5002&brief=false
      200 [object, ...] (empty list when none matches; `name` optional; brief=true keeps only
      dbid, type, name)
  GET    /gax/api/cfg/objects/<type>/<dbid>     200 object, 404 unknown
  PUT    /gax/api/cfg/objects/<type>/<dbid>     body: the whole object (dbid optional, must match)
      200 the stored object; 400 malformed; 404 unknown; 409 duplicate name/number
  DELETE /gax/api/cfg/objects/<type>/<dbid>     204; 404 unknown; 409 a switch that still has DNs
  POST   /gax/api/cfg/objects                   body: a new object without dbid
      201 the stored object (with its dbid) and `Location: /gax/api/cfg/objects/<type>/<dbid>`

  A switch:
    {"dbid": 101, "type": "CfgSwitch", "name": "SIP_P", "state": "CFGEnabled", "tenantdbid": 1,
     "userproperties": {"property": [{"section": "sip", "key": "trusted-gateways",
                                       "value": "127.0.0.54"}, ...]}}
  A DN (dntype CFGExtension, CFGACDPosition or CFGTrunk; switchdbid names the switch):
    {"dbid": 204, "type": "CfgDN", "name": "5002", "number": "5002", "dntype": "CFGExtension",
     "switchdbid": 101, "state": "CFGEnabled", "tenantdbid": 1,
     "userproperties": {"property": [{"section": "TServer", "key": "contact",
                                       "value": "127.0.0.54:5060"}, ...]}}
  dbids are integers; annex values are strings; `state` is CFGEnabled or CFGDisabled (a disabled
  DN is "not configured or disabled in CME" to SIP Server). Unknown fields are refused (400).

Errors: {"status": <code>, "error": "<HTTP reason>", "message": "<what was wrong>"}.
Faults: `gax-500` answers every request 500; `gax-timeout` reads the request and answers nothing
until the fault is switched off (then answers normally) or the client goes away.

Changes are saved to cme.json at once; SIP Server sees them at its next start.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import select
import socket
import ssl
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from remediate.lab.genesys.cme import ConfigError, ConfigStore
from remediate.lab.genesys.registrar import ListenError
from remediate.lab.layout import LabCredentials

SESSION_COOKIE = "JSESSIONID"
OBJECTS_PATH = "/gax/api/cfg/objects"
FAULT_POLL_SECONDS = 0.1
MAX_BODY_BYTES = 1024 * 1024
IDLE_CONNECTION_SECONDS = 60.0

FaultReader = Callable[[], frozenset[str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        api: GaxApi,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.api = api
        self.tls = tls
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, client = self.socket.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            # The handshake runs in the connection's own thread (see _Handler.handle), so a slow
            # client cannot hold up accept().
            connection = self.tls.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, client


class GaxApi:
    """Sessions and request handling, shared by the HTTP and HTTPS listeners."""

    def __init__(
        self, store: ConfigStore, credentials: LabCredentials, faults: FaultReader
    ) -> None:
        self.store = store
        self.credentials = credentials
        self.faults = faults
        self.closing = threading.Event()
        self._sessions: set[str] = set()
        self._lock = threading.Lock()

    def login(self, body: Any) -> tuple[int, Any, str | None]:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("username"), str)
            or not isinstance(body.get("password"), str)
        ):
            return (*_error(400, "username and password are required"), None)
        if body.get("isPasswordEncrypted", False) is not False:
            message = "encrypted passwords are not supported; send isPasswordEncrypted false"
            return (*_error(400, message), None)
        if not (
            secrets.compare_digest(body["username"], self.credentials.gax_user)
            and secrets.compare_digest(body["password"], self.credentials.gax_password)
        ):
            return (*_error(401, "invalid username or password"), None)
        token = secrets.token_hex(16)
        with self._lock:
            self._sessions.add(token)
        return 200, {"username": body["username"]}, token

    def logout(self, token: str | None) -> None:
        with self._lock:
            self._sessions.discard(token or "")

    def has_session(self, token: str | None) -> bool:
        with self._lock:
            return token is not None and token in self._sessions

    def objects(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        """Dispatch a /gax/api/cfg/objects request; raises ConfigError for refused changes."""
        parts = [p for p in path[len(OBJECTS_PATH) :].split("/") if p]
        if not parts:
            if method == "GET":
                object_type = (query.get("type") or [""])[0]
                names = query.get("name")
                name = names[0] if names else None
                found = self.store.find(object_type, name)
                if (query.get("brief") or ["false"])[0].lower() == "true":
                    found = [{k: obj[k] for k in ("dbid", "type", "name")} for obj in found]
                return 200, found
            if method == "POST":
                created = self.store.create(body)
                return 201, created
            return _error(405, f"{method} is not allowed on {OBJECTS_PATH}")
        if len(parts) != 2:
            return _error(404, f"no such resource {path}")
        object_type, dbid_text = parts
        if not dbid_text.isdigit():
            return _error(400, f"dbid must be an integer, not {dbid_text!r}")
        dbid = int(dbid_text)
        if method == "GET":
            return 200, self.store.get(object_type, dbid)
        if method == "PUT":
            return 200, self.store.update(object_type, dbid, body)
        if method == "DELETE":
            self.store.delete(object_type, dbid)
            return 204, None
        return _error(405, f"{method} is not allowed on {path}")


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    reason = HTTPStatus(status).phrase
    return status, {"status": status, "error": reason, "message": message}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GAX/9.0"
    sys_version = ""
    timeout = IDLE_CONNECTION_SECONDS
    server: _Server

    def handle(self) -> None:
        # A client that fails the TLS handshake or goes away has nothing to be answered.
        with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the lab's process log is for its own errors."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _session_token(self) -> str | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:  # http.cookies raises CookieError on junk; treat it as no cookie
            return None
        morsel = cookie.get(SESSION_COOKIE)
        return morsel.value if morsel is not None else None

    def _read_body(self) -> tuple[bool, Any]:
        length_text = self.headers.get("Content-Length", "0") or "0"
        if not length_text.isdigit() or int(length_text) > MAX_BODY_BYTES:
            self.close_connection = True
            return False, None
        raw = self.rfile.read(int(length_text)) if int(length_text) else b""
        if not raw:
            return True, None
        try:
            return True, json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return False, None

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        well_formed, body = self._read_body()
        if "gax-timeout" in api.faults() and not self._stall():
            return
        if "gax-500" in api.faults():
            self._send(*_error(500, "internal server error"))
            return
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        if method in ("POST", "PUT") and not well_formed:
            self._send(*_error(400, "the body is not valid JSON"))
            return
        if path == "/gax/api/session/login":
            if method != "POST":
                self._send(*_error(405, "use POST"))
                return
            status, document, token = api.login(body)
            cookie = None
            if token is not None:
                secure = "; Secure" if self.server.tls is not None else ""
                cookie = f"{SESSION_COOKIE}={token}; Path=/gax; HttpOnly{secure}"
            self._send(status, document, cookie)
            return
        token = self._session_token()
        if not api.has_session(token):
            self._send(*_error(401, "no valid session: log in first"))
            return
        if path == "/gax/api/session/logout" and method == "POST":
            api.logout(token)
            self._send(200, {})
            return
        if path != OBJECTS_PATH and not path.startswith(OBJECTS_PATH + "/"):
            self._send(*_error(404, f"no such resource {url.path}"))
            return
        try:
            status, document = api.objects(method, path, parse_qs(url.query), body)
        except ConfigError as error:
            status, document = _error(error.status, error.message)
        self._send(status, document)

    def _stall(self) -> bool:
        """Hold the request while `gax-timeout` is on; False when the client left meanwhile."""
        api = self.server.api
        while "gax-timeout" in api.faults():
            if api.closing.is_set():
                return False
            readable, _, _ = select.select([self.connection], [], [], FAULT_POLL_SECONDS)
            if readable:  # the client sent nothing more but closed: it has given up
                self.close_connection = True
                return False
        return True

    def _send(self, status: int, document: Any, cookie: str | None = None) -> None:
        body = b"" if document is None else json.dumps(document).encode("utf-8")
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Length: {len(body)}",
        ]
        if document is not None:
            lines.append("Content-Type: application/json;charset=UTF-8")
        if cookie is not None:
            lines.append(f"Set-Cookie: {cookie}")
        if status == 201 and isinstance(document, dict):
            lines.append(f"Location: {OBJECTS_PATH}/{document['type']}/{document['dbid']}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.wfile.flush()


class GaxListener:
    """One listening address (HTTP or HTTPS) of GAX, served by a background thread."""

    def __init__(
        self, api: GaxApi, address: tuple[str, int], tls: ssl.SSLContext | None = None
    ) -> None:
        try:
            self._server = _Server(address, api, tls)
        except OSError as error:
            raise ListenError("TCP", address, error) from error
        self.address = address
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": FAULT_POLL_SECONDS},
            name=f"gax-{address[1]}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=1)


def server_tls_context(certificate: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context
