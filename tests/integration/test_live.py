"""Live diagnosis against the lab: each scenario's root cause and fix, each refusing part's error.

The lab's log is read (lab side, by the test) only to know when a scenario has shown itself; the
diagnosis itself goes through the product's live path: WinRM, GAX and SSH.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import lab_asterisk

from remediate import live
from remediate.cli import main
from remediate.diagnose import Diagnosis, DnDiagnosis, Fix, RootCause
from remediate.env import Environment
from remediate.inventory import load_site
from remediate.lab.layout import LabLayout, set_fault
from remediate.status import ExitStatus

pytestmark = pytest.mark.lab

SCENARIO_TIMEOUT = 25.0


def _log_text(layout: LabLayout) -> str:
    if not layout.log_dir.exists():
        return ""
    return "".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(layout.log_dir.glob("*.log"))
    )


def _wait_for_log(layout: LabLayout, marker: str) -> None:
    deadline = time.monotonic() + SCENARIO_TIMEOUT
    while marker not in _log_text(layout):
        if time.monotonic() > deadline:
            pytest.fail(f"the lab never logged {marker!r} within {SCENARIO_TIMEOUT} s")
        time.sleep(0.2)
    time.sleep(0.5)  # the response block follows the handling lines


def _wait_for_rejection(layout: LabLayout, registration: str) -> None:
    """The gateway's side of a refused REGISTER: its registration shows Rejected once the 403
    reached it, which on a loaded machine can come after SIP Server's log line."""
    deadline = time.monotonic() + SCENARIO_TIMEOUT
    while True:
        shown = lab_asterisk(layout, "pjsip show registrations")
        if any(registration in line and "Rejected" in line for line in shown.splitlines()):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{registration} never showed Rejected within {SCENARIO_TIMEOUT} s")
        time.sleep(0.2)


def _diagnose(layout: LabLayout, *dns: str, capture: float | None = None) -> Diagnosis:
    return live.diagnose_site(
        layout.inventory_dir / "hosts.yml", None, list(dns), None, capture, None
    )


def _dn(diagnosis: Diagnosis, dn: str) -> DnDiagnosis:
    return next(item for item in diagnosis.dns if item.dn == dn)


def _codes(item: DnDiagnosis | Diagnosis) -> set[str]:
    return {observation.code for observation in item.observations}


def test_untrusted_gateway(lab: LabLayout) -> None:
    _wait_for_log(lab, "TERMINATED:5002")
    _wait_for_rejection(lab, "genesys_reg_5002")
    diagnosis = _diagnose(lab, "5002", "1003", capture=1.0)
    failing, working = _dn(diagnosis, "5002"), _dn(diagnosis, "1003")
    assert failing.in_service is False
    assert failing.root_cause.code is RootCause.UNTRUSTED_GATEWAY
    assert failing.recommendation.fix is Fix.TRUSTED_GATEWAY
    assert lab.addresses.asterisk_host in failing.root_cause.summary
    assert working.in_service is True and working.root_cause.code is RootCause.IN_SERVICE
    latest = working.latest
    assert latest is not None
    assert (latest.source_address, latest.source_port) == (lab.addresses.genesys_host, 5090)
    assert latest.user_agent == "Genesys-Softphone/9.0.014.13"
    # The seed's questions, answered from the estate.
    estate = {observation.code: observation for observation in diagnosis.observations}
    assert estate["service-running"].summary.startswith("TSrvSIP64")
    assert estate["port-owner"].details["process"] == "GenesysSoftphone"
    assert "gateway-not-covered" in estate
    assert "capture" in estate
    headers = estate["register-headers"].details
    assert headers["User-Agent"] == "Asterisk-Genesys-Gateway  |  Genesys-Softphone/9.0.014.13"
    assert headers["Source"].startswith(f"{lab.addresses.asterisk_host}:5060")
    assert {"registration-rejected", "registration-will-not-recover"} <= _codes(failing)
    will_not_recover = next(
        o for o in failing.observations if o.code == "registration-will-not-recover"
    )
    assert "max_retries=0" in will_not_recover.summary
    assert "pjsip.conf:" in will_not_recover.details["location"]


