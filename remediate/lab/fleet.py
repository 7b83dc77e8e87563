"""A fleet lab: N simulated sites, each a Genesys host and an Asterisk host on loopback addresses
of their own, started and stopped in parallel: the back end of `remediate lab up --sites N`.

Layout of a fleet directory:

    <root>/fleet.json            the sites, their addresses, the DNs behind each gateway, scenario
    <root>/lab01/ ... labNN/     one ordinary lab directory per site (`remediate lab fault|logs
                                 --dir <root>/lab03` work on one site)
    <root>/inventory/hosts.yml   ONE inventory: groups genesys and asterisk, and a `site_labNN`
                                 group per site

Site `i` (0-based) uses the first site's addresses with `i` added to their last octet
(`site_addresses`), e.g. Genesys 127.0.0.81, .82, ... and Asterisk 127.0.0.54, .55, ...
Each site's gateway registers `dns` (default 5001-5003), and its configuration holds them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from remediate.lab import control
from remediate.lab.asterisk.seed import pjsip_conf
from remediate.lab.genesys.cme import load_trust_options, seed_document
from remediate.lab.layout import DEFAULT_SCENARIO, LabAddresses, LabLayout, save_layout

FLEET_FILE = "fleet.json"
SITE_PREFIX = "lab"
DEFAULT_DNS = ("5001", "5002", "5003")
SOFTPHONE_DNS = ("1002", "1003")
"""The extension DNs every site's configuration holds besides the gateway's (the baseline)."""
INVENTORY_DIR = "inventory"
MAX_SITES = 99

# A site's start costs about 1.5 s of CPU (two Python processes, TLS keys, first registrations):
# on a small machine the sites' starts queue for the CPU, so the bound grows with their number.
_START_SECONDS = 10.0
_START_SECONDS_PER_SITE = 3.0
_REGISTRATION_POLL = 0.05
_REGISTRATION_BOUND = 5.0


@dataclass(frozen=True)
class FleetSite:
    name: str  # `lab03`: inventory group site_lab03
    layout: LabLayout

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": f"site_{self.name}",
            "dir": str(self.layout.root),
            "addresses": asdict(self.layout.addresses),
        }


@dataclass(frozen=True)
class Fleet:
    root: Path
    sites: tuple[FleetSite, ...]
    dns: tuple[str, ...]
    scenario: str

    @property
    def file(self) -> Path:
        return self.root / FLEET_FILE

    @property
    def inventory(self) -> Path:
        return self.root / INVENTORY_DIR / control.INVENTORY_FILE

    def site(self, name: str) -> FleetSite:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)


@dataclass(frozen=True)
class FleetStatus:
    root: Path
    state: str  # "up" (every site up), "down" (none), "partial"
    scenario: str
    dns: tuple[str, ...]
    sites: tuple[tuple[str, control.LabStatus], ...]
    inventory: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "kind": "fleet",
            "state": self.state,
            "scenario": self.scenario,
            "dns": list(self.dns),
            "inventory": str(self.inventory),
            "sites": [{"name": name, **status.to_json()} for name, status in self.sites],
        }


def site_addresses(first: LabAddresses, index: int) -> LabAddresses:
    """The addresses of site `index` (0-based): the first site's, plus `index` on the last octet."""

    def shifted(address: str) -> str:
        base = ipaddress.IPv4Address(address)
        moved = ipaddress.IPv4Address(int(base) + index)
        if not moved.is_loopback or int(moved) >> 8 != int(base) >> 8:
            raise control.LabError(
                "lab-fleet-addresses",
                f"site {index + 1} would need {moved}, outside {base}'s /24 of loopback",
                hint="start the first site lower in its /24, or run fewer sites",
            )
        return str(moved)

    return replace(
        first,
        genesys_host=shifted(first.genesys_host),
        asterisk_host=shifted(first.asterisk_host),
    )


def site_name(index: int) -> str:
    return f"{SITE_PREFIX}{index + 1:02d}"


def plan_fleet(
    root: Path,
    count: int,
    first: LabAddresses,
    scenario: str = DEFAULT_SCENARIO,
    dns: Sequence[str] = DEFAULT_DNS,
) -> Fleet:
    """The fleet `count` sites would make in `root`; checks that no two sites share an address."""
    if not 1 <= count <= MAX_SITES:
        raise control.LabError(
            "lab-fleet-size", f"a fleet has 1 to {MAX_SITES} sites, not {count}", hint="--sites N"
        )
    root = root.resolve()
    sites = tuple(
        FleetSite(site_name(i), LabLayout(root / site_name(i), site_addresses(first, i)))
        for i in range(count)
    )
    genesys = {site.layout.addresses.genesys_host for site in sites}
    asterisk = {site.layout.addresses.asterisk_host for site in sites}
    overlap = ", ".join(sorted(genesys & asterisk))
    if overlap:
        raise control.LabError(
            "lab-fleet-addresses",
            f"the sites' Genesys and Asterisk addresses overlap: {overlap}",
            hint="put the first Genesys and Asterisk hosts at least --sites addresses apart",
        )
    return Fleet(root, sites, tuple(dns), scenario)


