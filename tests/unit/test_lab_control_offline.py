"""`remediate lab` back end, the parts that need no lab process: validation, port conflicts, stale
pid files, stopping a lab that is not running, logs, the inventory `up` writes.

Ports here are shifted by 20000 from the lab's, so that these tests never collide with a lab that
the integration tests keep running on the same addresses.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from remediate.lab import control, tls
from remediate.lab.asterisk.daemon import register_record_path
from remediate.lab.asterisk.seed import pjsip_conf
from remediate.lab.control import LabError
from remediate.lab.layout import FAULTS, SCENARIOS, LabAddresses, LabLayout, save_layout

SHIFT = 20000


def unit_addresses() -> LabAddresses:
    defaults = LabAddresses()
    return LabAddresses(
        genesys_host=os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81",
        asterisk_host=os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54",
        sip_port=defaults.sip_port + SHIFT,
        softphone_port=defaults.softphone_port + SHIFT,
        winrm_http_port=defaults.winrm_http_port + SHIFT,
        winrm_https_port=defaults.winrm_https_port + SHIFT,
        gax_http_port=defaults.gax_http_port + SHIFT,
        gax_https_port=defaults.gax_https_port + SHIFT,
        ssh_port=defaults.ssh_port + SHIFT,
        asterisk_sip_port=defaults.asterisk_sip_port + SHIFT,
    )


@pytest.fixture
def layout(tmp_path: Path) -> LabLayout:
    return LabLayout(tmp_path / "lab", unit_addresses())


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def lab_processes(layout: LabLayout) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(layout.root.resolve()).encode() in command:
                found.append(int(entry.name))
    return found


def test_up_refuses_an_unknown_scenario_listing_the_known_ones(layout: LabLayout) -> None:
    with pytest.raises(LabError) as raised:
        control.up(layout, "no-such-scenario")
    assert raised.value.reference == "lab-unknown-scenario"
    assert "no-such-scenario" in raised.value.message
    for name in SCENARIOS:
        assert name in raised.value.message
    assert not layout.root.exists(), "nothing may be written for a refused start"


def test_fault_refuses_an_unknown_fault_listing_the_known_ones(layout: LabLayout) -> None:
    with pytest.raises(LabError) as raised:
        control.fault(layout, "winrm-explodes", True)
    assert raised.value.reference == "lab-unknown-fault"
    for name in FAULTS:
        assert name in raised.value.message


def test_fault_on_needs_a_running_lab_but_off_does_not(layout: LabLayout) -> None:
    with pytest.raises(LabError) as raised:
        control.fault(layout, "gax-500", True)
    assert raised.value.reference == "lab-not-running"
    assert "lab up" in raised.value.hint
    assert control.fault(layout, "gax-500", False) == frozenset()


@pytest.fixture
def tcp_listener(layout: LabLayout) -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((layout.addresses.genesys_host, layout.addresses.winrm_https_port))
    listener.listen()
    yield listener
    listener.close()


def test_up_refuses_a_taken_tcp_port_naming_it_and_its_process(
    layout: LabLayout, tcp_listener: socket.socket
) -> None:
    with pytest.raises(LabError) as raised:
        control.up(layout)
    error = raised.value
    assert error.reference == "lab-port-in-use"
    a = layout.addresses
    assert f"{a.genesys_host}:{a.winrm_https_port}/tcp (genesys/winrm-https)" in error.message
    assert f"pid {os.getpid()}" in error.message
    # Only the taken port is blamed, and nothing was started or recorded.
    assert f":{a.winrm_http_port}/" not in error.message
    assert not layout.pid_file("genesys").exists()
    assert not layout.lab_file.exists()
    assert lab_processes(layout) == []


def test_up_refuses_a_taken_udp_port(layout: LabLayout) -> None:
    a = layout.addresses
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((a.asterisk_host, a.asterisk_sip_port))
        with pytest.raises(LabError) as raised:
            control.up(layout)
    assert f"{a.asterisk_host}:{a.asterisk_sip_port}/udp (asterisk/sip)" in raised.value.message
    assert f"pid {os.getpid()}" in raised.value.message


def test_up_refuses_a_port_held_by_a_wildcard_bind(layout: LabLayout) -> None:
    """A process bound to 0.0.0.0 holds the port on every loopback address too."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        # A port the system picks: a fixed one held on 0.0.0.0 would be taken from every other lab
        # on this machine too (another xdist worker's included).
        taken.bind(("0.0.0.0", 0))
        a = dataclasses.replace(layout.addresses, softphone_port=taken.getsockname()[1])
        with pytest.raises(LabError) as raised:
            control.up(LabLayout(layout.root, a))
    assert f"{a.genesys_host}:{a.softphone_port}/udp (genesys/softphone)" in raised.value.message
    assert f"pid {os.getpid()}" in raised.value.message


