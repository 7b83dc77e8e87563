"""Fleets on the lab: five simulated sites (each a Genesys host and an Asterisk host on loopback
addresses of its own, three DNs behind each gateway), changed in one `apply --site all`.

- One site's SIP Server fails to start during its restart (fault service-1053): that site rolls
  back (configuration byte-identical, its baseline in service, its DNs out as before), the four
  others commit, each with one restart of its own SIP Server, and the summary says so.
- The brake: with `--parallel 1 --max-failed 1` and two failing sites, the first failure stops
  the fleet: the second failing site and every later one are reported skipped, untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import LabManager

from remediate import engine, fleet
from remediate.cli import main
from remediate.env import Environment
from remediate.lab import control
from remediate.lab import fleet as lab_fleet
from remediate.lab.layout import LabLayout, set_fault
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

SITES = 5
DNS = ("5001", "5002", "5003")
BASELINE = {"1002", "1003"}
FAILING = "lab03"
SHORT_SERVICE_BOUNDS = {"genesys_service_stop_timeout": 3, "genesys_service_start_timeout": 15}


@pytest.fixture(scope="module")
def fleet_lab(
    lab_manager: LabManager, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[lab_fleet.Fleet, Path]]:
    """Five sites from this run's addresses up, and an inventory of them with short service
    bounds. The first site takes the shared lab's addresses: that lab is stopped first."""
    lab_manager.release()
    root = tmp_path_factory.mktemp("fleet")
    lab_fleet.up(root / "lab", SITES, lab_manager.addresses, dns=DNS)
    try:
        started = lab_fleet.load_fleet(root / "lab")
        inventory = root / "inventory"
        (inventory / "group_vars").mkdir(parents=True)
        (inventory / "hosts.yml").write_bytes(started.inventory.read_bytes())
        (inventory / "group_vars" / "genesys.yml").write_text(yaml.safe_dump(SHORT_SERVICE_BOUNDS))
        yield started, inventory
    finally:
        lab_fleet.down(root / "lab")


