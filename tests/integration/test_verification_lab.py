"""The post-change verification suite against the lab: it passes after each fix and fails, naming
the broken check, in each fault scenario; run standalone with `pytest --pyargs` (from a directory
outside the repository, so only the installed entry point can find the plugin), through
`remediate verify`, and through the runner API the engine calls.

Two fixes are applied by the engine (`api.apply`), so that `--run` reads a real run record; the
trunk fix is applied by hand through the product's own GaxClient, SSH and WinRM transports.
The lab's status file is read (lab side) only to know when a DN has registered again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from remediate import api, engine
from remediate.asterisk import cli
from remediate.changes import AnnexOption, managed_markers, new_dn
from remediate.cli import main
from remediate.env import Environment
from remediate.genesys.gax import GaxClient
from remediate.genesys.service import SipServerService
from remediate.inventory import load_site
from remediate.lab import control
from remediate.lab.layout import LabLayout
from remediate.status import ExitStatus
from remediate.transport.ssh import SSHTransport
from remediate.transport.winrm import WinRMTransport
from remediate.verification.runner import Outcome, VerificationResult, run_verification

pytestmark = pytest.mark.lab

# `pytest --pyargs remediate.verification --inventory`: the console script of this environment.
SUITE = (str(Path(sys.executable).with_name("pytest")), "--pyargs", "remediate.verification")
SUITE += ("-p", "no:cacheprovider", "--inventory")
REGISTER_TIMEOUT = 20.0


def _inventory(layout: LabLayout) -> Path:
    return layout.inventory_dir / "hosts.yml"


def _state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state


def _outcomes(result: VerificationResult) -> dict[tuple[str, str], Outcome]:
    return {(check.name, check.target): check.outcome for check in result.checks}


def _message(result: VerificationResult, name: str, target: str) -> str:
    return next(c.message for c in result.checks if (c.name, c.target) == (name, target))


def _registered_at(layout: LabLayout, dn: str) -> str | None:
    try:
        status = json.loads(layout.genesys_status_file.read_text())
    except (OSError, ValueError):
        return None
    if dn not in status.get("in_service", []):
        return None
    return str(status["bindings"][dn]["registered_at"])


def _wait_registered_again(layout: LabLayout, dn: str, before: str | None) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT
    while (now := _registered_at(layout, dn)) is None or now == before:
        if time.monotonic() > deadline:
            pytest.fail(f"{dn} did not register again within {REGISTER_TIMEOUT} s")
        time.sleep(0.1)


def _apply(layout: LabLayout, fix: str, state: Path) -> str:
    report = api.apply(
        _inventory(layout),
        None,
        engine.Options(dns=("5001",), fix=fix, change_id="CHG-VERIFY", yes=True),
        state_dir=state,
    )
    assert report.exit_status is ExitStatus.SUCCESS, report.message
    return report.run_id


def _junit_cases(path: Path) -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(path).getroot()  # noqa: S314 (our own pytest run's report)
    return {case.get("name", ""): case for case in root.iter("testcase")}


def _outcome(case: ElementTree.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


# The shared lab: the seed's fault (untrusted gateway) -----------------------------------------


def test_untrusted_gateway_fails_through_remediate_verify(lab: LabLayout, tmp_path: Path) -> None:
    state = _state_dir(tmp_path)
    out = StringIO()
    env = Environment(stdout=out, stderr=StringIO())
    argv = ["verify", "-i", str(_inventory(lab)), "--dn", "5001", "--dn", "1003"]
    code = main([*argv, "--fix", "trusted-gateway", "--state-dir", str(state)], env)
    text = out.getvalue()
    assert code == ExitStatus.VERIFICATION_FAILED, text
    rows = {tuple(line.split()[:3]) for line in text.splitlines()}
    assert ("registration_accepted", "5001", "FAILED") in rows
    assert ("registration_accepted", "1003", "passed") in rows
    assert ("asterisk_registration", "5001", "FAILED") in rows
    assert ("fix_configuration", "genesys-lab", "FAILED") in rows
    assert ("service_running", "genesys-lab", "passed") in rows
    assert ("dialplan_block_present", "asterisk-lab", "skipped") in rows
    assert f"from {lab.addresses.asterisk_host}:5060, answered 403" in text
    assert "does not trust" in text
    junit = Path(text.rsplit("JUnit XML: ", 1)[1].strip())
    assert junit.parent == state / "verify" and junit.is_file()
    assert "Lab-WinRM" not in junit.read_text()


def test_standalone_pytest_finds_the_plugin_outside_the_repository(
    lab: LabLayout, tmp_path: Path
) -> None:
    junit = tmp_path / "report.xml"
    completed = subprocess.run(
        [*SUITE, str(_inventory(lab)), "--dn", "5001", f"--junitxml={junit}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output  # the seed's fault: a check fails
    assert "remediate verification: site lab, DN 5001" in output
    failed = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert any("test_genesys.py::test_registration_accepted[5001]" in line for line in failed)
    cases = _junit_cases(junit)
    assert _outcome(cases["test_service_running"]) == "passed"
    assert _outcome(cases["test_sip_options_answered"]) == "passed"
    assert _outcome(cases["test_sip_port_listening"]) == "passed"
    skipped = cases["test_fix_configuration"].find("skipped")
    assert skipped is not None and "no fix named" in skipped.get("message", "")


def test_registrar_silent_fails_the_options_probe(lab: LabLayout, tmp_path: Path) -> None:
    control.fault(lab, "registrar-silent", True)
    result = run_verification(_inventory(lab), None, ["1003"], state_dir=_state_dir(tmp_path))
    outcomes = _outcomes(result)
    server = f"{lab.addresses.genesys_host}:5060"
    assert outcomes[("sip_options_answered", server)] is Outcome.FAILED
    assert "no final response" in _message(result, "sip_options_answered", server)
    assert outcomes[("service_running", "genesys-lab")] is Outcome.PASSED
    assert result.exit_status is ExitStatus.VERIFICATION_FAILED and not result.passed


def test_unreachable_asterisk_host_exits_7(lab: LabLayout, tmp_path: Path) -> None:
    control.fault(lab, "ssh-drop", True)
    result = run_verification(_inventory(lab), None, ["1003"], state_dir=_state_dir(tmp_path))
    outcomes = _outcomes(result)
    assert outcomes[("sip_port_listening", "asterisk-lab")] is Outcome.UNREACHABLE
    assert "asterisk-lab (SSH)" in _message(result, "sip_port_listening", "asterisk-lab")
    assert outcomes[("service_running", "genesys-lab")] is Outcome.PASSED
    assert result.exit_status is ExitStatus.PRECONDITION_FAILED


# Fresh labs: each fix, and the other fault scenarios -------------------------------------------


def test_passes_after_the_trusted_gateway_fix(lab_factory: Any, tmp_path: Path) -> None:
    layout = lab_factory("untrusted-gateway")
    state = _state_dir(tmp_path)
    run_id = _apply(layout, "trusted-gateway", state)
    out = StringIO()
    code = main(
        [
            "verify",
            "-i",
            str(_inventory(layout)),
            "--run",
            run_id,
            "--state-dir",
            str(state),
            "--output",
            "json",
        ],
        Environment(stdout=out, stderr=StringIO()),
    )
    document = json.loads(out.getvalue())
    assert code == ExitStatus.SUCCESS, document
    assert document["passed"] and document["fix"] == "trusted-gateway"
    assert document["dns"] == ["5001"]  # the run's
    assert "host clock before the restart of run" in document["scope"]
    checks = {(c["name"], c["target"]): c for c in document["checks"]}
    for name, target in (
        ("service_running", "genesys-lab"),
        ("registration_accepted", "5001"),
        ("fix_configuration", "genesys-lab"),
        ("asterisk_registration", "5001"),
        ("sip_port_listening", "asterisk-lab"),
        ("sip_options_answered", f"{layout.addresses.genesys_host}:5060"),
    ):
        assert checks[(name, target)]["outcome"] == "passed", checks[(name, target)]
    block = checks[("dialplan_block_present", "asterisk-lab")]
    assert block["outcome"] == "skipped"
    assert "trusted-gateway fix does not write the managed dialplan block" in block["message"]
    junit = Path(document["junit"])
    assert junit.parent == state / "runs" / run_id and junit.stat().st_mode & 0o777 == 0o600


def _apply_trunk_fix_by_hand(layout: LabLayout) -> None:
    """The trunk fix through the product's transports: the Trunk DN, the route back on Asterisk,
    a restart of SIP Server, a REGISTER."""
    site = load_site(_inventory(layout))
    contact = f"{site.asterisk.sip_address}:{site.asterisk.sip_port}"
    with GaxClient(site.genesys.gax) as gax:
        switch = gax.find("CfgSwitch", site.genesys.switch)
        assert switch is not None
        options = [
            AnnexOption("TServer", "contact", contact),
            AnnexOption("TServer", "prefix", site.fixes.trunk_prefix),
            AnnexOption("TServer", "oos-check", str(site.fixes.trunk_oos_check)),
        ]
        gax.create(new_dn(site.fixes.trunk_name, switch, "CFGTrunk", options))
    context = site.fixes.dialplan_context
    begin, end = managed_markers(context)
    block = (
        f"{begin}\n[{context}]\nexten => _5XXX,1,NoOp(Call from Genesys to ${{EXTEN}})\n"
        f"same => n,Dial(PJSIP/${{EXTEN}})\n{end}\n"
    )
    before = _registered_at(layout, "5001")
    with SSHTransport(site.asterisk.ssh) as ssh:
        path = site.asterisk.extensions_conf
        ssh.write_file_atomic(path, ssh.read_file(path) + block.encode())
        reload = ssh.run(cli.rx(cli.dialplan_reload(), binary=site.asterisk.command))
        assert "Dialplan reloaded." in reload.stdout_text
        with WinRMTransport(site.genesys.winrm) as winrm:
            assert SipServerService(winrm, site.genesys.service_name).restart(30, 30).status == (
                "Running"
            )
        registration = site.registration_for("5001")
        assert registration is not None
        ssh.run(cli.rx(cli.send_register(registration), binary=site.asterisk.command))
    _wait_registered_again(layout, "5001", before)


def test_passes_after_the_trunk_fix_standalone(lab_factory: Any, tmp_path: Path) -> None:
    layout = lab_factory("untrusted-gateway")
    _apply_trunk_fix_by_hand(layout)
    junit = tmp_path / "report.xml"
    completed = subprocess.run(
        [*SUITE, str(_inventory(layout)), "--dn", "5001", "--fix", "trunk", f"--junitxml={junit}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    cases = _junit_cases(junit)
    for name in (
        "test_service_running",
        "test_registration_accepted[5001]",
        "test_fix_configuration",
        "test_dialplan_block_present",
        "test_dialplan_loaded[5001]",
        "test_asterisk_registration[5001]",
        "test_sip_options_answered",
    ):
        assert _outcome(cases[name]) == "passed", name


def test_dialplan_missing_then_passes_after_the_dialplan_fix(
    lab_factory: Any, tmp_path: Path
) -> None:
    layout = lab_factory("trunk-no-reverse-route")
    state = _state_dir(tmp_path)
    before = run_verification(_inventory(layout), None, ["5001"], state_dir=state, fix="trunk")
    outcomes = _outcomes(before)
    assert outcomes[("dialplan_block_present", "asterisk-lab")] is Outcome.FAILED
    assert outcomes[("dialplan_loaded", "5001")] is Outcome.FAILED
    assert "no extension" in _message(before, "dialplan_loaded", "5001")
    assert outcomes[("fix_configuration", "genesys-lab")] is Outcome.PASSED  # the trunk is there
    assert before.exit_status is ExitStatus.VERIFICATION_FAILED

    run_id = _apply(layout, "dialplan", state)
    after = run_verification(_inventory(layout), None, [], run_id=run_id, state_dir=state)
    assert after.passed and after.exit_status is ExitStatus.SUCCESS, after.checks
    assert "start of run" in after.scope  # the dialplan fix restarts nothing
    assert _outcomes(after)[("dialplan_loaded", "5001")] is Outcome.PASSED
    skipped = _message(after, "fix_configuration", "genesys-lab")
    assert "dialplan fix does not write Genesys configuration" in skipped
    assert after.junit_path.parent == state / "runs" / run_id


def test_service_stopped_fails_the_service_check(lab_factory: Any, tmp_path: Path) -> None:
    layout = lab_factory("service-stopped")
    result = run_verification(_inventory(layout), None, ["1003"], state_dir=_state_dir(tmp_path))
    outcomes = _outcomes(result)
    assert outcomes[("service_running", "genesys-lab")] is Outcome.FAILED
    assert "TSrvSIP64" in _message(result, "service_running", "genesys-lab")
    assert "Stopped" in _message(result, "service_running", "genesys-lab")
    assert outcomes[("sip_options_answered", f"{layout.addresses.genesys_host}:5060")] is (
        Outcome.FAILED
    )
    assert result.exit_status is ExitStatus.VERIFICATION_FAILED


def test_dn_not_configured_fails_the_dn_checks(lab_factory: Any, tmp_path: Path) -> None:
    layout = lab_factory("dn-not-configured")
    result = run_verification(_inventory(layout), None, ["5002"], state_dir=_state_dir(tmp_path))
    outcomes = _outcomes(result)
    assert outcomes[("dn_configured", "5002")] is Outcome.FAILED
    assert "does not exist in Genesys configuration" in _message(result, "dn_configured", "5002")
    assert outcomes[("registration_accepted", "5002")] is Outcome.FAILED
    assert outcomes[("service_running", "genesys-lab")] is Outcome.PASSED
    assert result.exit_status is ExitStatus.VERIFICATION_FAILED
