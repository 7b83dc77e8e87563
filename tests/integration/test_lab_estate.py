"""The lab as a whole, seen through the product: its log read by the product's parser (the two share
no code), a re-registration on the wire, and `remediate lab` on the command line."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
from pathlib import Path

from remediate.cli import main
from remediate.env import Environment
from remediate.genesys.logs import (
    GatewayLookup,
    RegistrarOutcome,
    RegistrationTransaction,
    Verdict,
    read_logs,
    registrations,
)
from remediate.lab.layout import LabLayout, save_layout
from remediate.status import ExitStatus


def _transactions(layout: LabLayout, dn: str) -> list[RegistrationTransaction]:
    segments = sorted(layout.log_dir.glob("SIP_P-001.*.log"))
    assert segments, f"the lab wrote no SIP Server log in {layout.log_dir}"
    history = registrations(read_logs(segments), [dn], keep=500)
    timeline = history.timelines.get(dn)
    assert timeline is not None, f"no registration of {dn} in the lab's log"
    return [entry for entry in timeline.entries if isinstance(entry, RegistrationTransaction)]


def test_the_lab_log_parses_into_the_seed_transactions(lab: LabLayout) -> None:
    genesys, asterisk = lab.addresses.genesys_host, lab.addresses.asterisk_host

    working = _transactions(lab, "1003")[-1]
    assert (working.source_address, working.source_port) == (genesys, 5090)
    assert working.user_agent == "Genesys-Softphone/9.0.014.13"
    assert working.verdict is Verdict.ACCEPTED
    assert working.server_events == [0] or working.server_events == [3]
    assert working.response_code == 200
    assert isinstance(working.gateway, GatewayLookup) and working.gateway.gateway is None

    failing = _transactions(lab, "5002")[-1]
    assert (failing.source_address, failing.source_port) == (asterisk, 5060)
    assert failing.user_agent == "Asterisk-Genesys-Gateway"
    assert failing.expires == 3600
    assert failing.gateway is not None
    assert (failing.gateway.address, failing.gateway.gateway) == (asterisk, None)
    assert failing.server_events == [2]
    outcomes = [(o.outcome, o.dn) for o in failing.outcomes if isinstance(o, RegistrarOutcome)]
    assert outcomes == [("TERMINATED", "5002")]
    assert failing.response_code == 403
    assert failing.verdict is Verdict.REFUSED


def test_send_register_unregisters_then_registers_as_the_sip_server_logs_it(
    lab: LabLayout,
) -> None:
    before = len(_transactions(lab, "5001"))
    command = [str(lab.bin_dir / "asterisk"), "-rx", "pjsip send register genesys_reg_5001"]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    assert answer.returncode == 0
    assert answer.stdout.strip() == ""  # as the real Asterisk 22: nothing on success

    deadline = time.monotonic() + 10
    new: list[RegistrationTransaction] = []
    while time.monotonic() < deadline:
        new = _transactions(lab, "5001")[before:]
        if len(new) >= 2:
            break
        time.sleep(0.1)
    assert [t.expires for t in new[:2]] == [0, 3600], "an un-REGISTER first, then the REGISTER"
    for transaction in new[:2]:
        assert transaction.source_address == lab.addresses.asterisk_host
        assert transaction.user_agent == "Asterisk-Genesys-Gateway"
    assert new[0].call_id == new[1].call_id, "Asterisk re-registers within one Call-ID"
    assert new[1].cseq > new[0].cseq
    assert new[1].verdict is Verdict.REFUSED  # the seed's fault is still there


def _cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), env=Environment(stdin=io.StringIO(), stdout=stdout, stderr=stderr))
    return code, stdout.getvalue(), stderr.getvalue()


def test_remediate_lab_up_status_fault_logs_down(free_lab_dir: LabLayout) -> None:
    layout = free_lab_dir
    save_layout(layout, "untrusted-gateway")  # this run's addresses
    root = str(layout.root)

    code, out, err = _cli("lab", "up", "--dir", root)
    assert code == ExitStatus.SUCCESS, err
    assert "lab up in" in err  # progress went to stderr
    assert "DNs in service: 1002, 1003" in out

    code, out, _ = _cli("lab", "status", "--dir", root, "--output", "json")
    status = json.loads(out)
    assert code == ExitStatus.SUCCESS
    assert status["schema_version"] == 1 and status["state"] == "up"
    assert status["service_state"] == "Running"
    assert {"1002", "1003"} <= set(status["dns_in_service"])
    assert not {"5001", "5002"} & set(status["dns_in_service"])

    assert _cli("lab", "fault", "winrm-401", "--dir", root)[1] == "faults on: winrm-401\n"
    assert _cli("lab", "fault", "winrm-401", "--off", "--dir", root)[1] == "faults on: none\n"
    code, _, err = _cli("lab", "fault", "no-such-fault", "--dir", root)
    assert code == ExitStatus.ERROR and "invalid choice" in err

    code, out, _ = _cli("lab", "logs", "--dir", root, "--lines", "400")
    assert code == ExitStatus.SUCCESS
    assert "==> sip-server" in out and "REGISTRAR: TERMINATED:5002" in out

    code, out, _ = _cli("lab", "down", "--dir", root)
    assert code == ExitStatus.SUCCESS and out.startswith("lab down")
    code, out, _ = _cli("lab", "down", "--dir", root)  # stopping twice is fine
    assert code == ExitStatus.SUCCESS


def test_remediate_lab_up_refuses_a_taken_port(free_lab_dir: LabLayout) -> None:
    layout = free_lab_dir
    save_layout(layout, "untrusted-gateway")
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((layout.addresses.genesys_host, layout.addresses.sip_port))
    try:
        code, _, err = _cli("lab", "up", "--dir", str(layout.root))
    finally:
        squatter.close()
    assert code == ExitStatus.PRECONDITION_FAILED
    assert "lab-port-in-use" in err
    assert f"{layout.addresses.genesys_host}:{layout.addresses.sip_port}" in err
    assert "Traceback" not in err
    assert not Path(layout.pid_file("genesys")).exists()
