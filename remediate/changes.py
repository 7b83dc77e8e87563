"""The pure logic of the changes the playbooks make, callable without Ansible and without a network.

- Annex options: the desired state of a configuration object's annex (`[section] key = value`),
  including list options such as the trusted-gateway list, where an address is added to the
  entries already there and never replaces them.
- DNs: the document that creates a DN on a switch with its annex.
- Restore: what brings an object back to a recorded before-state (update, re-create, delete, or
  nothing), and whether it is already there.
- Text renderings of objects and annexes, for `--diff`.
- Dialplan: which DNs an extensions.conf context already routes, outside remediate's own managed
  block, so a fix never adds a second priority 1 for an extension that already has one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from remediate.asterisk import conf
from remediate.errors import InputError
from remediate.genesys.gax import CfgObject, annex_options, annex_value, with_annex_option

CFG_SWITCH = "CfgSwitch"
CFG_DN = "CfgDN"
OBJECT_TYPES = (CFG_SWITCH, CFG_DN)
DN_TYPE_TRUNK = "CFGTrunk"
STATE_ENABLED = "CFGEnabled"
LIST_SEPARATOR = ","

# Annex options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnexOption:
    """`[section] key = value`; with `list_entry`, `value` is one entry of a comma-separated list
    option (e.g. the trusted gateways): it is added to, or removed from, the entries there."""

    section: str
    key: str
    value: str = ""
    list_entry: bool = False


def list_entries(text: str | None) -> list[str]:
    """The entries of a comma-separated list option, in order, blanks dropped."""
    return [entry.strip() for entry in (text or "").split(LIST_SEPARATOR) if entry.strip()]


def with_list_entry(current: str | None, entry: str) -> str:
    """`current` with `entry` appended, unless already listed (then `current` as it is)."""
    entries = list_entries(current)
    if entry in entries:
        return current or entry
    return LIST_SEPARATOR.join([*entries, entry])


def without_list_entry(current: str | None, entry: str) -> str | None:
    """`current` without `entry` (None when nothing is left, so the option goes)."""
    entries = list_entries(current)
    if entry not in entries:
        return current
    kept = [item for item in entries if item != entry]
    return LIST_SEPARATOR.join(kept) if kept else None


def annex_with(obj: CfgObject, options: Sequence[AnnexOption], *, present: bool) -> CfgObject:
    """A copy of `obj` whose annex has each option (`present`) or lacks it; every other option,
    and the place of each one already there, is kept. Absent without `list_entry` removes the key
    whatever its value."""
    result = copy.deepcopy(obj)
    for option in options:
        current = annex_value(result, option.section, option.key)
        if option.list_entry:
            desired = (
                with_list_entry(current, option.value)
                if present
                else without_list_entry(current, option.value)
            )
        else:
            desired = option.value if present else None
        if desired != current:
            result = with_annex_option(result, option.section, option.key, desired)
    return result


def annex_text(obj: CfgObject | None) -> str:
    """The annex as an INI-like text (`[section]` then `key = value`), sections in the order they
    first appear: what an operator reads in Genesys Administrator's Annex tab."""
    if obj is None:
        return ""
    sections: dict[str, list[str]] = {}
    for (section, key), value in annex_options(obj).items():
        sections.setdefault(section, []).append(f"{key} = {value}")
    return "".join(
        f"[{section}]\n" + "".join(f"{line}\n" for line in lines)
        for section, lines in sections.items()
    )


def object_text(obj: CfgObject | None) -> str:
    """The object as stable JSON text (empty when there is none)."""
    if obj is None:
        return ""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def object_label(cfg_type: str, name: str) -> str:
    return f"{cfg_type} {name}"


# DNs ---------------------------------------------------------------------------------------------


def new_dn(name: str, switch: CfgObject, dn_type: str, options: Sequence[AnnexOption]) -> CfgObject:
    """The document that creates DN `name` of `dn_type` on `switch` with `options` in its annex."""
    dn: CfgObject = {
        "type": CFG_DN,
        "name": name,
        "number": name,
        "dntype": dn_type,
        "switchdbid": switch["dbid"],
        "state": STATE_ENABLED,
    }
    if "tenantdbid" in switch:
        dn["tenantdbid"] = switch["tenantdbid"]
    dn["userproperties"] = {"property": []}
    return annex_with(dn, options, present=True)