def test_up_names_another_lab_holding_the_ports_and_how_to_stop_it(
    layout: LabLayout, tmp_path: Path
) -> None:
    a = layout.addresses
    other_lab = tmp_path / "other-lab"
    holder_code = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(({a.genesys_host!r}, {a.sip_port}))\n"
        "print('bound', flush=True)\n"
        "time.sleep(30)\n"
    )
    # Its command line looks like a lab host's: `... remediate.lab.genesys --dir <other lab>`.
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, "remediate.lab.genesys", "--dir", str(other_lab)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "bound"
        with pytest.raises(LabError) as raised:
            control.up(layout)
    finally:
        holder.kill()
        holder.wait()
    assert f"pid {holder.pid}" in raised.value.message
    assert raised.value.hint == f"another lab holds them: remediate lab down --dir {other_lab}"


def test_a_pid_file_of_a_dead_process_is_stale_and_down_removes_it(layout: LabLayout) -> None:
    save_layout(layout, "untrusted-gateway")
    layout.run_dir.mkdir(parents=True)
    pid = dead_pid()
    layout.pid_file("asterisk").write_text(f"{pid}\n")
    layout.ready_file("asterisk").write_text("")

    status = control.status(layout)
    assert status.state == "stale"
    asterisk = [c for c in status.components if c.host == "asterisk"]
    assert {c.state for c in asterisk} == {"stale"}
    assert {c.pid for c in asterisk} == {pid}
    assert {c.state for c in status.components if c.host == "genesys"} == {"down"}

    messages: list[str] = []
    assert control.down(layout, progress=messages.append).state == "down"
    assert not layout.pid_file("asterisk").exists()
    assert not layout.ready_file("asterisk").exists()
    assert any("stale pid file of the asterisk host" in message for message in messages)


def test_a_pid_file_naming_an_unrelated_live_process_is_stale_and_that_process_is_spared(
    layout: LabLayout,
) -> None:
    """A recycled pid belongs to someone else now: never signal it."""
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        layout.run_dir.mkdir(parents=True)
        layout.pid_file("genesys").write_text(f"{bystander.pid}\n")
        assert control.status(layout).state == "stale"
        control.down(layout)
        time.sleep(0.1)
        assert bystander.poll() is None, "down() signalled a process that is not the lab's"
        assert not layout.pid_file("genesys").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_stopping_a_lab_that_never_ran_twice_is_not_an_error(layout: LabLayout) -> None:
    messages: list[str] = []
    first = control.down(layout, progress=messages.append)
    second = control.down(layout)
    assert first.state == second.state == "down"
    assert {c.state for c in second.components} == {"down"}
    assert any("is not running" in message for message in messages)


def test_status_of_a_lab_that_never_ran(layout: LabLayout) -> None:
    status = control.status(layout)
    assert status.state == "down"
    assert [c.name for c in status.components] == [
        "genesys/sip",
        "genesys/softphone",
        "genesys/winrm-http",
        "genesys/winrm-https",
        "genesys/gax-http",
        "genesys/gax-https",
        "asterisk/ssh",
        "asterisk/sip",
    ]
    assert status.service_state is None
    assert status.dns_in_service == ()
    document = status.to_json()
    assert document["state"] == "down"
    assert document["components"][0]["protocol"] == "udp"


