"""The Genesys Administrator Extension (GAX) REST client: every GAX detail lives in this one class.

GAX is known from community clients rather than official documentation (DESIGN section 2.2):
`POST /gax/api/session/login` opens a cookie session; configuration objects are read with
`GET /gax/api/cfg/objects?type=<CfgType>&name=<name>&brief=false` and
`GET|PUT|DELETE /gax/api/cfg/objects/<CfgType>/<dbid>`, created with `POST /gax/api/cfg/objects`.
Annex options are the object's `userproperties.property` list of `{section, key, value}`. A site
whose GAX differs swaps this class, nothing else.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3

from remediate.errors import InputError
from remediate.transport import TransportError

log = logging.getLogger(__name__)

CfgObject = dict[str, Any]
API_ROOT = "/gax/api"
LOGIN_PATH = "/session/login"
OBJECTS_PATH = "/cfg/objects"
# The whole configuration of a large contact centre's switch is a few MB of JSON.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class GaxSettings:
    inventory_host: str
    url: str  # the server (https://gax.example:8443) or the API root (https://.../gax/api)
    user: str
    password: str = field(repr=False)
    ca_trust_path: str | None = None
    validate_certificate: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    lab: bool = False
    allow_insecure: bool = False
    source: str = ""


class GaxError(TransportError):
    """GAX could not be reached, refused us, or answered something unusable."""

    reference = "gax-error"


def _annex(obj: CfgObject) -> list[dict[str, Any]]:
    annex = obj.get("userproperties")
    properties = (annex.get("property") if isinstance(annex, dict) else None) or []
    if not isinstance(properties, list):
        return []
    return [entry for entry in properties if isinstance(entry, dict)]


def annex_options(obj: CfgObject) -> dict[tuple[str, str], str]:
    """The object's annex as {(section, key): value}."""
    return {
        (str(entry.get("section", "")), str(entry.get("key", ""))): str(entry.get("value", ""))
        for entry in _annex(obj)
    }


def annex_value(obj: CfgObject, section: str, key: str) -> str | None:
    return annex_options(obj).get((section, key))


def with_annex_option(obj: CfgObject, section: str, key: str, value: str | None) -> CfgObject:
    """A copy of `obj` whose annex has `[section] key = value` (removed when `value` is None);
    every other option keeps its place."""
    changed = copy.deepcopy(obj)
    properties = [
        entry
        for entry in _annex(changed)
        if not (entry.get("section") == section and entry.get("key") == key)
    ]
    if value is not None:
        position = next(
            (
                index
                for index, entry in enumerate(_annex(changed))
                if entry.get("section") == section and entry.get("key") == key
            ),
            len(properties),
        )
        properties.insert(position, {"section": section, "key": key, "value": value})
    changed.setdefault("userproperties", {})
    if not isinstance(changed["userproperties"], dict):
        changed["userproperties"] = {}
    changed["userproperties"]["property"] = properties
    return changed


