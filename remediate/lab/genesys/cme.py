"""Configuration objects of the simulated Genesys host, persisted in `cme.json` (layout.cme_file).

The objects are what Configuration Server holds and GAX serves (see gax.py for their JSON shape):
the switch `SIP_P` (CfgSwitch) with its annex, extension DNs and trunk DNs (CfgDN). SIP Server reads
them at each service start (`ConfigStore.registrar_config()`), never between starts.

Which annex options make an address a trusted gateway is site data, not Genesys fact (DESIGN 2.2):
`TrustOptions` holds the seed's names as defaults, and `lab.json` may override them under
`{"genesys": {"trusted_gateway_options": {"section": ..., "list_option": ..., "mode_option": ...,
"mode_value": ...}}}`. A Trunk DN's annex section `TServer` with `contact` is documented Genesys
behaviour and is fixed.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediate.lab.layout import GENESYS_SWITCH, LabLayout

CFG_SWITCH = "CfgSwitch"
CFG_DN = "CfgDN"
OBJECT_TYPES = (CFG_SWITCH, CFG_DN)
DN_EXTENSION = "CFGExtension"
DN_ACD_POSITION = "CFGACDPosition"
DN_TRUNK = "CFGTrunk"
DN_TYPES = (DN_EXTENSION, DN_ACD_POSITION, DN_TRUNK)
REGISTRABLE_DN_TYPES = frozenset({DN_EXTENSION, DN_ACD_POSITION})
STATE_ENABLED = "CFGEnabled"
STATE_DISABLED = "CFGDisabled"
STATES = (STATE_ENABLED, STATE_DISABLED)
TRUNK_SECTION = "TServer"
TENANT_DBID = 1
SEED_EXTENSIONS = ("1002", "1003", "5001", "5002")
SEED_TRUNK_NAME = "AsteriskTrunk_webRTC"

Document = dict[str, Any]


class ConfigError(Exception):
    """A configuration request that Configuration Server would refuse; `status` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class TrustOptions:
    section: str = "sip"
    list_option: str = "trusted-gateways"
    mode_option: str = "gateway-ip-auth-mode"
    mode_value: str = "enabled"


def load_trust_options(layout: LabLayout) -> TrustOptions:
    """The trusted-gateway option names from `lab.json` (the seed's names when unset)."""
    try:
        document = json.loads(layout.lab_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return TrustOptions()
    overrides = document.get("genesys", {}).get("trusted_gateway_options", {})
    return TrustOptions(**{key: str(value) for key, value in overrides.items()})


@dataclass(frozen=True)
class Trunk:
    name: str
    contact_host: str
    contact_port: int
    prefix: str
    oos_check: int  # seconds between OPTIONS probes; 0 disables them


@dataclass(frozen=True)
class RegistrarConfig:
    """What SIP Server takes from configuration at a service start."""

    registrable_dns: frozenset[str]
    trunks: tuple[Trunk, ...]
    trusted_addresses: frozenset[str]

    def trunk_for_address(self, address: str) -> Trunk | None:
        return next((trunk for trunk in self.trunks if trunk.contact_host == address), None)


def annex_value(obj: Document, section: str, key: str) -> str | None:
    for prop in obj.get("userproperties", {}).get("property", []):
        if prop["section"] == section and prop["key"] == key:
            return str(prop["value"])
    return None


def parse_contact(contact: str) -> tuple[str, int] | None:
    """`host:port`, `host` or `sip:host:port` (a trunk's `contact` option) -> (host, port)."""
    text = contact.strip()
    if text.lower().startswith(("sip:", "sips:")):
        text = text.split(":", 1)[1]
    text = text.split(";", 1)[0].rsplit("@", 1)[-1]
    host, _, port = text.partition(":")
    if not host:
        return None
    if not port:
        return host, 5060
    return (host, int(port)) if port.isdigit() else None


def _properties(entries: list[tuple[str, str, str]]) -> dict[str, list[dict[str, str]]]:
    return {
        "property": [
            {"section": section, "key": key, "value": value} for section, key, value in entries
        ]
    }


def seed_document(
    layout: LabLayout,
    scenario: str,
    trust: TrustOptions,
    extensions: Sequence[str] = SEED_EXTENSIONS,
) -> Document:
    """The configuration a scenario starts from (names and meanings in layout.SCENARIOS), with
    an extension DN per number of `extensions` (a fleet's sites seed more than the default)."""
    asterisk = layout.addresses.asterisk_host
    switch_annex: list[tuple[str, str, str]] = [
        ("TServer", "sip-port", str(layout.addresses.sip_port))
    ]
    if scenario in ("gateway-unregisters", "binding-expired"):
        switch_annex += [
            (trust.section, trust.list_option, asterisk),
            (trust.section, trust.mode_option, trust.mode_value),
        ]
    switch_dbid = 101
    objects: list[Document] = [
        {
            "dbid": switch_dbid,
            "type": CFG_SWITCH,
            "name": GENESYS_SWITCH,
            "state": STATE_ENABLED,
            "tenantdbid": TENANT_DBID,
            "userproperties": _properties(switch_annex),
        }
    ]
    numbers = [n for n in extensions if not (scenario == "dn-not-configured" and n == "5002")]
    for index, number in enumerate(numbers):
        objects.append(_dn(201 + index, number, DN_EXTENSION, switch_dbid, []))
    if scenario == "trunk-no-reverse-route":
        trunk_annex = [
            (TRUNK_SECTION, "contact", f"{asterisk}:{layout.addresses.asterisk_sip_port}"),
            (TRUNK_SECTION, "prefix", "50"),
            (TRUNK_SECTION, "oos-check", "30"),
        ]
        objects.append(_dn(301, SEED_TRUNK_NAME, DN_TRUNK, switch_dbid, trunk_annex))
    return {"next_dbid": 1000, "objects": objects}


def _dn(
    dbid: int, number: str, dn_type: str, switch_dbid: int, annex: list[tuple[str, str, str]]
) -> Document:
    return {
        "dbid": dbid,
        "type": CFG_DN,
        "name": number,
        "number": number,
        "dntype": dn_type,
        "switchdbid": switch_dbid,
        "state": STATE_ENABLED,
        "tenantdbid": TENANT_DBID,
        "userproperties": _properties(annex),
    }


_COMMON_FIELDS = {"dbid", "type", "name", "state", "tenantdbid", "userproperties"}
_FIELDS = {CFG_SWITCH: _COMMON_FIELDS, CFG_DN: _COMMON_FIELDS | {"number", "dntype", "switchdbid"}}


def _validate_properties(value: Any) -> None:
    if not isinstance(value, dict) or set(value) - {"property"}:
        raise ConfigError(400, "userproperties must be an object with a 'property' list")
    entries = value.get("property", [])
    if not isinstance(entries, list):
        raise ConfigError(400, "userproperties.property must be a list")
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or set(entry) != {"section", "key", "value"}
            or not all(isinstance(entry[k], str) for k in entry)
            or not entry["section"]
            or not entry["key"]
        ):
            raise ConfigError(
                400, "each annex property must be {section, key, value} with string values"
            )
        if (entry["section"], entry["key"]) in seen:
            raise ConfigError(400, f"duplicate annex option [{entry['section']}] {entry['key']}")
        seen.add((entry["section"], entry["key"]))


