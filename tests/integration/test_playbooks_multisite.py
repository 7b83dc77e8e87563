"""The playbooks on several sites at once, run as AWX runs a job template: ansible-runner, the
project's root as working directory (its ansible.cfg), one job for a fleet lab of three sites
(`--limit site_lab01:site_lab02:site_lab03`), each site's variables given as host variables by a
second inventory source, no extra vars but those of the job.

- One site's SIP Server fails to start again (fault service-1053): the other sites are restarted
  and their DNs re-registered; the failed site's gateway is never told to register; the job's
  recap says that site failed. A site whose fix changed nothing is not restarted at all.
- `remediate_serial=1`: one site after another, each site's re-registration inside its batch; a
  batch whose only site failed (its restart, or its gateway unreachable) stops no later batch.
- trunk.yml: a site whose Trunk DN failed (its GAX answering 500) gets no route back on its
  gateway; the other sites get theirs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml
from conftest import LabManager, ssh_control_dir

from remediate.lab import control
from remediate.lab import fleet as lab_fleet
from remediate.lab.layout import LabLayout, set_fault

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
SITES = 3
DNS = ["5001", "5002", "5003"]
BASELINE = {"1002", "1003"}
RESTART_TASK = "Restart the SIP Server service (bounded waits)"
REGISTER_TASK = "Send a REGISTER for each DN now"
TRUNK_TASK = "Route the DN range over a Trunk DN to the gateway"
# Short bounds: the failed site's start gives up after 5 s instead of 120.
SHORT_SERVICE_BOUNDS = {"genesys_service_stop_timeout": 5, "genesys_service_start_timeout": 5}


@dataclass
class Job:
    rc: int
    status: str
    events: list[dict[str, Any]]
    stats: dict[str, dict[str, int]]

    def task_events(self, task: str, kind: str) -> list[dict[str, Any]]:
        """The events `runner_on_<kind>` of `task`, in the order Ansible emitted them."""
        return [
            event
            for event in self.events
            if event.get("event") == f"runner_on_{kind}"
            and event.get("event_data", {}).get("task") == task
        ]

    def hosts(self, task: str, kind: str) -> list[str]:
        return [event["event_data"]["host"] for event in self.task_events(task, kind)]

    @property
    def failed_hosts(self) -> set[str]:
        """The hosts the recap counts failures for."""
        return {host for host, counts in self.stats.items() if counts.get("failures")}


@contextmanager
def fault(layout: LabLayout, name: str) -> Iterator[None]:
    set_fault(layout, name, True)
    try:
        yield
    finally:
        set_fault(layout, name, False)


@pytest.fixture
def control_dir() -> Iterator[Path]:
    with ssh_control_dir() as directory:
        yield directory


@pytest.fixture
def fleet_lab(lab_manager: LabManager, tmp_path: Path) -> Iterator[lab_fleet.Fleet]:
    """Three fresh sites (the seed's fault on each) from this run's addresses. The first site
    takes the shared lab's addresses: that lab is stopped first."""
    lab_manager.release()
    lab_fleet.up(tmp_path / "fleet", SITES, lab_manager.addresses, dns=DNS)
    try:
        yield lab_fleet.load_fleet(tmp_path / "fleet")
    finally:
        lab_fleet.down(tmp_path / "fleet")


def inventory_for(
    lab: lab_fleet.Fleet,
    directory: Path,
    fix: str,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """The fleet's inventory, and beside it each site's variables as host variables of both its
    hosts (the shape of a per-site inventory source, or of AWX host variables); `overrides`: more
    variables of some hosts."""
    directory.mkdir()
    (directory / "10-fleet.yml").write_bytes(lab.inventory.read_bytes())
    hosts = {}
    for site in lab.sites:
        variables = {
            "remediate_fix": fix,
            "remediate_dns": DNS,
            "remediate_run_id": f"run-{site.name}",
            "remediate_change_id": "CHG-AWX",
            **SHORT_SERVICE_BOUNDS,
        }
        hosts[f"genesys-{site.name}"] = variables
        hosts[f"asterisk-{site.name}"] = variables
    for host, variables in (overrides or {}).items():
        hosts[host] = {**hosts[host], **variables}
    (directory / "20-sites.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return directory


def run_job(
    inventory: Path,
    playbook: str,
    sites: list[str],
    private_dir: Path,
    control_dir: Path,
    extravars: dict[str, Any] | None = None,
) -> Job:
    environment = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_NOCOLOR": "1",
    }
    private_dir.mkdir()
    saved_config = os.environ.pop("ANSIBLE_CONFIG", None)  # the project's ansible.cfg, as AWX
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private_dir),
            project_dir=str(REPO),
            playbook=f"playbooks/{playbook}",
            inventory=str(inventory),
            limit=":".join(f"site_{site}" for site in sites),
            extravars=extravars or {},
            envvars=environment,
            quiet=True,
            timeout=300,
        )
    finally:
        if saved_config is not None:
            os.environ["ANSIBLE_CONFIG"] = saved_config
    stats = runner.stats or {}
    per_host: dict[str, dict[str, int]] = {}
    for key, hosts in stats.items():
        for host, count in (hosts or {}).items():
            per_host.setdefault(host, {})[key] = count
    return Job(int(runner.rc), str(runner.status), list(runner.events), per_host)


