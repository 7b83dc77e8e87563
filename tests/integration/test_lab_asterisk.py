"""The lab's Asterisk host as real clients see it: the process, `asterisk -rx`, SIP on the wire.

The host runs as `python -m remediate.lab.asterisk` in a temporary lab directory, with the test's
addresses (REMEDIATE_TEST_ASTERISK_HOST / REMEDIATE_TEST_GENESYS_HOST). A UDP socket bound to the
Genesys registrar's address stands in for the registrar: it answers 200 to everything but the
REGISTERs of the DNs it is told to refuse (5002 here), which get 403, and records what arrives.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paramiko
import pytest

from remediate.lab.layout import LabAddresses, LabLayout, save_layout
from remediate.lab.sip import build_request, build_response, new_branch, parse_message

pytestmark = pytest.mark.lab

START_BOUND_SECONDS = 10.0
T = TypeVar("T")


@dataclass
class Received:
    at: float
    source: tuple[str, int]
    start_line: str
    headers: dict[str, str]


@dataclass
class Registrar:
    """A UDP stand-in for the Genesys registrar."""

    sock: socket.socket
    refused: frozenset[str]  # DNs whose REGISTERs get 403 Forbidden
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            message = parse_message(data)
            if not message.is_request:
                continue
            headers = {name: message.header(name) or "" for name in ("Call-ID", "CSeq", "Expires",
                       "User-Agent", "Contact", "To")}  # fmt: skip
            with self.lock:
                self.received.append(Received(time.time(), source, message.start_line, headers))
            expires = headers["Expires"] or "0"
            refused = any(f"{dn}@" in headers["To"] for dn in self.refused)
            if message.method == "REGISTER" and refused and expires != "0":
                reply = build_response(message, 403, "Forbidden", to_tag="reg", received=source)
            else:
                contact = [("Contact", f"{headers['Contact'].split(';')[0]};expires={expires}")]
                reply = build_response(message, 200, "OK", to_tag="reg", headers=contact)
            self.sock.sendto(reply, source)

    def registers(self, since: float, user: str) -> list[Received]:
        with self.lock:
            return [
                r
                for r in self.received
                if r.at >= since
                and r.start_line.startswith("REGISTER")
                and f"{user}@" in r.headers["To"]
            ]


@dataclass
class AsteriskHost:
    layout: LabLayout
    process: subprocess.Popen[bytes]
    registrar: Registrar
    start_seconds: float

    @property
    def a(self) -> LabAddresses:
        return self.layout.addresses

    def ssh(self, key_file: Path | None = None) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.layout.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            self.a.asterisk_host,
            port=self.a.ssh_port,
            username=os_user(),
            key_filename=str(key_file or self.layout.ssh_client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=5,
        )
        return client

    def run(self, command: str, stdin: bytes = b"") -> tuple[int, str, str]:
        with self.ssh() as client:
            channel_in, out, err = client.exec_command(command, timeout=10)
            if stdin:
                channel_in.write(stdin)
            channel_in.channel.shutdown_write()
            stdout, stderr = out.read().decode(), err.read().decode()
            return out.channel.recv_exit_status(), stdout, stderr

    def asterisk(self, command: str) -> str:
        status, stdout, stderr = self.run(f"asterisk -rx '{command}'")
        assert (status, stderr) == (0, "")
        return stdout


def os_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def addresses() -> LabAddresses:
    return LabAddresses(
        genesys_host=os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81",
        asterisk_host=os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54",
    )


def start_process(layout: LabLayout) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "remediate.lab.asterisk", "--dir", str(layout.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_ready(layout: LabLayout, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_BOUND_SECONDS
    while not layout.ready_file("asterisk").exists():
        if process.poll() is not None:
            raise AssertionError(f"the Asterisk host exited: {process.stderr.read()!r}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the Asterisk host never became ready"
        time.sleep(0.02)


@contextlib.contextmanager
def running_host(
    lab_manager: Any,
    directory: Path,
    scenario: str = "untrusted-gateway",
    refused: frozenset[str] = frozenset({"5002"}),
) -> Iterator[AsteriskHost]:
    """The host process in `directory`, with the stand-in registrar; stopped (and timed) after."""
    lab_manager.release()  # the shared lab of conftest.py binds the same addresses
    layout = LabLayout(directory, addresses())
    save_layout(layout, scenario)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((layout.addresses.genesys_host, layout.addresses.sip_port))
    registrar = Registrar(sock, refused)
    serving = threading.Thread(target=registrar.serve, daemon=True)
    serving.start()
    started = time.monotonic()
    process = start_process(layout)
    try:
        wait_ready(layout, process)
        yield AsteriskHost(layout, process, registrar, time.monotonic() - started)
    finally:
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            registrar.stopping.set()
            serving.join()
            sock.close()
        stop_seconds = time.monotonic() - stopping
    assert stop_seconds < 1.0, f"SIGTERM took {stop_seconds:.2f} s"
    assert not layout.asterisk_control_socket.exists()
    assert not layout.ready_file("asterisk").exists()


@pytest.fixture(scope="module")
def host(lab_manager: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskHost]:
    with running_host(lab_manager, tmp_path_factory.mktemp("asterisk-lab")) as running:
        yield running


# --- the process -----------------------------------------------------------------------------


def test_ready_quickly_with_its_addresses_and_seeded_files(host: AsteriskHost) -> None:
    assert host.start_seconds < 3.0
    ready = json.loads(host.layout.ready_file("asterisk").read_text())
    assert ready["pid"] == host.process.pid
    assert ready["ssh"] == {"host": host.a.asterisk_host, "port": host.a.ssh_port}
    known_hosts = host.layout.known_hosts.read_text()
    assert known_hosts.startswith(f"[{host.a.asterisk_host}]:{host.a.ssh_port} ssh-ed25519 ")
    for key in (host.layout.ssh_client_key, host.layout.ssh_host_key):
        assert key.stat().st_mode & 0o777 == 0o600
    pjsip = (host.layout.asterisk_etc / "pjsip.conf").read_text()
    assert f"match={host.a.genesys_host}" in pjsip
    assert f"server_uri=sip:{host.a.genesys_host}:{host.a.sip_port}" in pjsip


def test_a_second_host_on_the_same_addresses_is_refused(host: AsteriskHost, tmp_path: Path) -> None:
    other = LabLayout(tmp_path / "other", host.a)
    save_layout(other, "untrusted-gateway")
    process = start_process(other)
    try:
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1
    assert f"{host.a.asterisk_host}:{host.a.asterisk_sip_port}/udp" in stderr.decode()


def test_asterisk_without_daemon_says_what_the_real_one_says(
    host: AsteriskHost, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            str(host.layout.bin_dir / "asterisk"),
            "-s",
            str(tmp_path / "gone.ctl"),
            "-rx",
            "core show version",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == f"Unable to connect to remote asterisk (does {tmp_path / 'gone.ctl'} exist?)\n"
    )


# --- SIP --------------------------------------------------------------------------------------


def poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float = 3.0) -> T:
    """Fetch until `done` holds or the time is up; return the last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def row(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f" {name}/"))