class ConfigStore:
    """Thread-safe store of configuration objects; every change is written to disk atomically."""

    def __init__(self, path: Path, seed: Document) -> None:
        self._path = path
        self._lock = threading.Lock()
        if path.exists():
            self._document: Document = json.loads(path.read_text(encoding="utf-8"))
        else:
            self._document = copy.deepcopy(seed)
            self._save()

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_name(self._path.name + ".tmp")
        temporary.write_text(json.dumps(self._document, indent=2), encoding="utf-8")
        os.replace(temporary, self._path)

    def _objects(self, object_type: str) -> list[Document]:
        return [obj for obj in self._document["objects"] if obj["type"] == object_type]

    def _find_by_dbid(self, object_type: str, dbid: int) -> Document:
        for obj in self._objects(object_type):
            if obj["dbid"] == dbid:
                return obj
        raise ConfigError(404, f"{object_type} with dbid {dbid} does not exist")

    def find(self, object_type: str, name: str | None = None) -> list[Document]:
        self._check_type(object_type)
        with self._lock:
            return [
                copy.deepcopy(obj)
                for obj in self._objects(object_type)
                if name is None or obj["name"] == name
            ]

    def get(self, object_type: str, dbid: int) -> Document:
        self._check_type(object_type)
        with self._lock:
            return copy.deepcopy(self._find_by_dbid(object_type, dbid))

    def create(self, body: Any) -> Document:
        obj = self._validated(body, creating=True)
        with self._lock:
            self._check_unique(obj, ignore_dbid=None)
            obj["dbid"] = int(self._document["next_dbid"])
            self._document["next_dbid"] = obj["dbid"] + 1
            self._document["objects"].append(obj)
            self._save()
            return copy.deepcopy(obj)

    def update(self, object_type: str, dbid: int, body: Any) -> Document:
        self._check_type(object_type)
        obj = self._validated(body, creating=False)
        if obj["type"] != object_type:
            raise ConfigError(400, f"the body's type {obj['type']} is not {object_type}")
        if obj.setdefault("dbid", dbid) != dbid:
            raise ConfigError(400, f"the body's dbid {obj['dbid']} is not {dbid}")
        with self._lock:
            current = self._find_by_dbid(object_type, dbid)
            self._check_unique(obj, ignore_dbid=dbid)
            current.clear()
            current.update(obj)
            self._save()
            return copy.deepcopy(current)

    def delete(self, object_type: str, dbid: int) -> None:
        self._check_type(object_type)
        with self._lock:
            obj = self._find_by_dbid(object_type, dbid)
            if object_type == CFG_SWITCH and any(
                dn["switchdbid"] == dbid for dn in self._objects(CFG_DN)
            ):
                raise ConfigError(409, f"switch {obj['name']} still has DNs")
            self._document["objects"].remove(obj)
            self._save()

    @staticmethod
    def _check_type(object_type: str) -> None:
        if object_type not in OBJECT_TYPES:
            raise ConfigError(400, f"unsupported object type {object_type!r}")

    def _validated(self, body: Any, *, creating: bool) -> Document:
        if not isinstance(body, dict):
            raise ConfigError(400, "the body must be a JSON object")
        object_type = body.get("type")
        if object_type not in OBJECT_TYPES:
            raise ConfigError(400, f"unsupported object type {object_type!r}")
        unknown = set(body) - _FIELDS[object_type]
        if unknown:
            raise ConfigError(
                400, f"unknown fields for {object_type}: {', '.join(sorted(unknown))}"
            )
        if creating and "dbid" in body:
            raise ConfigError(400, "a new object must not carry a dbid")
        if "dbid" in body and (not isinstance(body["dbid"], int) or isinstance(body["dbid"], bool)):
            raise ConfigError(400, "dbid must be an integer")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(400, "name is required")
        obj: Document = copy.deepcopy(body)
        obj.setdefault("state", STATE_ENABLED)
        obj.setdefault("tenantdbid", TENANT_DBID)
        obj.setdefault("userproperties", {"property": []})
        if obj["state"] not in STATES:
            raise ConfigError(400, f"state must be one of {', '.join(STATES)}")
        _validate_properties(obj["userproperties"])
        obj["userproperties"].setdefault("property", [])
        if object_type == CFG_DN:
            obj.setdefault("number", name)
            if not isinstance(obj["number"], str) or not obj["number"]:
                raise ConfigError(400, "number must be a non-empty string")
            if obj.get("dntype") not in DN_TYPES:
                raise ConfigError(400, f"dntype must be one of {', '.join(DN_TYPES)}")
            switch_dbid = obj.get("switchdbid")
            with self._lock:
                switch_exists = any(s["dbid"] == switch_dbid for s in self._objects(CFG_SWITCH))
            if not switch_exists:
                raise ConfigError(400, f"switchdbid {switch_dbid!r} names no CfgSwitch")
        return obj

    def _check_unique(self, obj: Document, *, ignore_dbid: int | None) -> None:
        for other in self._objects(obj["type"]):
            if other["dbid"] == ignore_dbid:
                continue
            if obj["type"] == CFG_SWITCH and other["name"] == obj["name"]:
                raise ConfigError(409, f"a CfgSwitch named {obj['name']} already exists")
            if obj["type"] == CFG_DN and other["switchdbid"] == obj["switchdbid"]:
                if other["number"] == obj["number"]:
                    raise ConfigError(409, f"DN {obj['number']} already exists on this switch")
                if other["name"] == obj["name"]:
                    raise ConfigError(409, f"a CfgDN named {obj['name']} already exists")

    def registrar_config(self, trust: TrustOptions) -> RegistrarConfig:
        """What SIP Server reads at a start: its switch's DNs, trunks and trusted addresses."""
        with self._lock:
            switch = next(
                (s for s in self._objects(CFG_SWITCH) if s["name"] == GENESYS_SWITCH), None
            )
            if switch is None or switch["state"] != STATE_ENABLED:
                return RegistrarConfig(frozenset(), (), frozenset())
            dns = [
                dn
                for dn in self._objects(CFG_DN)
                if dn["switchdbid"] == switch["dbid"] and dn["state"] == STATE_ENABLED
            ]
            registrable = frozenset(
                dn["number"] for dn in dns if dn["dntype"] in REGISTRABLE_DN_TYPES
            )
            trunks: list[Trunk] = []
            for dn in dns:
                contact = annex_value(dn, TRUNK_SECTION, "contact")
                address = parse_contact(contact) if contact else None
                if dn["dntype"] != DN_TRUNK or address is None:
                    continue
                oos = annex_value(dn, TRUNK_SECTION, "oos-check") or "0"
                trunks.append(
                    Trunk(
                        name=dn["name"],
                        contact_host=address[0],
                        contact_port=address[1],
                        prefix=annex_value(dn, TRUNK_SECTION, "prefix") or "",
                        oos_check=min(int(oos), 300) if oos.isdigit() else 0,
                    )
                )
            listed = annex_value(switch, trust.section, trust.list_option) or ""
            mode = annex_value(switch, trust.section, trust.mode_option)
            trusted: frozenset[str] = frozenset()
            if not trust.mode_option or mode == trust.mode_value:
                trusted = frozenset(item.strip() for item in listed.split(",") if item.strip())
            return RegistrarConfig(registrable, tuple(trunks), trusted)