def test_cli_live_text_and_json(lab: LabLayout) -> None:
    _wait_for_log(lab, "TERMINATED:5002")
    inventory = str(lab.inventory_dir / "hosts.yml")
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), environ={})
    assert main(["diagnose", "--dn", "5002", "--dn", "1003", "-i", inventory], env) == 0
    text = out.getvalue()
    assert "DN 5002: OUT OF SERVICE" in text and "root cause  untrusted-gateway" in text
    assert "GenesysSoftphone" in text
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), environ={"REMEDIATE_INVENTORY": inventory})
    assert main(["diagnose", "--dn", "5002", "--output", "json"], env) == 0
    document = json.loads(out.getvalue())
    assert document["schema_version"] == 1
    assert document["dns"][0]["root_cause"]["code"] == "untrusted-gateway"
    assert {o["source"] for o in document["observations"]} >= {"service", "gax", "winrm"}


SCENARIOS = [
    (
        "gateway-unregisters",
        "TERMINATED:5002",
        RootCause.UNREGISTERED_BY_GATEWAY,
        Fix.ASTERISK_REREGISTER,
    ),
    ("dn-not-configured", "DN 5002 is not configured", RootCause.DN_NOT_CONFIGURED, Fix.NONE),
    ("binding-expired", "REGISTRAR: EXPIRED", RootCause.BINDING_EXPIRED, Fix.ASTERISK_REREGISTER),
    ("service-stopped", None, RootCause.SERVICE_STOPPED, Fix.NONE),
    ("trunk-no-reverse-route", "ACTIVE:5002", RootCause.NO_REVERSE_ROUTE, Fix.DIALPLAN),
]