def test_registrations_go_out_from_the_gateway_address_and_state_is_reported(
    host: AsteriskHost,
) -> None:
    first = poll(lambda: host.registrar.registers(0, "5001"), bool)
    assert first, "no REGISTER for 5001 arrived"
    assert first[0].source == (host.a.asterisk_host, host.a.asterisk_sip_port)
    assert first[0].headers["User-Agent"] == "Asterisk-Genesys-Gateway"
    assert first[0].headers["Expires"] == "3600"
    output = poll(lambda: host.asterisk("pjsip show registrations"), lambda o: "Rejected" in o)
    assert re.search(r" Registered        \(exp\. 35\d\ds\)$", row(output, "genesys_reg_5001"))
    # 403 with max_retries=0 and forbidden_retry_interval=0: rejected, and nothing retries.
    assert "n/a                         Rejected          (exp. " in row(output, "genesys_reg_5002")
    rejected_at = time.time()
    time.sleep(1.2)
    assert host.registrar.registers(rejected_at, "5002") == []
    log = host.layout.asterisk_log.read_text()
    assert "'403' fatal response received from" in log


def test_send_register_unregisters_then_registers_on_the_wire(host: AsteriskHost) -> None:
    poll(lambda: host.registrar.registers(0, "5001"), bool)
    mark = time.time()
    assert host.asterisk("pjsip send register genesys_reg_5001") == "\n"
    sent = poll(lambda: host.registrar.registers(mark, "5001"), lambda r: len(r) >= 2)
    assert sent, "no un-register/register pair arrived"
    unregister, register = sent[0], sent[1]
    assert unregister.headers["Expires"] == "0"
    assert unregister.headers["Contact"].endswith(";expires=0")
    assert register.headers["Expires"] == "3600"
    assert unregister.headers["Call-ID"] == register.headers["Call-ID"]
    first_cseq, second_cseq = (int(r.headers["CSeq"].split()[0]) for r in (unregister, register))
    assert second_cseq == first_cseq + 1
    assert {r.source for r in sent} == {(host.a.asterisk_host, host.a.asterisk_sip_port)}
    # The lab-side record (what --capture reads) holds the same exchange, responses included.
    # The record of the last response may come a moment after the registrar saw the REGISTER
    # (the same Call-ID's earlier exchanges are in it too): read until it is there.
    record = host.layout.asterisk_dir / "log" / "sip-register.jsonl"
    expected = [("sent", 0), ("received", 0), ("sent", 3600), ("received", 3600)]

    def last_exchange() -> list[dict[str, Any]]:
        entries = [json.loads(line) for line in record.read_text().splitlines()]
        return [e for e in entries if e["call_id"] == register.headers["Call-ID"]][-4:]

    exchange = poll(
        last_exchange, lambda found: [(e["direction"], e["expires"]) for e in found] == expected
    )
    assert [(e["direction"], e["expires"]) for e in exchange] == expected
    assert exchange[1]["line"] == "SIP/2.0 200 OK"
    output = poll(
        lambda: host.asterisk("pjsip show registrations"),
        lambda o: "Registered" in row(o, "genesys_reg_5001"),
    )
    assert "Registered" in row(output, "genesys_reg_5001")