class GaxClient:
    """A logged-in GAX session. Use as a context manager, or call `close()`."""

    def __init__(self, settings: GaxSettings) -> None:
        if settings.url.startswith("http://") and not (settings.lab or settings.allow_insecure):
            raise InputError(
                f"refusing GAX over plain HTTP ({settings.url}) for {settings.inventory_host}: "
                "the password would cross the network in clear",
                reference="gax-insecure",
                hint="use an https:// genesys_gax_url with genesys_gax_ca_trust_path",
            )
        if not settings.validate_certificate and not (settings.lab or settings.allow_insecure):
            raise InputError(
                f"refusing GAX without certificate validation for {settings.inventory_host}",
                reference="gax-insecure",
                hint="set genesys_gax_ca_trust_path to the CA that signed GAX's certificate",
            )
        allowed_by = "remediate_lab" if settings.lab else "remediate_allow_insecure_gax"
        if settings.url.startswith("http://"):
            log.warning("GAX at %s is plain HTTP: allowed by %s", settings.url, allowed_by)
        elif not settings.validate_certificate:
            log.warning(
                "GAX at %s: the server certificate is not validated: allowed by %s",
                settings.url,
                allowed_by,
            )
        self.settings = settings
        base = settings.url.rstrip("/")
        # genesys_gax_url may name the server (https://gax:8443) or the API root (.../gax/api)
        self._base = base if base.endswith(API_ROOT) else base + API_ROOT
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.verify = (
            (settings.ca_trust_path or True) if settings.validate_certificate else False
        )
        self._logged_in = False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GaxClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # HTTP ---------------------------------------------------------------------------------------

    def _error(self, reference: str, message: str, *, hint: str = "") -> GaxError:
        return GaxError(f"GAX at {self._base}: {message}", reference=reference, hint=hint)

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        s = self.settings
        try:
            response = self._session.request(
                method,
                self._base + path,
                timeout=(s.connect_timeout, s.read_timeout),
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
            with response:
                response._content = self._body(response, f"{method} {path.split('?')[0]}")
            return response
        except requests.exceptions.SSLError:
            raise self._error(
                "gax-tls-failed",
                "the TLS handshake failed (the server certificate could not be validated)",
                hint=f"check genesys_gax_ca_trust_path for {s.inventory_host}",
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise self._error(
                "gax-unreachable",
                f"no connection within {s.connect_timeout:g} s",
                hint=f"check genesys_gax_url for {s.inventory_host}",
            ) from None
        except requests.exceptions.Timeout:
            raise self._error(
                "gax-timeout",
                f"no answer within {s.read_timeout:g} s to {method} {path.split('?')[0]}",
                hint="check the GAX service and Configuration Server; genesys_gax_timeout sets "
                "this bound",
            ) from None
        except requests.ConnectionError:
            raise self._error(
                "gax-unreachable",
                "the connection was refused or dropped",
                hint=f"check genesys_gax_url for {s.inventory_host} and that GAX runs",
            ) from None

    def _body(self, response: requests.Response, what: str) -> bytes:
        """The answer's body, read within the read timeout as a whole and at most
        MAX_ANSWER_BYTES long: a proxy or a broken server must not stall or flood the run."""
        deadline = time.monotonic() + self.settings.read_timeout
        body = bytearray()
        while chunk := self._chunk(response, what):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise self._error(
                    "gax-bad-answer",
                    f"{what}: the answer exceeds {MAX_ANSWER_BYTES // (1024 * 1024)} MB",
                    hint="check that genesys_gax_url names GAX itself, not a proxy or a download",
                )
            if time.monotonic() > deadline:
                raise self._error(
                    "gax-timeout",
                    f"{what}: the answer did not arrive in full within "
                    f"{self.settings.read_timeout:g} s",
                    hint="check the GAX service; genesys_gax_timeout sets this bound",
                )
        return bytes(body)

    def _chunk(self, response: requests.Response, what: str) -> bytes:
        """What the server has sent of the body so far (read1: a trickle returns at once)."""
        try:
            return bytes(response.raw.read1(64 * 1024, decode_content=True))
        except urllib3.exceptions.ReadTimeoutError:
            raise self._error(
                "gax-timeout",
                f"{what}: the answer stopped for {self.settings.read_timeout:g} s",
                hint="check the GAX service; genesys_gax_timeout sets this bound",
            ) from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise self._error(
                "gax-unreachable",
                f"{what}: the connection was dropped in the middle of the answer",
                hint="check GAX and the network between this machine and it",
            ) from None

    def _checked(self, response: requests.Response, what: str) -> requests.Response:
        status = response.status_code
        if status in (401, 403):
            raise self._error(
                "gax-auth-failed",
                f"{what}: HTTP {status}",
                hint=f"check genesys_gax_user and genesys_gax_password for "
                f"{self.settings.inventory_host}",
            )
        if status >= 500:
            raise self._error(
                "gax-server-error",
                f"{what}: HTTP {status}",
                hint="look at GAX's and Configuration Server's logs",
            )
        if status == 404:
            raise self._error("gax-not-found", f"{what}: HTTP 404")
        if status >= 300:
            raise self._error("gax-refused", f"{what}: HTTP {status} {self._reason(response)}")
        return response

    @staticmethod
    def _reason(response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        if isinstance(body, dict):
            for key in ("message", "error", "status"):
                if isinstance(body.get(key), str):
                    return str(body[key])[:200]
        return ""

    def _json(self, response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._error(
                "gax-bad-answer",
                f"{what}: the answer is not JSON ({len(response.content)} bytes, "
                f"content-type {response.headers.get('Content-Type', 'none')})",
            ) from None

    def login(self) -> None:
        s = self.settings
        response = self._send(
            "POST",
            LOGIN_PATH,
            json={"username": s.user, "password": s.password, "isPasswordEncrypted": False},
        )
        self._checked(response, "login")
        self._logged_in = True

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        if not self._logged_in:
            self.login()
        response = self._send(method, path, **kwargs)
        if response.status_code == 401:  # the session expired: log in once more
            self.login()
            response = self._send(method, path, **kwargs)
        return self._checked(response, what)

    # Objects ------------------------------------------------------------------------------------

    def _object_list(self, body: Any, what: str) -> list[CfgObject]:
        if isinstance(body, dict):
            for key in ("objects", "items", "data"):
                if isinstance(body.get(key), list):
                    body = body[key]
                    break
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise self._error("gax-bad-answer", f"{what}: expected a list of objects")
        return list(body)

    def _object(self, body: Any, what: str) -> CfgObject:
        if not isinstance(body, dict) or "dbid" not in body:
            raise self._error("gax-bad-answer", f"{what}: expected an object with a dbid")
        return body

    def find_all(self, cfg_type: str, name: str | None = None) -> list[CfgObject]:
        """Every object of `cfg_type` (with that name, when given), in full."""
        params = {"type": cfg_type, "brief": "false"}
        if name is not None:
            params["name"] = name
        what = f"find {cfg_type}" + (f" {name!r}" if name is not None else "")
        response = self._call("GET", OBJECTS_PATH, what, params=params)
        return self._object_list(self._json(response, what), what)

    def find(self, cfg_type: str, name: str) -> CfgObject | None:
        """The object of `cfg_type` named `name`, or None."""
        matches = [obj for obj in self.find_all(cfg_type, name) if obj.get("name") == name]
        return matches[0] if matches else None

    def get(self, cfg_type: str, dbid: int) -> CfgObject:
        what = f"read {cfg_type} {dbid}"
        response = self._call("GET", f"{OBJECTS_PATH}/{cfg_type}/{int(dbid)}", what)
        return self._object(self._json(response, what), what)

    def create(self, obj: CfgObject) -> CfgObject:
        """Create `obj` (it carries its own `type`); the created object, with its dbid."""
        what = f"create {obj.get('type')} {obj.get('name')!r}"
        response = self._call("POST", OBJECTS_PATH, what, json=obj)
        return self._object(self._json(response, what), what)

    def update(self, obj: CfgObject) -> CfgObject:
        cfg_type, dbid = obj.get("type"), obj.get("dbid")
        what = f"update {cfg_type} {dbid}"
        if not isinstance(cfg_type, str) or not isinstance(dbid, int):
            raise InputError(
                f"{what}: the object lacks its type or dbid", reference="gax-bad-object"
            )
        response = self._call("PUT", f"{OBJECTS_PATH}/{cfg_type}/{dbid}", what, json=obj)
        if not response.content:
            return self.get(cfg_type, dbid)
        return self._object(self._json(response, what), what)

    def delete(self, cfg_type: str, dbid: int) -> None:
        self._call("DELETE", f"{OBJECTS_PATH}/{cfg_type}/{int(dbid)}", f"delete {cfg_type} {dbid}")

    # Annex options ------------------------------------------------------------------------------

    def get_option(self, cfg_type: str, name: str, section: str, key: str) -> str | None:
        obj = self.find(cfg_type, name)
        if obj is None:
            raise self._error("gax-not-found", f"no {cfg_type} named {name!r}")
        return annex_value(obj, section, key)

    def set_option(
        self, cfg_type: str, name: str, section: str, key: str, value: str | None
    ) -> CfgObject:
        """Set (or with None remove) `[section] key` in the annex of `name`; the updated object."""
        obj = self.find(cfg_type, name)
        if obj is None:
            raise self._error("gax-not-found", f"no {cfg_type} named {name!r}")
        return self.update(with_annex_option(obj, section, key, value))