def save_fleet(fleet: Fleet) -> None:
    fleet.root.mkdir(parents=True, exist_ok=True)
    document = {
        "scenario": fleet.scenario,
        "dns": list(fleet.dns),
        "sites": [site.to_json() for site in fleet.sites],
    }
    temporary = fleet.file.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.replace(temporary, fleet.file)


def is_fleet(root: Path) -> bool:
    return (root / FLEET_FILE).is_file()


def load_fleet(root: Path) -> Fleet:
    root = root.resolve()
    try:
        document = json.loads((root / FLEET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise control.LabError(
            "lab-fleet-unreadable",
            f"{root / FLEET_FILE} cannot be read: {error}",
            hint=f"start the fleet again: remediate lab up --sites N --dir {root}",
        ) from None
    sites = tuple(
        FleetSite(
            str(entry["name"]), LabLayout(Path(entry["dir"]), LabAddresses(**entry["addresses"]))
        )
        for entry in document["sites"]
    )
    return Fleet(root, sites, tuple(document["dns"]), str(document["scenario"]))


# Seeding ----------------------------------------------------------------------------------------


def _seed_site(layout: LabLayout, scenario: str, dns: Sequence[str]) -> None:
    """Write the site's pjsip.conf (a registration per DN) and configuration (an extension DN per
    DN) before its first start: the hosts seed only what is missing, and keep them afterwards."""
    pjsip = layout.asterisk_etc / "pjsip.conf"
    if not pjsip.exists():
        pjsip.parent.mkdir(parents=True, exist_ok=True)
        pjsip.write_text(pjsip_conf(layout, dns), encoding="utf-8")
    if not layout.cme_file.exists():
        save_layout(layout, scenario)  # the trust options are read from it
        document = seed_document(
            layout, scenario, load_trust_options(layout), (*SOFTPHONE_DNS, *dns)
        )
        layout.cme_file.parent.mkdir(parents=True, exist_ok=True)
        layout.cme_file.write_text(json.dumps(document, indent=2), encoding="utf-8")


def _wait_for_registrations(layout: LabLayout, dns: Sequence[str]) -> None:
    """Until each registration's first REGISTER is answered (or retransmitted): `up` waits for the
    default two only, and a diagnosis must find the others' outcome too."""
    wanted = {f"genesys_reg_{dn}" for dn in dns}
    deadline = time.monotonic() + _REGISTRATION_BOUND
    # control's reader of the gateway's own record, so both agree on what an outcome is.
    while not wanted <= set(control._first_registration_outcomes(layout)):
        if time.monotonic() >= deadline:
            return
        time.sleep(_REGISTRATION_POLL)


# Inventory --------------------------------------------------------------------------------------


def fleet_inventory(fleet: Fleet) -> dict[str, Any]:
    """One inventory for the fleet, shaped like inventories/example: groups `genesys` and
    `asterisk` hold every site's hosts (`genesys-<name>`, `asterisk-<name>`, with the variables of
    the site's own lab inventory), and a `site_<name>` group per site lists its two hosts. (Ansible
    groups are global: a `genesys` group nested under each site group would be one group holding
    every site's host.)"""
    genesys_hosts: dict[str, Any] = {}
    asterisk_hosts: dict[str, Any] = {}
    sites: dict[str, Any] = {}
    for site in fleet.sites:
        single = control.lab_inventory(site.layout)["all"]["children"]["site_lab"]
        genesys = f"genesys-{site.name}"
        asterisk = f"asterisk-{site.name}"
        genesys_hosts[genesys] = single["children"]["genesys"]["hosts"]["genesys-lab"]
        asterisk_hosts[asterisk] = {
            **single["children"]["asterisk"]["hosts"]["asterisk-lab"],
            "asterisk_dn_registrations": {dn: f"genesys_reg_{dn}" for dn in fleet.dns},
        }
        sites[f"site_{site.name}"] = {
            "vars": single["vars"],
            "hosts": {genesys: None, asterisk: None},
        }
    return {
        "all": {
            "children": {
                "genesys": {"hosts": genesys_hosts},
                "asterisk": {"hosts": asterisk_hosts},
                **sites,
            }
        }
    }


def write_inventory(fleet: Fleet) -> Path:
    path = fleet.inventory
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Written by `remediate lab up --sites {len(fleet.sites)}` for the fleet in "
        f"{fleet.root}: one site_<name> group per site.\n"
    )
    temporary = path.with_suffix(".tmp")
    temporary.write_text(
        header + yaml.safe_dump(fleet_inventory(fleet), sort_keys=False, width=1000),
        encoding="utf-8",
    )
    os.replace(temporary, path)
    return path


# Operations -------------------------------------------------------------------------------------


def _each_site(
    fleet: Fleet, work: Callable[[FleetSite], control.LabStatus]
) -> dict[str, control.LabStatus | BaseException]:
    """`work` on every site at once; per site its status or what it raised."""
    outcomes: dict[str, control.LabStatus | BaseException] = {}
    with ThreadPoolExecutor(max_workers=len(fleet.sites), thread_name_prefix="lab-site") as pool:
        futures = {site.name: pool.submit(work, site) for site in fleet.sites}
        for name, future in futures.items():
            error = future.exception()
            outcomes[name] = error if error is not None else future.result()
    return outcomes


def _prefixed(progress: control.Progress | None, name: str) -> control.Progress | None:
    if progress is None:
        return None
    return lambda message: progress(f"{name}: {message}")


def _failures(outcomes: dict[str, control.LabStatus | BaseException]) -> list[str]:
    return [
        f"{name}: {outcome}" for name, outcome in outcomes.items() if isinstance(outcome, Exception)
    ]


def up(
    root: Path,
    count: int,
    first: LabAddresses,
    scenario: str = DEFAULT_SCENARIO,
    *,
    dns: Sequence[str] = DEFAULT_DNS,
    progress: control.Progress | None = None,
) -> FleetStatus:
    """Start `count` sites in `root` in parallel and return once every one answers; if one cannot
    start, every site is stopped again."""
    started = time.monotonic()
    fleet = plan_fleet(root, count, first, scenario, dns)
    if is_fleet(fleet.root):
        recorded = load_fleet(fleet.root)
        if recorded != fleet and status(fleet.root).state != "down":
            raise control.LabError(
                "lab-already-up",
                f"the fleet in {fleet.root} is already up with {len(recorded.sites)} sites from "
                f"{recorded.sites[0].layout.addresses.genesys_host}",
                hint=f"stop it first: remediate lab down --dir {fleet.root}",
            )
    save_fleet(fleet)
    timeout = _START_SECONDS + _START_SECONDS_PER_SITE * count

    def start(site: FleetSite) -> control.LabStatus:
        _seed_site(site.layout, scenario, fleet.dns)
        started_site = control.up(
            site.layout, scenario, progress=_prefixed(progress, site.name), timeout=timeout
        )
        _wait_for_registrations(site.layout, fleet.dns)
        return started_site

    outcomes = _each_site(fleet, start)
    failures = _failures(outcomes)
    if failures:
        _each_site(fleet, lambda site: control.down(site.layout))
        raise control.LabError(
            "lab-start-failed",
            f"{len(failures)} of {count} sites did not start (all stopped again): "
            + "; ".join(failures),
            hint=f"read the process logs in {fleet.root}/<site>/run",
        )
    inventory = write_inventory(fleet)
    if progress is not None:
        progress(f"wrote the fleet's inventory: {inventory}")
        progress(f"fleet of {count} sites up in {time.monotonic() - started:.1f} s")
    return status(fleet.root)


def down(root: Path, *, progress: control.Progress | None = None) -> FleetStatus:
    """Stop every site (in parallel); stopping a fleet that is not running is not an error."""
    fleet = load_fleet(root)
    outcomes = _each_site(
        fleet, lambda site: control.down(site.layout, progress=_prefixed(progress, site.name))
    )
    failures = _failures(outcomes)
    if failures:
        raise control.LabError(
            "lab-stop-failed",
            "some sites did not stop: " + "; ".join(failures),
            hint=f"run `remediate lab down --dir {fleet.root}` again",
        )
    return status(fleet.root)


def status(root: Path) -> FleetStatus:
    fleet = load_fleet(root)
    sites = tuple((site.name, control.status(site.layout)) for site in fleet.sites)
    states = {site_status.state for _, site_status in sites}
    overall = "up" if states == {"up"} else "down" if states <= {"down", "stale"} else "partial"
    return FleetStatus(fleet.root, overall, fleet.scenario, fleet.dns, sites, fleet.inventory)