def test_send_register_for_a_rejected_registration_tries_again(host: AsteriskHost) -> None:
    mark = time.time()
    assert host.asterisk("pjsip send register *all") == "Re-register all queued\n"
    sent = poll(lambda: host.registrar.registers(mark, "5002"), lambda r: len(r) >= 2)
    assert [r.headers["Expires"] for r in sent] == ["0", "3600"]


def sip_request(host: AsteriskHost, source: str, method: str, user: str = "") -> str:
    """Send one request to the gateway from `source` (any port); return the response's status."""
    target = f"{user}@" if user else ""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((source, 0))
        probe.settimeout(3)
        port = probe.getsockname()[1]
        request = build_request(
            method,
            f"sip:{target}{host.a.asterisk_host}:{host.a.asterisk_sip_port}",
            [
                ("Via", f"SIP/2.0/UDP {source}:{port};branch={new_branch()}"),
                ("From", f"<sip:genesys@{source}>;tag=probe"),
                ("To", f"<sip:{target}{host.a.asterisk_host}>"),
                ("Call-ID", f"probe-{time.time()}"),
                ("CSeq", f"1 {method}"),
                ("Contact", f"<sip:genesys@{source}:{port}>"),
                ("Max-Forwards", "70"),
            ],
        )
        probe.sendto(request, (host.a.asterisk_host, host.a.asterisk_sip_port))
        return parse_message(probe.recvfrom(65535)[0]).start_line