def dn_on_switch(candidates: Sequence[CfgObject], switch: CfgObject) -> CfgObject | None:
    """The DN among `candidates` (found by name) that belongs to `switch`."""
    return next((dn for dn in candidates if dn.get("switchdbid") == switch.get("dbid")), None)


# Restore -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePlan:
    """What brings an object back to its before-state: `action` is `none`, `update` (PUT
    `document`), `create` (POST `document`: the before-state without its dbid, which
    Configuration Server assigns anew) or `delete`."""

    action: str
    document: CfgObject | None = None


def without_dbid(obj: CfgObject) -> CfgObject:
    return {key: value for key, value in obj.items() if key != "dbid"}


def restore_plan(current: CfgObject | None, before: CfgObject | None) -> RestorePlan:
    if before is None:
        return RestorePlan("delete") if current is not None else RestorePlan("none")
    if current is None:
        return RestorePlan("create", without_dbid(before))
    if without_dbid(current) == without_dbid(before):
        return RestorePlan("none")
    return RestorePlan("update", {**copy.deepcopy(before), "dbid": current["dbid"]})


def check_before_state(cfg_type: str, name: str, before: Any) -> CfgObject | None:
    """`before` as a recorded before-state of `cfg_type` `name`: None, or an object of that type
    and name."""
    if before is None:
        return None
    if not isinstance(before, Mapping):
        raise InputError(
            f"the before-state of {object_label(cfg_type, name)} is not an object or null",
            reference="rollback-bad-before-state",
        )
    document = dict(before)
    if document.get("type") != cfg_type or document.get("name") != name:
        raise InputError(
            f"the before-state recorded for {object_label(cfg_type, name)} is a "
            f"{document.get('type')} named {document.get('name')!r}",
            reference="rollback-bad-before-state",
            hint="the journal's backup does not belong to this object: restore it by hand",
        )
    return document


# Dialplan ----------------------------------------------------------------------------------------

Reader = Callable[[str], bytes]


def managed_markers(context: str) -> tuple[str, str]:
    """The lines around remediate's block for `context` in extensions.conf."""
    return (f"; BEGIN remediate managed: {context}", f"; END remediate managed: {context}")


def without_managed_block(data: bytes, context: str) -> bytes:
    """`data` with remediate's managed block for `context` blanked (line numbers kept)."""
    begin, end = (marker.encode() for marker in managed_markers(context))
    out: list[bytes] = []
    inside = False
    for line in data.splitlines(keepends=True):
        text = line.rstrip(b"\r\n")
        if text == begin:
            inside = True
        blank = inside
        if text == end:
            inside = False
        out.append(line[len(text) :] if blank else line)
    return b"".join(out)


@dataclass(frozen=True)
class DialplanCoverage:
    """Which DNs `context` already routes, outside remediate's managed block."""

    context: str
    routes: dict[str, list[str]]  # DN -> `'_5XXX' at extensions.conf:12` for each pattern
    files: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def uncovered(self) -> list[str]:
        return [dn for dn, found in self.routes.items() if not found]


def dialplan_coverage(
    read: Reader, path: str, context: str, dns: Sequence[str]
) -> DialplanCoverage:
    """Parse `path` and its includes (through `read`, which raises FileNotFoundError for a missing
    file), ignore remediate's block for `context`, and say which extension patterns of the context
    (and the contexts it includes) match each DN."""
    config = conf.parse_config(path, lambda name: without_managed_block(read(name), context))
    routes: dict[str, list[str]] = {}
    for dn in dns:
        found: list[str] = []
        for line in conf.matching_lines(config, context, dn):
            label = f"'{line.pattern}' at {line.location}"
            if line.priority == "1" and label not in found:
                found.append(label)
        routes[dn] = found
    return DialplanCoverage(context, routes, list(config.files), list(config.problems))


def pattern_misses(pattern: str, dns: Sequence[str]) -> list[str]:
    """The DNs that the extension `pattern` does not match."""
    return [dn for dn in dns if not conf.extension_matches(pattern, dn)]