def test_logs_tail_the_newest_sip_server_segment(layout: LabLayout) -> None:
    layout.log_dir.mkdir(parents=True)
    older = layout.log_dir / "SIP_P-001.20260202_135459_850.log"
    newer = layout.log_dir / "SIP_P-001.20260202_141000_001.log"
    older.write_text("old segment\n")
    newer.write_text("".join(f"line {n}\n" for n in range(100)))
    # mtime order must not matter: the name carries the segment's start.
    os.utime(newer, (1, 1))

    excerpts = {excerpt.name: excerpt for excerpt in control.logs(layout, lines=3)}
    assert set(excerpts) == {"sip-server", "asterisk", "genesys-process", "asterisk-process"}
    assert excerpts["sip-server"].path == newer
    assert excerpts["sip-server"].lines == ("line 97", "line 98", "line 99")
    assert excerpts["asterisk"].lines == ()


def test_logs_of_a_large_file_read_only_its_tail(layout: LabLayout) -> None:
    layout.run_dir.mkdir(parents=True)
    log = layout.process_log("genesys")
    with log.open("w") as handle:
        for n in range(200_000):
            handle.write(f"{n:08d} {'x' * 40}\n")
    (excerpt,) = [e for e in control.logs(layout, lines=2) if e.name == "genesys-process"]
    assert excerpt.lines == (f"{199_998:08d} {'x' * 40}", f"{199_999:08d} {'x' * 40}")


def test_the_inventory_up_writes_is_literal_and_names_this_labs_paths(layout: LabLayout) -> None:
    path = control.write_inventory(layout)
    assert path == layout.inventory_dir / "hosts.yml"
    text = path.read_text()
    assert "{{" not in text, "testinfra reads this inventory without templating it"
    document = yaml.safe_load(text)
    site = document["all"]["children"]["site_lab"]
    genesys = site["children"]["genesys"]["hosts"]["genesys-lab"]
    asterisk = site["children"]["asterisk"]["hosts"]["asterisk-lab"]
    a = layout.addresses
    assert (genesys["ansible_host"], genesys["ansible_port"]) == (
        a.genesys_host,
        a.winrm_https_port,
    )
    assert genesys["genesys_gax_url"] == f"https://{a.genesys_host}:{a.gax_https_port}/gax/api"
    assert genesys["ansible_winrm_ca_trust_path"] == str(layout.ca_cert)
    assert (asterisk["ansible_host"], asterisk["ansible_port"]) == (a.asterisk_host, a.ssh_port)
    assert f"UserKnownHostsFile={layout.known_hosts}" in asterisk["ansible_ssh_common_args"]
    assert site["vars"]["remediate_lab_dir"] == str(layout.root)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0100007F:13C4", ("127.0.0.1", 5060)),
        ("5105007F:0FA0", ("127.0.5.81", 4000)),
        ("00000000:08AE", (None, 2222)),
        ("00000000000000000000000000000000:13C4", (None, 5060)),
        ("0000000000000000FFFF00000100007F:13C4", ("127.0.0.1", 5060)),
        ("00000000000000000000000001000000:13C4", "ipv6-only"),
    ],
)
def test_proc_net_addresses_decode(text: str, expected: object) -> None:
    """As a little-endian kernel prints them (this machine's order, checked first)."""
    assert sys.byteorder == "little"
    decoded = control._decode_proc_address(text)
    if expected == "ipv6-only":
        assert decoded is None
    else:
        assert decoded is not None
        address, port = decoded
        assert (None if address is None else str(address), port) == expected


def test_a_certificate_made_for_another_address_is_replaced(tmp_path: Path) -> None:
    first = LabLayout(tmp_path / "lab", LabAddresses(genesys_host="127.0.0.81"))
    tls.ensure_certificates(first)
    original = first.server_cert.read_bytes()

    control._discard_certificate_of_another_address(first)
    assert first.server_cert.read_bytes() == original, "the right certificate is kept"

    moved = LabLayout(first.root, LabAddresses(genesys_host="127.0.5.81"))
    control._discard_certificate_of_another_address(moved)
    tls.ensure_certificates(moved)
    assert moved.server_cert.read_bytes() != original


def test_the_capture_record_is_where_the_lab_gateway_writes_it(layout: LabLayout) -> None:
    assert control.capture_record_path(layout) == register_record_path(layout)


def test_the_dn_registrations_are_the_labs_pjsip_registrations(layout: LabLayout) -> None:
    sections = set(re.findall(r"^\[([^\]]+)\]", pjsip_conf(layout), re.M))
    assert set(control.DN_REGISTRATIONS.values()) <= sections
