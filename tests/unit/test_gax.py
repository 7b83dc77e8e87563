"""The GAX client against a small in-process HTTP server: the calls it makes and its errors."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from remediate.errors import InputError
from remediate.genesys.gax import (
    GaxClient,
    GaxError,
    GaxSettings,
    annex_options,
    annex_value,
    with_annex_option,
)
from remediate.status import ExitStatus

HOST = os.environ.get("REMEDIATE_TEST_GENESYS_HOST", "127.0.0.81")
PASSWORD = "s3cret-GAX-pw"


class _Gax:
    def __init__(self) -> None:
        self.mode = "ok"
        self.objects: dict[int, dict[str, Any]] = {
            101: {
                "dbid": 101,
                "type": "CfgSwitch",
                "name": "SIP_P",
                "userproperties": {"property": [{"section": "sip", "key": "other", "value": "1"}]},
            },
            201: {"dbid": 201, "type": "CfgDN", "name": "5002", "dnType": "CFGExtension"},
        }
        self.requests: list[tuple[str, str]] = []


class _Handler(BaseHTTPRequestHandler):
    gax: _Gax

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 200 and self.path.endswith("/login"):
            self.send_header("Set-Cookie", "JSESSIONID=abc; Path=/")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up first (the stall case)
            self.wfile.write(data)

    def _handle(self, method: str) -> None:
        gax = self.gax
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        gax.requests.append((method, self.path))
        if gax.mode == "500":
            return self._answer(500, {"message": "internal"})
        if gax.mode == "stall":
            time.sleep(1)
            return self._answer(200, [])
        if self.path == "/gax/api/session/login":
            ok = body == {"username": "default", "password": PASSWORD, "isPasswordEncrypted": False}
            return self._answer(200 if ok else 401, {"status": "ok" if ok else "bad"})
        if "JSESSIONID=abc" not in (self.headers.get("Cookie") or ""):
            return self._answer(401, {"message": "no session"})
        if gax.mode == "garbage":
            return self._answer(200, None, raw=b"<html>proxy error</html>")
        if self.path.startswith("/gax/api/cfg/objects?"):
            from urllib.parse import parse_qs, urlparse

            query = parse_qs(urlparse(self.path).query)
            found = [
                o
                for o in gax.objects.values()
                if o["type"] == query["type"][0] and o["name"] == query.get("name", [o["name"]])[0]
            ]
            return self._answer(200, found)
        parts = self.path.split("/")
        if method == "PUT":
            gax.objects[int(parts[-1])] = body
            return self._answer(200, body)
        if method == "POST":
            body["dbid"] = 300
            gax.objects[300] = body
            return self._answer(200, body)
        if method == "DELETE":
            gax.objects.pop(int(parts[-1]))
            return self._answer(200, {})
        obj = gax.objects.get(int(parts[-1]))
        return self._answer(200 if obj else 404, obj or {"message": "not found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


@pytest.fixture
def gax_server() -> Iterator[tuple[_Gax, str]]:
    gax = _Gax()
    handler = type("Handler", (_Handler,), {"gax": gax})
    server = ThreadingHTTPServer((HOST, 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gax, f"http://{HOST}:{server.server_address[1]}/gax/api"
    finally:
        server.shutdown()
        server.server_close()


def _settings(url: str, password: str = PASSWORD, **kwargs: Any) -> GaxSettings:
    return GaxSettings("genesys-test", url, "default", password, lab=True, **kwargs)


def test_login_find_read_update_create_delete(gax_server: tuple[_Gax, str]) -> None:
    gax, url = gax_server
    with GaxClient(_settings(url)) as client:
        switch = client.find("CfgSwitch", "SIP_P")
        assert switch is not None and switch["dbid"] == 101
        assert client.find("CfgDN", "9999") is None
        assert client.get("CfgDN", 201)["name"] == "5002"
        updated = client.set_option("CfgSwitch", "SIP_P", "sip", "trusted-gateways", "127.0.0.54")
        assert annex_value(updated, "sip", "trusted-gateways") == "127.0.0.54"
        assert annex_options(gax.objects[101]) == {
            ("sip", "other"): "1",
            ("sip", "trusted-gateways"): "127.0.0.54",
        }
        assert client.get_option("CfgSwitch", "SIP_P", "sip", "other") == "1"
        created = client.create({"type": "CfgDN", "name": "AsteriskTrunk", "dnType": "CFGTrunk"})
        assert created["dbid"] == 300
        client.delete("CfgDN", 300)
        assert 300 not in gax.objects
    assert gax.requests[0] == ("POST", "/gax/api/session/login")
    assert ("GET", "/gax/api/cfg/objects?type=CfgSwitch&brief=false&name=SIP_P") in gax.requests


def test_annex_edit_keeps_other_options_in_place() -> None:
    obj = {
        "dbid": 1,
        "userproperties": {
            "property": [
                {"section": "a", "key": "x", "value": "1"},
                {"section": "a", "key": "y", "value": "2"},
            ]
        },
    }
    changed = with_annex_option(obj, "a", "x", "9")
    assert changed["userproperties"]["property"][0] == {"section": "a", "key": "x", "value": "9"}
    assert obj["userproperties"]["property"][0]["value"] == "1"  # the original is untouched
    removed = with_annex_option(obj, "a", "x", None)
    assert annex_options(removed) == {("a", "y"): "2"}


def test_wrong_password_is_auth_failed_and_never_echoed(gax_server: tuple[_Gax, str]) -> None:
    _, url = gax_server
    with (
        GaxClient(_settings(url, password="wrong-Pa55")) as client,
        pytest.raises(GaxError) as caught,
    ):
        client.find("CfgSwitch", "SIP_P")
    error = caught.value
    assert error.reference == "gax-auth-failed"
    assert error.exit_status == ExitStatus.PRECONDITION_FAILED
    assert "genesys_gax_password" in error.hint
    assert "wrong-Pa55" not in f"{error} {error.hint}"


@pytest.mark.parametrize(
    ("mode", "reference"),
    [("500", "gax-server-error"), ("garbage", "gax-bad-answer"), ("stall", "gax-timeout")],
)
def test_server_failures_have_their_own_reference(
    gax_server: tuple[_Gax, str], mode: str, reference: str
) -> None:
    gax, url = gax_server
    with GaxClient(_settings(url, read_timeout=0.5)) as client:
        client.login()
        gax.mode = mode
        started = time.monotonic()
        with pytest.raises(GaxError) as caught:
            client.find("CfgSwitch", "SIP_P")
    assert caught.value.reference == reference
    assert time.monotonic() - started < 1.5


def test_unreachable() -> None:
    with (
        GaxClient(_settings(f"http://{HOST}:9/gax/api")) as client,
        pytest.raises(GaxError) as caught,
    ):
        client.login()
    assert caught.value.reference == "gax-unreachable"


def test_plain_http_and_no_validation_refused_outside_the_lab() -> None:
    with pytest.raises(InputError, match="plain HTTP") as caught:
        GaxClient(GaxSettings("prod", "http://gax.example/gax/api", "u", PASSWORD))
    assert PASSWORD not in str(caught.value)
    with pytest.raises(InputError, match="certificate validation"):
        GaxClient(GaxSettings("prod", "https://gax.example", "u", "p", validate_certificate=False))
    # The server URL alone gets the API root appended.
    client = GaxClient(GaxSettings("prod", "https://gax.example:8443", "u", "p"))
    assert client._base == "https://gax.example:8443/gax/api"
