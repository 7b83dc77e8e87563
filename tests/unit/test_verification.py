"""The verification suite's parts without the lab: the plugin's registration and its refusals, the
SIP OPTIONS probe against local UDP peers, the judgements, the run record's fix and moment, the
testinfra hosts' settings (CA, known_hosts), the JUnit reading, the exit statuses and the table."""

from __future__ import annotations

import importlib.metadata
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from testinfra.backend.base import CommandResult

from remediate.cli import render_verification
from remediate.genesys import logs
from remediate.journal import Journal, RunRecord, read_run
from remediate.state import StateDir
from remediate.status import ExitStatus
from remediate.transport.settings import SSHSettings, WinRMSettings
from remediate.verification import judge, remote, sip
from remediate.verification.context import run_fix, run_since
from remediate.verification.runner import (
    Check,
    Outcome,
    VerificationResult,
    parse_junit,
)

EXAMPLE_LOGS = Path(__file__).resolve().parents[2] / "examples" / "logs"
PYTEST = str(Path(sys.executable).with_name("pytest"))

# The plugin and its entry point ------------------------------------------------------------


def test_the_plugin_is_registered_for_pytest() -> None:
    plugins = {
        entry.name: entry.value for entry in importlib.metadata.entry_points(group="pytest11")
    }
    assert plugins["remediate"] == "remediate.verification.plugin"