def segments(layout: LabLayout) -> int:
    """SIP Server opens a log segment at every start."""
    return sum(1 for path in layout.log_dir.iterdir() if path.suffix == ".log")


def told_to_register(layout: LabLayout, since: datetime) -> set[str]:
    """Registrations the gateway un-registered (Expires: 0) since `since`: what `pjsip send
    register` does first, and nothing else in a running lab does."""
    told = set()
    for line in control.capture_record_path(layout).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if (
            entry["direction"] == "sent"
            and entry["expires"] == 0
            and datetime.fromisoformat(entry["time"]) >= since
        ):
            told.add(entry["registration"])
    return told


def in_service(layout: LabLayout, wanted: set[str], timeout: float = 15.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        now = set(control.status(layout).dns_in_service)
        if wanted <= now or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def _changed_on(event: dict[str, Any], site: str) -> bool:
    data = event.get("event_data", {})
    return (
        event.get("event") == "runner_on_ok"
        and bool(data.get("res", {}).get("changed"))
        and data.get("host", "").endswith(f"-{site}")
    )


def test_a_failed_site_stops_no_other_and_an_unchanged_site_is_not_restarted(
    fleet_lab: lab_fleet.Fleet, tmp_path: Path, control_dir: Path
) -> None:
    lab = fleet_lab
    layouts = {site.name: site.layout for site in lab.sites}
    inventory = inventory_for(lab, tmp_path / "inventory", "trusted-gateway")
    everyone = set(DNS) | BASELINE

    # lab01 is fixed first, alone: the fleet's job then finds nothing to change there.
    first = run_job(inventory, "site.yml", ["lab01"], tmp_path / "job-lab01", control_dir)
    assert first.rc == 0, first.status
    assert in_service(layouts["lab01"], everyone) == everyone
    starts = {name: segments(layout) for name, layout in layouts.items()}
    since = datetime.now(UTC)

    with fault(layouts["lab02"], "service-1053"):
        job = run_job(
            inventory, "site.yml", ["lab01", "lab02", "lab03"], tmp_path / "job", control_dir
        )

    assert (job.rc, job.status) == (2, "failed")
    assert job.failed_hosts == {"genesys-lab02"}
    # lab03: fixed, restarted, its gateway told to register every DN, all of them in service.
    assert job.hosts(RESTART_TASK, "ok") == ["genesys-lab03"]
    assert job.hosts(REGISTER_TASK, "ok") == ["genesys-lab03"]
    assert told_to_register(layouts["lab03"], since) == {f"genesys_reg_{dn}" for dn in DNS}
    assert segments(layouts["lab03"]) == starts["lab03"] + 1
    assert in_service(layouts["lab03"], everyone) == everyone
    # lab02: its restart failed; its gateway was never asked to register.
    assert job.hosts(RESTART_TASK, "failed") == ["genesys-lab02"]
    assert told_to_register(layouts["lab02"], since) == set()
    assert control.status(layouts["lab02"]).service_state == "Stopped"
    # lab01: its fix changed nothing, so no restart; its DNs stayed in service.
    assert "genesys-lab01" in job.hosts(RESTART_TASK, "skipped")
    assert not [change for change in job.events if _changed_on(change, "lab01")]
    assert segments(layouts["lab01"]) == starts["lab01"]
    assert told_to_register(layouts["lab01"], since) == set()
    assert set(control.status(layouts["lab01"]).dns_in_service) == everyone
    # Forks: lab02's and lab03's restarts were under way at once, not one after the other.
    restarts = [
        event["event"]
        for event in job.events
        if event.get("event_data", {}).get("task") == RESTART_TASK
        and event["event_data"].get("host") in ("genesys-lab02", "genesys-lab03")
        and event.get("event") in ("runner_on_start", "runner_on_ok", "runner_on_failed")
    ]
    assert restarts[:2] == ["runner_on_start", "runner_on_start"], restarts


def test_serial_restarts_one_site_after_another_each_with_its_registration(
    fleet_lab: lab_fleet.Fleet, tmp_path: Path, control_dir: Path
) -> None:
    lab = fleet_lab
    inventory = inventory_for(lab, tmp_path / "inventory", "trusted-gateway")
    names = [site.name for site in lab.sites]

    job = run_job(
        inventory,
        "site.yml",
        names,
        tmp_path / "job",
        control_dir,
        extravars={"remediate_serial": 1},
    )

    assert (job.rc, job.status) == (0, "successful")
    steps = [
        (event["event_data"]["host"], event["event_data"]["task"], event["event"])
        for event in job.events
        if event.get("event_data", {}).get("task") in (RESTART_TASK, REGISTER_TASK)
        and event.get("event") in ("runner_on_start", "runner_on_ok")
    ]
    assert steps == [
        step
        for name in names
        for step in (
            (f"genesys-{name}", RESTART_TASK, "runner_on_start"),
            (f"genesys-{name}", RESTART_TASK, "runner_on_ok"),
            (f"genesys-{name}", REGISTER_TASK, "runner_on_start"),
            (f"genesys-{name}", REGISTER_TASK, "runner_on_ok"),
        )
    ]
    everyone = set(DNS) | BASELINE
    for site in lab.sites:
        assert in_service(site.layout, everyone) == everyone, site.name


def test_with_serial_a_failed_batch_stops_no_later_one(
    fleet_lab: lab_fleet.Fleet, tmp_path: Path, control_dir: Path
) -> None:
    lab = fleet_lab
    layouts = {site.name: site.layout for site in lab.sites}
    # lab02's gateway cannot be reached (nothing listens on that port).
    unreachable = {"asterisk-lab02": {"ansible_port": 9}}
    inventory = inventory_for(lab, tmp_path / "inventory", "trusted-gateway", unreachable)
    since = datetime.now(UTC)

    with fault(layouts["lab01"], "service-1053"):
        job = run_job(
            inventory,
            "restart.yml",
            [site.name for site in lab.sites],
            tmp_path / "job",
            control_dir,
            extravars={"remediate_serial": 1},
        )

    assert (job.rc, job.status) == (2, "failed")
    assert job.failed_hosts == {"genesys-lab01", "genesys-lab02"}
    failed_sites = {  # the last play fails both sites at once: their events come in any order
        event["event_data"]["host"]: event["event_data"]["res"]["msg"]
        for event in job.task_events(
            "Fail each site whose restart or re-registration failed", "failed"
        )
    }
    assert failed_sites == {
        "genesys-lab01": f"the site failed at '{RESTART_TASK}' (its error is above)",
        "genesys-lab02": f"the site failed at '{REGISTER_TASK}' (its error is above)",
    }
    (unreached,) = job.task_events(REGISTER_TASK, "failed")
    assert unreached["event_data"]["host"] == "genesys-lab02"
    assert unreached["event_data"]["res"]["reference"] == "ssh-unreachable"
    assert unreached["event_data"]["res"]["msg"].startswith(
        "ssh-unreachable: asterisk-lab02 could not be reached"
    )
    assert job.hosts(RESTART_TASK, "ok") == ["genesys-lab02", "genesys-lab03"]
    assert told_to_register(layouts["lab01"], since) == set()
    assert told_to_register(layouts["lab03"], since) == {f"genesys_reg_{dn}" for dn in DNS}


def test_trunk_gives_no_route_back_to_a_site_whose_trunk_dn_failed(
    fleet_lab: lab_fleet.Fleet, tmp_path: Path, control_dir: Path
) -> None:
    lab = fleet_lab
    layouts = {site.name: site.layout for site in lab.sites}
    inventory = inventory_for(lab, tmp_path / "inventory", "trunk")
    dialplans = {name: layout.asterisk_etc / "extensions.conf" for name, layout in layouts.items()}
    before = {name: path.read_bytes() for name, path in dialplans.items()}

    with fault(layouts["lab02"], "gax-500"):
        job = run_job(inventory, "trunk.yml", list(layouts), tmp_path / "job", control_dir)

    assert (job.rc, job.status) == (2, "failed")
    assert job.failed_hosts == {"genesys-lab02"}
    assert job.hosts(TRUNK_TASK, "failed") == ["genesys-lab02"]
    assert sorted(job.hosts(TRUNK_TASK, "ok")) == ["genesys-lab01", "genesys-lab03"]
    assert dialplans["lab02"].read_bytes() == before["lab02"]
    # The others' routes back went in, each proven by `dialplan show` in the play.
    for name in ("lab01", "lab03"):
        assert "; BEGIN remediate managed: from-genesys" in dialplans[name].read_text()
        assert job.stats[f"asterisk-{name}"].get("changed", 0) > 0
    assert "asterisk-lab02" not in job.stats or not job.stats["asterisk-lab02"].get("changed")
