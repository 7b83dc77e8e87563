"""The three fixes the seed proposes, as data: what each touches, its playbook, how it is verified.

A fix is a `FixSpec`, built from the site (the inventory decides names, addresses, the method):

- `targets`: everything the fix's playbook may change, configuration objects in Genesys (by type
  and name) and files on the Asterisk host (by path). The engine backs each of them up, byte for
  byte, before anything changes, refuses a plan that touches anything else, and restores them all
  on rollback.
- `playbook` and `extravars`: the Ansible content that makes the change (its own defaults come from
  the inventory through the roles; the extra vars only say which DNs and which run).
- `needs_restart`: SIP Server reads its configuration at start, so a Genesys-side change needs the
  restart (one per site, whatever the number of DNs); an Asterisk-only change does not.
- `proves_route`: verification also asks Asterisk `dialplan show <dn>@<context>` for each DN.

Nothing here talks to a host: the engine runs the playbooks and reads the targets through the
transports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from remediate.diagnose import Fix
from remediate.errors import InputError
from remediate.inventory import Site

AUTO = "auto"


@dataclass(frozen=True)
class ObjectTarget:
    """A Genesys configuration object, as GAX names it."""

    cfg_type: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.cfg_type}/{self.name}"

    @property
    def kind(self) -> str:
        return "object"


@dataclass(frozen=True)
class FileTarget:
    """A file on the Asterisk host."""

    path: str

    @property
    def key(self) -> str:
        return self.path

    @property
    def kind(self) -> str:
        return "file"


Target = ObjectTarget | FileTarget


@dataclass(frozen=True)
class FixSpec:
    name: str
    summary: str
    playbook: str
    targets: tuple[Target, ...]
    needs_restart: bool
    proves_route: bool
    extravars: dict[str, Any]

    def target(self, key: str) -> Target | None:
        return next((target for target in self.targets if target.key == key), None)


FIX_NAMES: tuple[str, ...] = (Fix.TRUSTED_GATEWAY.value, Fix.TRUNK.value, Fix.DIALPLAN.value)


def _builders() -> dict[str, Callable[[Site], FixSpec]]:
    from remediate.fixes import dialplan, trunk, trusted_gateway

    return {
        Fix.TRUSTED_GATEWAY.value: trusted_gateway.build,
        Fix.TRUNK.value: trunk.build,
        Fix.DIALPLAN.value: dialplan.build,
    }


def build_fix(name: str, site: Site) -> FixSpec:
    """The fix called `name` (one of FIX_NAMES) for `site`."""
    builder = _builders().get(name)
    if builder is None:
        raise InputError(
            f"there is no fix {name!r}",
            reference="bad-fix",
            hint=f"use one of: {AUTO}, {', '.join(FIX_NAMES)}",
        )
    return builder(site)


def common_extravars(dns: Sequence[str], run_id: str, change_id: str | None) -> dict[str, Any]:
    """The extra vars every remediate playbook takes (see playbooks/)."""
    return {
        "remediate_dns": list(dns),
        "remediate_run_id": run_id,
        "remediate_change_id": change_id or "",
    }