def _suite(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTEST, "--pyargs", "remediate.verification", "-p", "no:cacheprovider", *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_suite_refuses_to_run_without_dns(tmp_path: Path) -> None:
    completed = _suite(tmp_path)
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR
    assert "needs the DNs to verify: --dn DN" in completed.stderr


def test_the_suite_names_a_missing_inventory(tmp_path: Path) -> None:
    completed = _suite(tmp_path, "--inventory", str(tmp_path / "nowhere"), "--dn", "5001")
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR
    assert "inventory-missing" in completed.stderr and "nowhere" in completed.stderr


def test_the_plugin_stays_inert_in_other_test_runs(tmp_path: Path) -> None:
    (tmp_path / "test_other.py").write_text("def test_other():\n    assert 1 + 1 == 2\n")
    completed = subprocess.run(
        [PYTEST, "-p", "no:cacheprovider", "test_other.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout
    assert "remediate verification" not in completed.stdout


# The SIP OPTIONS probe -----------------------------------------------------------------------

Responder = Callable[[bytes, int], list[bytes]]
SipPeer = Callable[[Responder], tuple[int, list[bytes]]]


@pytest.fixture
def sip_peer() -> Iterator[SipPeer]:
    """A UDP peer on 127.0.0.1 answering each datagram with what `respond(data, count)` says."""
    peers: list[tuple[socket.socket, threading.Thread]] = []

    def start(respond: Responder) -> tuple[int, list[bytes]]:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        server.settimeout(0.1)
        received: list[bytes] = []

        def serve() -> None:
            while server.fileno() != -1:
                try:
                    data, source = server.recvfrom(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                received.append(data)
                for answer in respond(data, len(received)):
                    server.sendto(answer, source)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        peers.append((server, thread))
        return server.getsockname()[1], received

    yield start
    for server, thread in peers:
        server.close()
        thread.join(timeout=2)


def _headers(request: bytes) -> tuple[str, dict[str, str]]:
    start, *lines = request.decode().split("\r\n\r\n")[0].split("\r\n")
    return start, dict(line.split(": ", 1) for line in lines)


def _answer(request: bytes, status: str, *, call_id: str | None = None) -> bytes:
    _, headers = _headers(request)
    lines = [f"SIP/2.0 {status}", f"Via: {headers['Via']};received=127.0.0.1"]
    lines += [f"From: {headers['From']}", f"To: {headers['To']};tag=abc"]
    lines += [f"Call-ID: {call_id or headers['Call-ID']}", f"CSeq: {headers['CSeq']}"]
    return ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()


def test_options_probe_retransmits_and_reads_the_200(sip_peer: SipPeer) -> None:
    port, received = sip_peer(lambda data, count: [] if count == 1 else [_answer(data, "200 OK")])
    result = sip.options_probe("127.0.0.1", port, timeout=3.0)
    assert result.answered_ok and result.status == 200 and result.sent == 2
    assert received[0] == received[1]  # a retransmission is the same request
    start, headers = _headers(received[0])
    assert start == f"OPTIONS sip:127.0.0.1:{port} SIP/2.0"
    assert headers["Via"].startswith("SIP/2.0/UDP 127.0.0.1:")
    assert ";branch=z9hG4bK" in headers["Via"] and headers["Via"].endswith(";rport")
    assert headers["CSeq"] == "1 OPTIONS" and headers["Max-Forwards"] == "70"
    assert headers["Content-Length"] == "0" and ";tag=" in headers["From"]


def test_options_probe_ignores_strangers_and_provisionals(sip_peer: SipPeer) -> None:
    port, _ = sip_peer(
        lambda data, count: [
            _answer(data, "200 OK", call_id="someone-else@127.0.0.1"),
            _answer(data, "100 Trying"),
            _answer(data, "404 Not Found"),
        ]
    )
    result = sip.options_probe("127.0.0.1", port, timeout=2.0)
    assert (result.status, result.reason, result.answered_ok) == (404, "Not Found", False)


def test_options_probe_without_an_answer(sip_peer: SipPeer) -> None:
    port, received = sip_peer(lambda data, count: [])
    result = sip.options_probe("127.0.0.1", port, timeout=1.0)
    assert result.status is None and not result.answered_ok
    assert result.reason == f"no final response in 1 s ({result.sent} sent)"
    assert result.sent == len(received) == 2  # at 0 and 0.5 s
    assert 0.9 < result.seconds < 1.5


def test_options_probe_to_a_closed_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = sip.options_probe("127.0.0.1", port, timeout=1.0)
    assert result.status is None and result.reason == "port unreachable (ICMP)"


# Judgements ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history() -> logs.RegistrationHistory:
    paths = sorted(EXAMPLE_LOGS.glob("SIP_P-001.*.log"))
    return logs.registrations(logs.read_logs(paths), ["1003", "5001", "5002"])


def test_latest_registration_accepted_after_a_restart(history: logs.RegistrationHistory) -> None:
    verdict = judge.latest_registration(
        history, "1003", datetime(2026, 2, 2, 14, 0), after_restart=True
    )
    assert verdict.ok
    assert verdict.detail == "1003: accepted at 2026-02-03 00:02:19.739 from 192.168.210.81:5090"


def test_latest_registration_refused(history: logs.RegistrationHistory) -> None:
    verdict = judge.latest_registration(
        history, "5002", datetime(2026, 2, 2, 14, 0), after_restart=True
    )
    assert not verdict.ok
    assert verdict.detail.startswith(
        "5002: latest registration refused at 2026-02-03 00:01:02.410 from 192.168.210.54:5060"
    )


def test_nothing_since_a_restart_is_out_of_service(history: logs.RegistrationHistory) -> None:
    since = datetime(2026, 2, 3, 1, 0)
    verdict = judge.latest_registration(history, "1003", since, after_restart=True)
    assert not verdict.ok
    assert (
        verdict.detail
        == "1003: no registration in the SIP Server log since 2026-02-03 01:00:00.000"
    )


def test_without_a_restart_an_earlier_binding_still_holds(
    history: logs.RegistrationHistory,
) -> None:
    since = datetime(2026, 2, 3, 1, 0)
    accepted = judge.latest_registration(history, "1003", since, after_restart=False)
    assert accepted.ok and "nothing since changed it" in accepted.detail
    refused = judge.latest_registration(history, "5001", since, after_restart=False)
    assert not refused.ok and "refused" in refused.detail


def test_host_local_time_follows_the_hosts_offset() -> None:
    host_now = datetime(2026, 2, 2, 14, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    moment = datetime(2026, 2, 2, 8, 24, 59, tzinfo=UTC)
    assert judge.host_local(moment, host_now) == datetime(2026, 2, 2, 13, 54, 59)


def test_basic_regex_matches_markers_literally() -> None:
    assert remote.basic_regex("; BEGIN remediate managed: from.genesys") == (
        "; BEGIN remediate managed: from\\.genesys"
    )
    assert remote.basic_regex("[a]*^$\\") == "\\[a\\]\\*\\^\\$\\\\"


# The run record: which fix, from when -----------------------------------------------------


def _run(
    tmp_path: Path, steps: list[tuple[str, dict[str, object]]], fix: str = "auto"
) -> RunRecord:
    state = StateDir.open(tmp_path / "state")
    journal = Journal.start(
        state, site="lab", dns=["5001"], fix=fix, change_id="CHG1", action="apply", secrets=[]
    )
    with journal:
        for name, data in steps:
            journal.step_started(name)
            journal.step_finished(name, data)
    return read_run(state, journal.run_id)


def test_a_run_with_a_restart_counts_from_the_host_clock(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        [
            ("preflight", {"fix": {"name": "trunk", "needs_restart": True}}),
            ("restart", {"host_clock": "2026-02-02T14:00:01.500000+05:30"}),
        ],
    )
    assert run_fix(run) == "trunk"
    since = run_since(run)
    assert since.after_restart
    assert since.moment == datetime(2026, 2, 2, 8, 30, 1, 500000, tzinfo=UTC)
    assert "host clock before the restart of run" in since.source


def test_a_run_without_a_restart_counts_from_its_start(tmp_path: Path) -> None:
    run = _run(tmp_path, [("preflight", {"fix": {"name": "dialplan"}})], fix="dialplan")
    since = run_since(run)
    assert not since.after_restart
    assert since.moment == datetime.fromisoformat(run.metadata.started)
    assert run_fix(run) == "dialplan"


def test_a_run_that_chose_no_fix(tmp_path: Path) -> None:
    run = _run(tmp_path, [("preflight", {"fix": None})])
    assert run_fix(run) is None


# The testinfra hosts -------------------------------------------------------------------------


def _winrm(**changes: Any) -> WinRMSettings:
    settings = WinRMSettings(
        inventory_host="genesys-x",
        address="127.0.0.81",
        port=5986,
        scheme="https",
        user="remediate",
        password="p@ss:w/rd!",
        ca_trust_path="/etc/lab/ca.pem",
    )
    return replace(settings, **changes)


def test_winrm_host_validates_against_the_inventory_ca() -> None:
    arguments = remote.winrm_host(_winrm()).backend.conn_args
    assert arguments["endpoint"] == "https://127.0.0.81:5986/wsman"
    assert arguments["transport"] == "ntlm"
    assert (arguments["username"], arguments["password"]) == ("remediate", "p@ss:w/rd!")
    assert arguments["ca_trust_path"] == "/etc/lab/ca.pem"
    assert "server_cert_validation" not in arguments  # pywinrm's default: validate


def test_winrm_host_ignores_the_certificate_only_when_the_inventory_says_so() -> None:
    settings = _winrm(address="127.0.0.82", validate_certificate=False, lab=True)
    arguments = remote.winrm_host(settings).backend.conn_args
    assert arguments["server_cert_validation"] == "ignore"
    assert "ignore" in remote.certificate_note(settings)


def test_winrm_host_over_http_and_its_timeouts() -> None:
    settings = _winrm(address="127.0.0.83", port=5985, scheme="http", read_timeout=31)
    arguments = remote.winrm_host(settings).backend.conn_args
    assert arguments["endpoint"] == "http://127.0.0.83:5985/wsman"
    assert arguments["read_timeout_sec"] == 31 and arguments["operation_timeout_sec"] == 20


def test_winrm_host_refuses_what_testinfra_cannot_speak() -> None:
    with pytest.raises(remote.HostUnreachable, match=r"NTLM only.*kerberos"):
        remote.winrm_host(_winrm(address="127.0.0.84", auth="kerberos"))


def test_ssh_host_checks_the_host_key_strictly() -> None:
    settings = SSHSettings(
        inventory_host="asterisk-x",
        address="127.0.0.54",
        port=2222,
        user="ops",
        private_key_file="/keys/id_ed25519",
        known_hosts_file="/keys/known hosts",
        connect_timeout=7.0,
    )
    backend = remote.ssh_host(settings).backend
    command, arguments = backend._build_ssh_command("true")
    line = " ".join(command) % tuple(arguments)
    assert "-o 'UserKnownHostsFile=/keys/known hosts'" in line
    assert "-o StrictHostKeyChecking=yes" in line and "-o BatchMode=yes" in line
    assert "-i /keys/id_ed25519" in line and "-o Port=2222" in line and "-o User=ops" in line
    assert "ConnectTimeout=7" in line and "ControlMaster" not in line


def test_reaching_names_the_host_that_failed() -> None:
    unreachable = remote.HostUnreachable
    with (
        pytest.raises(unreachable, match=r"^genesys-x \(WinRM\): ConnectionError"),
        remote.reaching("genesys-x (WinRM)"),
    ):
        raise requests.ConnectionError("refused")
    failed = CommandResult(None, 255, b"ssh", b"", b"Host key verification failed.\r\n")
    with (
        pytest.raises(unreachable, match=r"exit 255.*Host key verification failed"),
        remote.reaching("asterisk-x (SSH)"),
    ):
        raise RuntimeError(failed)
    with pytest.raises(RuntimeError, match="a bug"), remote.reaching("asterisk-x (SSH)"):
        raise RuntimeError("a bug")


# The JUnit XML, the result, the table -----------------------------------------------------

JUNIT = """\
<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite
name="pytest" errors="1" failures="1" skipped="1" tests="5" time="2.5">
<testcase classname="test_genesys" name="test_service_running" time="0.285"><properties>
<property name="check" value="service_running" /><property name="target" value="genesys-lab" />
</properties></testcase>
<testcase classname="test_genesys" name="test_registration_accepted[5001]" time="0.236">
<properties><property name="check" value="registration_accepted" />
<property name="target" value="5001" /></properties><failure message="AssertionError: 5001: \
latest registration refused&#10;assert False">long text</failure>
</testcase>
<testcase classname="test_asterisk" name="test_dialplan_block_present" time="0.002"><properties>
<property name="check" value="dialplan_block_present" />
<property name="target" value="asterisk-lab" /></properties><skipped type="pytest.skip"
message="the trusted-gateway fix does not write the managed dialplan block">x</skipped></testcase>
<testcase classname="test_asterisk" name="test_sip_port_listening" time="0.1"><properties>
<property name="check" value="sip_port_listening" /><property name="target" value="asterisk-lab" />
<property name="unreachable" value="asterisk-lab (SSH): ssh failed (exit 255): reset" />
</properties><error message="failed on setup with &quot;HostUnreachable: ...&quot;">e</error>
</testcase>
<testcase classname="test_mine" name="test_ntp[5001]" time="0.1"><error
message="failed on setup with &quot;KeyError: 'x'&quot;">e</error></testcase>
</testsuite></testsuites>"""


def test_parse_junit(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    path.write_text(JUNIT)
    checks = parse_junit(path)
    assert [(c.name, c.target, c.outcome) for c in checks] == [
        ("service_running", "genesys-lab", Outcome.PASSED),
        ("registration_accepted", "5001", Outcome.FAILED),
        ("dialplan_block_present", "asterisk-lab", Outcome.SKIPPED),
        ("sip_port_listening", "asterisk-lab", Outcome.UNREACHABLE),
        ("ntp", "", Outcome.ERROR),
    ]
    assert checks[1].message == "5001: latest registration refused"  # the assertion's message
    assert checks[2].message == "the trusted-gateway fix does not write the managed dialplan block"
    assert checks[3].message == "asterisk-lab (SSH): ssh failed (exit 255): reset"
    assert checks[4].message == "failed on setup with \"KeyError: 'x'\""
    assert checks[1].test == "test_genesys::test_registration_accepted[5001]"


def _result(*outcomes: Outcome) -> VerificationResult:
    checks = tuple(
        Check(
            f"check{index}",
            "genesys-lab",
            outcome,
            "" if outcome is Outcome.PASSED else f"why {index}",
            f"t::c{index}",
            0.1,
        )
        for index, outcome in enumerate(outcomes)
    )
    return VerificationResult(
        "lab", ("5001",), None, None, "site lab, DN 5001", checks, Path("/s/v.xml"), 1.25
    )


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ((Outcome.PASSED, Outcome.SKIPPED), ExitStatus.SUCCESS),
        ((Outcome.PASSED, Outcome.FAILED), ExitStatus.VERIFICATION_FAILED),
        ((Outcome.PASSED, Outcome.ERROR), ExitStatus.VERIFICATION_FAILED),
        ((Outcome.FAILED, Outcome.UNREACHABLE), ExitStatus.PRECONDITION_FAILED),
        ((Outcome.SKIPPED,), ExitStatus.VERIFICATION_FAILED),  # nothing was verified
    ],
)
def test_exit_status(outcomes: tuple[Outcome, ...], status: ExitStatus) -> None:
    result = _result(*outcomes)
    assert result.exit_status is status
    assert result.passed is (status is ExitStatus.SUCCESS)
    assert result.to_json()["exit_code"] == int(status)


def test_render_verification() -> None:
    text = render_verification(_result(Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED))
    lines = text.splitlines()
    assert lines[0] == "Verification: site lab, DN 5001"
    assert lines[1].split() == ["CHECK", "TARGET", "RESULT", "REASON"]
    assert lines[2].split() == ["check0", "genesys-lab", "passed"]
    assert lines[3].split()[:4] == ["check1", "genesys-lab", "FAILED", "why"]
    assert lines[-2] == "FAILED: 3 checks, 1 passed, 1 failed, 1 skipped (1.2 s)"
    assert lines[-1] == "JUnit XML: /s/v.xml"
    assert all(line == line.rstrip() for line in lines)
    assert "\x1b" not in text  # plain text: no terminal codes