def test_options_are_answered_for_the_genesys_trunk_only(host: AsteriskHost) -> None:
    # The Genesys host's address is matched by the identify section (any port of it).
    assert sip_request(host, host.a.genesys_host, "OPTIONS") == "SIP/2.0 200 OK"
    stranger = ".".join([*host.a.asterisk_host.split(".")[:3], "250"])
    assert sip_request(host, stranger, "OPTIONS") == "SIP/2.0 401 Unauthorized"


# --- asterisk -rx over SSH ----------------------------------------------------------------------


def test_cli_answers_and_failures(host: AsteriskHost) -> None:
    assert host.asterisk("core show version").startswith("Asterisk 22.10.1 built by ")
    assert host.asterisk("pjsip reload") == (
        "No such command 'pjsip reload' (type 'core show help pjsip reload' for other possible "
        "commands)\n"
    )
    assert host.asterisk("pjsip show endpoint nosuch") == "Unable to find object nosuch.\n"
    endpoints = host.asterisk("pjsip show endpoints")
    assert f"        Match: {host.a.genesys_host}/32\n" in endpoints
    assert endpoints.endswith("\nObjects found: 1\n")
    assert host.asterisk("module reload res_pjsip.so") == (
        "Module 'res_pjsip.so' reloaded successfully.\n"
    )


def test_dialplan_change_is_proved_by_show_and_a_broken_file_keeps_the_old_one(
    host: AsteriskHost,
) -> None:
    conf = host.layout.asterisk_etc / "extensions.conf"
    original = conf.read_text()
    lines = len(original.splitlines())
    assert host.asterisk("dialplan show 5001@from-genesys") == (
        "There is no existence of 'from-genesys' context\n"
        "Command 'dialplan show 5001@from-genesys' failed.\n"
    )
    added = (
        "\n[from-genesys]\n"
        "exten => _5XXX,1,NoOp(Call from Genesys to ${EXTEN})\n"
        " same => n,Dial(PJSIP/${EXTEN})\n"
    )
    # A call from Genesys to 5001 finds no route back to the agent.
    assert sip_request(host, host.a.genesys_host, "INVITE", "5001") == "SIP/2.0 404 Not Found"
    try:
        with host.ssh() as client, client.open_sftp() as sftp, sftp.open(str(conf), "w") as out:
            out.write(original + added)
        assert host.asterisk("dialplan reload") == "Dialplan reloaded.\n"
        shown = (
            "[ Context 'from-genesys' created by 'pbx_config' ]\n"
            "  '_5XXX' =>        1. NoOp(Call from Genesys to ${EXTEN})        "
            f"[extensions.conf:{lines + 3}]\n"
            "                    2. Dial(PJSIP/${EXTEN})                       "
            f"[extensions.conf:{lines + 4}]\n"
            "\n"
            "-= 1 extension (2 priorities) in 1 context. =-\n"
        )
        assert host.asterisk("dialplan show 5001@from-genesys") == shown
        # Now it does; the agent's WebRTC client is not connected in the lab, hence 480.
        assert sip_request(host, host.a.genesys_host, "INVITE", "5001") == (
            "SIP/2.0 480 Temporarily Unavailable"
        )
        conf.write_text(original + added.replace("[from-genesys]", "[from-genesys"))
        assert host.asterisk("dialplan reload") == "Dialplan reloaded.\n"
        assert host.asterisk("dialplan show 5001@from-genesys") == shown
        log = host.layout.asterisk_log.read_text()
        assert re.search(
            r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] WARNING\[\d+\] config\.c: "
            rf"parse error: no closing '\]', line {lines + 2} of {re.escape(str(conf))}$",
            log,
            re.MULTILINE,
        )
    finally:
        conf.write_text(original)
        host.asterisk("dialplan reload")