@pytest.mark.parametrize(
    ("scenario", "marker", "cause", "fix"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_scenario(
    lab_factory: Any, scenario: str, marker: str | None, cause: RootCause, fix: Fix
) -> None:
    layout: LabLayout = lab_factory(scenario)
    if scenario == "gateway-unregisters":
        _capture_sees_the_unregister(layout)
    if marker is not None:
        _wait_for_log(layout, marker)
    diagnosis = _diagnose(layout, "5002", "1003")
    failing, working = _dn(diagnosis, "5002"), _dn(diagnosis, "1003")
    assert failing.root_cause.code is cause, failing.root_cause.summary
    assert failing.recommendation.fix is fix
    if scenario == "service-stopped":
        assert working.root_cause.code is RootCause.SERVICE_STOPPED
        assert "service-stopped" in _codes(diagnosis)
        assert "Start-Service TSrvSIP64" in failing.recommendation.action
        return
    assert working.in_service is True
    if fix is Fix.ASTERISK_REREGISTER:
        assert 'pjsip send register genesys_reg_5002"' in failing.recommendation.action
    if scenario == "dn-not-configured":
        assert "dn-missing" in _codes(failing)
    if scenario == "trunk-no-reverse-route":
        assert failing.in_service is True  # registered, but calls cannot come back
        assert "AsteriskTrunk_webRTC" in failing.root_cause.summary
        assert "from-genesys" in failing.recommendation.action
        assert "gateway-covered" in _codes(diagnosis)
        assert "reverse-route" in _codes(working)


def _capture_sees_the_unregister(layout: LabLayout) -> None:
    """The gateway sends its un-REGISTER 3 s after the lab starts: a 4 s capture opened now sees
    it leave the Asterisk host, with its response."""
    site = load_site(layout.inventory_dir / "hosts.yml")
    evidence = live.collect(site, ["5002"], capture_seconds=4.0)
    sent = [
        r
        for r in evidence.captured
        if r.start_line.startswith("REGISTER") and r.registration == "genesys_reg_5002"
    ]
    assert any(r.header("Expires") == "0" for r in sent), evidence.captured
    assert sent[-1].source.startswith(layout.addresses.asterisk_host)
    assert any(r.start_line.startswith("SIP/2.0 200") for r in evidence.captured)
    assert "record" in evidence.capture_note


# Refusing and unreachable parts ----------------------------------------------------------------

FAST = {
    "genesys-lab": {
        "ansible_winrm_operation_timeout_sec": 1,
        "ansible_winrm_read_timeout_sec": 2,
        "remediate_winrm_command_timeout": 4,
        "remediate_winrm_retries": 1,
        "genesys_gax_timeout": 2,
    },
    "asterisk-lab": {"ansible_ssh_timeout": 2, "remediate_ssh_command_timeout": 5},
}
BOUND_SECONDS = 8.0  # the largest configured bound above, plus the run's own work


def _fast_inventory(layout: LabLayout, tmp_path: Path, **overrides: dict[str, Any]) -> Path:
    document = yaml.safe_load((layout.inventory_dir / "hosts.yml").read_text(encoding="utf-8"))
    groups = document["all"]["children"]["site_lab"]["children"]
    for group in groups.values():
        for name, variables in group["hosts"].items():
            variables.update(FAST.get(name, {}))
            variables.update(overrides.get(name, {}))
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _snapshot(layout: LabLayout) -> dict[str, str]:
    files = [layout.cme_file, *sorted(layout.asterisk_etc.glob("*.conf"))]
    state = {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    status = json.loads(layout.genesys_status_file.read_text(encoding="utf-8"))
    state["service"] = status["service"]
    state["in service"] = ",".join(sorted(status["in_service"]))
    return state


def _changed_known_hosts(layout: LabLayout, tmp_path: Path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    path = tmp_path / "known_hosts"
    path.write_text(
        f"[{layout.addresses.asterisk_host}]:{layout.addresses.ssh_port} {key.decode()}\n"
    )
    return f"-o UserKnownHostsFile={path} -o StrictHostKeyChecking=yes"


REFUSALS = [
    ("winrm-401", "winrm-auth-failed", "ansible_password"),
    ("winrm-stall", "winrm-timeout", "ansible_winrm_read_timeout_sec"),
    ("winrm-down", "winrm-unreachable", "ansible_port"),
    ("gax-500", "gax-server-error", ""),
    ("ssh-host-key-changed", "ssh-host-key-changed", "UserKnownHostsFile"),
    ("ssh-drop", "ssh-unreachable", "ansible_host"),
]


@pytest.mark.parametrize(("part", "reference", "hint"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusing_part_stops_with_its_error(
    lab: LabLayout, tmp_path: Path, part: str, reference: str, hint: str
) -> None:
    overrides: dict[str, dict[str, Any]] = {}
    if part == "winrm-down":
        overrides["genesys-lab"] = {"ansible_port": 1}
    elif part == "ssh-host-key-changed":
        overrides["asterisk-lab"] = {"ansible_ssh_common_args": _changed_known_hosts(lab, tmp_path)}
    else:
        set_fault(lab, part, True)
    inventory = _fast_inventory(lab, tmp_path, **overrides)
    before = _snapshot(lab)
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.monotonic()
    status = main(
        ["diagnose", "--dn", "5002", "-i", str(inventory)],
        Environment(stdout=stdout, stderr=stderr, environ={}),
    )
    elapsed = time.monotonic() - started
    assert status == ExitStatus.PRECONDITION_FAILED, stderr.getvalue()
    assert stderr.getvalue().startswith(f"error: {reference}: ")
    assert hint in stderr.getvalue()
    assert "Traceback" not in stderr.getvalue() and stdout.getvalue() == ""
    assert elapsed < BOUND_SECONDS
    assert _snapshot(lab) == before