def _estate(layout: LabLayout) -> dict[str, str]:
    """SHA-256 of each configuration object and Asterisk file, read on the lab's side."""
    document = json.loads(layout.cme_file.read_text(encoding="utf-8"))
    sums = {
        f"{obj['type']}/{obj['name']}": hashlib.sha256(
            json.dumps(obj, sort_keys=True).encode()
        ).hexdigest()
        for obj in document["objects"]
    }
    for path in sorted(layout.asterisk_etc.iterdir()):
        sums[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def _segments(layout: LabLayout) -> int:
    """SIP Server opens a log segment at every start."""
    return sum(1 for path in layout.log_dir.iterdir() if path.suffix == ".log")


def _in_service(layout: LabLayout) -> set[str]:
    return set(control.status(layout).dns_in_service)


def test_one_site_fails_and_rolls_back_while_the_others_commit(
    fleet_lab: tuple[lab_fleet.Fleet, Path], tmp_path: Path
) -> None:
    lab, inventory = fleet_lab
    layouts = {site.name: site.layout for site in lab.sites}
    before = {name: _estate(layout) for name, layout in layouts.items()}
    segments = {name: _segments(layout) for name, layout in layouts.items()}
    for layout in layouts.values():
        assert _in_service(layout) == BASELINE  # the seed's fault on every site
    steps: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def hooks_for(site: str) -> engine.Hooks:
        def on_step(step: str, phase: str) -> None:
            with lock:
                steps.append((site, step, phase))
            if site != FAILING:
                return
            # The SIP Server of one site will not start again; the estate recovers before the
            # rollback, as an operator's would once the cause is found.
            if (step, phase) == ("restart", "started"):
                set_fault(layouts[site], "service-1053", True)
            if (step, phase) == ("rollback", "started"):
                set_fault(layouts[site], "service-1053", False)

        return engine.Hooks(on_step=on_step)

    options = engine.Options(
        dns=DNS, change_id="CHG-FLEET", yes=True, verify_timeout=20.0, poll_interval=0.5
    )
    try:
        report = fleet.apply(
            inventory,
            ["all"],
            options,
            parallel=SITES,
            hooks_for=hooks_for,
            state_dir=tmp_path / "state",
        )
    finally:
        set_fault(layouts[FAILING], "service-1053", False)

    by_site = {result.site: result for result in report.sites}
    assert list(by_site) == [f"lab0{i}" for i in range(1, SITES + 1)]
    assert report.exit_status is ExitStatus.VERIFICATION_FAILED
    assert report.count(fleet.Outcome.SUCCEEDED) == SITES - 1
    assert report.count(fleet.Outcome.FAILED) == 1 and report.stopped is None

    failed = by_site[FAILING]
    assert (failed.status, failed.exit_status) == ("rolled-back", ExitStatus.VERIFICATION_FAILED)
    assert (FAILING, "restart", "failed") in steps
    assert (FAILING, "rollback-verify", "finished") in steps
    assert _estate(layouts[FAILING]) == before[FAILING]  # byte-identical
    assert _in_service(layouts[FAILING]) == BASELINE  # as before: 5001-5003 out, 1002/1003 in

    for name, layout in layouts.items():
        if name == FAILING:
            continue
        result = by_site[name]
        assert (result.status, result.exit_status) == ("committed", ExitStatus.SUCCESS), (
            result.message
        )
        assert set(result.in_service) == BASELINE | set(DNS)
        assert _in_service(layout) >= BASELINE | set(DNS)
        assert _estate(layout) != before[name]
        # one restart of this site's SIP Server for its three DNs
        assert _segments(layout) == segments[name] + 1
        assert result.document is not None and result.document["restarted"] is True
        assert result.document["kind"] == "apply-run" and result.document["site"] == name
    # every site's trust went to its own gateway
    for site in lab.sites:
        if site.name != FAILING:
            cme = site.layout.cme_file.read_text(encoding="utf-8")
            assert site.layout.addresses.asterisk_host in cme

    document = report.to_json()
    assert document["kind"] == "fleet" and document["schema_version"] == 1
    assert document["counts"] == {"succeeded": SITES - 1, "failed": 1, "skipped": 0}
    assert document["exit_code"] == 3
    summary = fleet.render(report)
    row = next(line for line in summary.splitlines() if line.startswith(FAILING))
    assert row.split()[1:4] == ["trusted-gateway", "rolled-back", "3"]
    assert f"{SITES - 1} succeeded, 1 failed, 0 skipped of {SITES} site(s)" in summary
    assert f"{FAILING}: rolled-back:" in summary


def _cli(*argv: str, state: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdin=io.StringIO(""),
        stdout=out,
        stderr=err,
        environ={"REMEDIATE_STATE_DIR": str(state)},
    )
    return main(list(argv), env), out.getvalue(), err.getvalue()


def test_the_brake_skips_every_site_after_the_first_failure(
    fleet_lab: tuple[lab_fleet.Fleet, Path], tmp_path: Path
) -> None:
    lab, inventory = fleet_lab
    failing = [lab.sites[0].layout, lab.sites[1].layout]
    before = {site.name: _estate(site.layout) for site in lab.sites}
    for layout in failing:  # both refuse WinRM: their preflight fails
        set_fault(layout, "winrm-401", True)
    try:
        code, out, err = _cli(
            "apply", "-i", str(inventory), "--site", "all", "--dn", "5001",
            "--parallel", "1", "--max-failed", "1",
            "--yes", "--change-id", "CHG-BRAKE", "--output", "json",
            state=tmp_path / "state",
        )  # fmt: skip
    finally:
        for layout in failing:
            set_fault(layout, "winrm-401", False)
    document = json.loads(out)
    assert document["kind"] == "fleet" and document["stopped"] == "max-failed"
    outcomes = [(site["site"], site["outcome"]) for site in document["sites"]]
    assert outcomes == [("lab01", "failed")] + [(f"lab0{i}", "skipped") for i in range(2, 6)]
    first = document["sites"][0]
    assert first["exit_code"] == ExitStatus.PRECONDITION_FAILED
    assert first["run"]["status"] == "failed-before-change"
    assert code == ExitStatus.PRECONDITION_FAILED
    assert "--max-failed 1 brake" in document["sites"][1]["message"]
    # only lab01 ran at all; nothing anywhere changed
    assert len(list((tmp_path / "state" / "runs").iterdir())) == 1
    assert {site.name: _estate(site.layout) for site in lab.sites} == before
    assert "lab01" in err  # progress lines name their site


def test_lab_status_shows_the_fleet(
    fleet_lab: tuple[lab_fleet.Fleet, Path], tmp_path: Path
) -> None:
    lab, _ = fleet_lab
    code, out, _ = _cli("lab", "status", "--dir", str(lab.root), "--output", "json", state=tmp_path)
    assert code == 0
    document = json.loads(out)
    assert document["kind"] == "fleet" and document["state"] == "up"
    assert [site["name"] for site in document["sites"]] == [site.name for site in lab.sites]
    assert {site["service_state"] for site in document["sites"]} == {"Running"}
    code, out, _ = _cli("lab", "status", "--dir", str(lab.root), state=tmp_path)
    assert out.startswith(f"fleet up: {SITES} sites")


def test_lab_up_sites_and_down_from_the_cli(lab_manager: LabManager, tmp_path: Path) -> None:
    """`remediate lab up --sites 2` on the addresses after the five sites', then `lab down`:
    nothing left bound."""
    root = tmp_path / "fleet"
    first = lab_manager.addresses
    code, out, err = _cli(
        "lab", "up", "--sites", "2", "--dir", str(root),
        "--genesys-host", lab_fleet.site_addresses(first, SITES).genesys_host,
        "--asterisk-host", lab_fleet.site_addresses(first, SITES).asterisk_host,
        state=tmp_path,
    )  # fmt: skip
    try:
        assert code == 0, err
        assert out.startswith("fleet up: 2 sites")
        assert (root / "inventory" / "hosts.yml").is_file()
        assert lab_fleet.status(root).state == "up"
    finally:
        code, out, err = _cli("lab", "down", "--dir", str(root), state=tmp_path)
    assert code == 0, err
    status = lab_fleet.status(root)
    assert status.state == "down"
    for _, site in status.sites:
        assert {component.state for component in site.components} == {"down"}
