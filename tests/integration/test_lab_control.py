"""`remediate lab` against the real lab processes: up, status, fault, logs, down."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from remediate.lab import control
from remediate.lab.control import LabError, LabStatus
from remediate.lab.layout import LabAddresses, LabLayout

pytestmark = pytest.mark.lab

T = TypeVar("T")

UP_TARGET_SECONDS = 5.0


def wait_for(produce: Callable[[], T], accept: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Poll `produce` until `accept` says yes; return the last value either way."""
    deadline = time.monotonic() + timeout
    value = produce()
    while not accept(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = produce()
    return value


def received_blocks(log_text: str) -> list[tuple[str, str]]:
    """(source ip:port, raw message) of every `Received ... <<<<<` block of a SIP Server log."""
    blocks = []
    lines = log_text.splitlines()
    for index, line in enumerate(lines):
        match = re.search(r"Received \[\d+,UDP\] \d+ bytes from (\S+) <<<<<$", line)
        if match is None:
            continue
        message = []
        for following in lines[index + 1 :]:
            if not following.strip():
                break
            message.append(following)
        blocks.append((match.group(1), "\n".join(message)))
    return blocks


def sip_log_text(layout: LabLayout) -> str:
    segment = control.newest_log_segment(layout)
    return "" if segment is None else segment.read_text(encoding="utf-8", errors="replace")


def lab_process_pids(layout: LabLayout) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(layout.root).encode() in command:
                pids.append(int(entry.name))
    return pids


def bound_endpoints(layout: LabLayout) -> list[str]:
    """The lab's endpoints that something still holds (a bind test on each)."""
    taken = []
    for endpoint in control.endpoints(layout):
        kind = socket.SOCK_DGRAM if endpoint.protocol == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as probe:
            if endpoint.protocol == "tcp":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((endpoint.address, endpoint.port))
            except OSError:
                taken.append(endpoint.label)
    return taken


# The shared lab ---------------------------------------------------------------------------------


def test_lab_up_shows_the_seeds_fault(lab: LabLayout, lab_addresses: LabAddresses) -> None:
    """1003 in service from <genesys>:5090; 5001 and 5002 refused, sent by <asterisk> with the
    gateway's User-Agent: in the status file and in the SIP Server's own log."""
    genesys, asterisk = lab_addresses.genesys_host, lab_addresses.asterisk_host

    def refused(text: str, dn: str) -> bool:
        return (
            f"no gateway is found using address '{asterisk}' for number '{dn}'" in text
            and f"REGISTRAR: TERMINATED:{dn}" in text
        )

    text = wait_for(
        lambda: sip_log_text(lab),
        lambda text: (
            all(refused(text, dn) for dn in ("5001", "5002")) and "$*:SIP:CTI:DN_IN_SERVICE" in text
        ),
    )
    status = control.status(lab)
    assert status.state == "up"
    assert status.service_state == "Running"
    assert "1003" in status.dns_in_service
    assert "5001" not in status.dns_in_service
    assert "5002" not in status.dns_in_service
    assert status.bindings["1003"]["source"] == f"{genesys}:5090"
    assert status.bindings["1003"]["user_agent"].startswith("Genesys-Softphone/")

    for dn in ("5001", "5002"):
        assert refused(text, dn), f"the log does not show {dn} refused"
    blocks = received_blocks(text)
    gateway_registers = [
        message
        for source, message in blocks
        if source == f"{asterisk}:5060" and message.startswith("REGISTER ")
    ]
    for dn in ("5001", "5002"):
        mine = [m for m in gateway_registers if re.search(rf"^To:.*sip:{dn}@", m, re.M)]
        assert mine, f"no REGISTER for {dn} from {asterisk}:5060 in the log"
        assert all("User-Agent: Asterisk-Genesys-Gateway" in m for m in mine)
    softphone_registers = [
        message
        for source, message in blocks
        if source == f"{genesys}:5090" and message.startswith("REGISTER ")
    ]
    assert any(
        re.search(r"^To:.*sip:1003@", m, re.M) and "User-Agent: Genesys-Softphone/" in m
        for m in softphone_registers
    ), f"no REGISTER for 1003 from {genesys}:5090 with the softphone's User-Agent"


def test_status_reports_every_component_up_with_its_address(
    lab: LabLayout, lab_addresses: LabAddresses
) -> None:
    status = control.status(lab)
    assert status.scenario == "untrusted-gateway"
    by_name = {c.name: c for c in status.components}
    g, a = lab_addresses.genesys_host, lab_addresses.asterisk_host
    assert (by_name["genesys/sip"].address, by_name["genesys/sip"].port) == (g, 5060)
    assert by_name["genesys/sip"].protocol == "udp"
    assert (by_name["genesys/winrm-https"].address, by_name["genesys/winrm-https"].port) == (
        g,
        5986,
    )
    assert (by_name["asterisk/ssh"].address, by_name["asterisk/ssh"].port) == (a, 2222)
    assert (by_name["asterisk/sip"].address, by_name["asterisk/sip"].port) == (a, 5060)
    assert {c.state for c in status.components} == {"up"}, [
        (c.name, c.state) for c in status.components if c.state != "up"
    ]
    pids = {c.host: c.pid for c in status.components}
    assert pids["genesys"] != pids["asterisk"]
    assert pids["genesys"] == int(lab.pid_file("genesys").read_text())
    document = status.to_json()
    assert document["state"] == "up"
    assert document["inventory"] == str(lab.inventory_dir / "hosts.yml")


def test_up_on_a_running_lab_says_so_and_changes_nothing(lab: LabLayout) -> None:
    before = control.status(lab)
    messages: list[str] = []
    started = time.monotonic()
    after = control.up(lab, "untrusted-gateway", progress=messages.append)
    assert time.monotonic() - started < 1.0
    assert any("already up" in message for message in messages)
    assert [c.pid for c in after.components] == [c.pid for c in before.components]


def test_up_on_a_running_lab_with_another_scenario_is_refused(lab: LabLayout) -> None:
    with pytest.raises(LabError) as raised:
        control.up(lab, "binding-expired")
    assert raised.value.reference == "lab-already-up"
    assert "untrusted-gateway" in raised.value.message
    assert f"lab down --dir {lab.root}" in raised.value.hint


def test_a_second_lab_on_the_same_addresses_is_refused_naming_the_first(
    lab: LabLayout, tmp_path: Path
) -> None:
    second = LabLayout(tmp_path / "second", lab.addresses)
    with pytest.raises(LabError) as raised:
        control.up(second)
    error = raised.value
    assert error.reference == "lab-port-in-use"
    g, a = lab.addresses.genesys_host, lab.addresses.asterisk_host
    genesys_pid = int(lab.pid_file("genesys").read_text())
    asterisk_pid = int(lab.pid_file("asterisk").read_text())
    # Grouped by holder: the Genesys host's six endpoints, then the Asterisk host's two.
    assert re.search(
        rf"{g}:5060/udp \(genesys/sip\), .*{g}:8443/tcp \(genesys/gax-https\) "
        rf"held by pid {genesys_pid} \(.*remediate\.lab\.genesys --dir {lab.root}",
        error.message,
    ), error.message
    assert re.search(
        rf"{a}:2222/tcp \(asterisk/ssh\), {a}:5060/udp \(asterisk/sip\) held by pid {asterisk_pid}",
        error.message,
    ), error.message
    assert error.hint == f"another lab holds them: remediate lab down --dir {lab.root}"
    assert lab_process_pids(second) == []
    assert control.status(lab).state == "up", "the refused start must not disturb the running lab"


def test_fault_on_and_off_is_seen_by_status(lab: LabLayout) -> None:
    assert control.fault(lab, "gax-500", True) == frozenset({"gax-500"})
    assert control.status(lab).faults == ("gax-500",)
    assert control.fault(lab, "gax-500", False) == frozenset()
    assert control.status(lab).faults == ()


def test_logs_show_the_sip_server_segment_and_each_process(lab: LabLayout) -> None:
    excerpts = {excerpt.name: excerpt for excerpt in control.logs(lab, lines=30)}
    assert set(excerpts) == {"sip-server", "asterisk", "genesys-process", "asterisk-process"}
    sip = excerpts["sip-server"]
    assert sip.path is not None
    assert re.fullmatch(r"SIP_P-001\.\d{8}_\d{6}_\d{3}\.log", sip.path.name)
    assert 0 < len(sip.lines) <= 30
    assert excerpts["genesys-process"].path == lab.process_log("genesys")
    assert excerpts["asterisk"].path == lab.asterisk_log
    assert all(isinstance(e.to_json()["lines"], list) for e in excerpts.values())


# Labs of their own ------------------------------------------------------------------------------


def test_up_answers_fast_then_down_leaves_no_process_and_no_port(free_lab_dir: LabLayout) -> None:
    messages: list[str] = []
    started = time.monotonic()
    status = control.up(free_lab_dir, "untrusted-gateway", progress=messages.append)
    elapsed = time.monotonic() - started
    print(f"\nlab up to all-answering: {elapsed:.2f} s (target < {UP_TARGET_SECONDS:.0f} s)")
    assert status.state == "up"
    assert {c.state for c in status.components} == {"up"}
    assert any(m.startswith("genesys/sip answers") for m in messages)
    assert any(m.startswith("asterisk/ssh answers") for m in messages)
    assert elapsed < 10.0
    pids = lab_process_pids(free_lab_dir)
    assert len(pids) >= 2

    stopped = control.down(free_lab_dir)
    assert stopped.state == "down"
    assert {c.state for c in stopped.components} == {"down"}
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    assert lab_process_pids(free_lab_dir) == []
    assert bound_endpoints(free_lab_dir) == []
    assert not free_lab_dir.pid_file("genesys").exists()
    assert not free_lab_dir.ready_file("asterisk").exists()
    # Stopping twice is not an error.
    assert control.down(free_lab_dir).state == "down"


def test_a_lab_whose_host_died_is_restarted_by_up(free_lab_dir: LabLayout) -> None:
    control.up(free_lab_dir, "untrusted-gateway")
    asterisk_pid = int(free_lab_dir.pid_file("asterisk").read_text())
    os.killpg(asterisk_pid, signal.SIGKILL)

    status: LabStatus = wait_for(
        lambda: control.status(free_lab_dir), lambda s: s.state == "partial", timeout=3
    )
    assert status.state == "partial"
    assert {c.state for c in status.components if c.host == "asterisk"} == {"stale"}

    messages: list[str] = []
    restarted = control.up(free_lab_dir, "untrusted-gateway", progress=messages.append)
    assert restarted.state == "up"
    assert any("partly running" in message for message in messages)
    assert int(free_lab_dir.pid_file("asterisk").read_text()) != asterisk_pid


def test_up_that_times_out_stops_what_it_started(free_lab_dir: LabLayout) -> None:
    with pytest.raises(LabError) as raised:
        control.up(free_lab_dir, "untrusted-gateway", timeout=0.2)
    assert raised.value.reference == "lab-start-timeout"
    assert lab_process_pids(free_lab_dir) == []
    assert bound_endpoints(free_lab_dir) == []
    assert not free_lab_dir.pid_file("genesys").exists()


def test_lab_factory_gives_a_fresh_lab_of_another_scenario(
    lab_factory: Callable[[str], LabLayout],
) -> None:
    """service-stopped: `up` does not wait for the registrar, which must stay silent."""
    layout = lab_factory("service-stopped")
    status = control.status(layout)
    assert status.scenario == "service-stopped"
    assert status.state == "up"
    assert status.service_state == "Stopped"
    assert status.dns_in_service == ()
    states = {c.name: c.state for c in status.components}
    assert states.pop("genesys/sip") == "down"
    assert set(states.values()) == {"up"}, states


def test_two_concurrent_ups_of_one_lab_start_it_once(free_lab_dir: LabLayout) -> None:
    results: list[LabStatus | BaseException] = []

    def start() -> None:
        try:
            results.append(control.up(free_lab_dir, "untrusted-gateway"))
        except BaseException as error:  # reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2
    assert all(isinstance(result, LabStatus) and result.state == "up" for result in results), (
        results
    )
    assert len(lab_process_pids(free_lab_dir)) == 2
