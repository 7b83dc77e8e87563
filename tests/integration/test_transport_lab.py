"""The transports and the GAX client against the lab's hosts, with real protocols and faults."""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from pathlib import Path
from typing import Any

import certifi
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remediate.errors import InputError
from remediate.genesys import powershell
from remediate.genesys.gax import GaxClient, GaxError
from remediate.genesys.service import ServiceControlError, SipServerService
from remediate.inventory import Site, load_site
from remediate.lab.layout import LabLayout, set_fault
from remediate.status import ExitStatus
from remediate.transport import TransportError
from remediate.transport.ssh import SSHTransport
from remediate.transport.winrm import WinRMTransport

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def site(lab: LabLayout) -> Site:
    return load_site(lab.inventory_dir / "hosts.yml")


def _fast_winrm(site: Site, **changes: object) -> WinRMTransport:
    settings = dataclasses.replace(
        site.genesys.winrm, operation_timeout=1, read_timeout=2, command_timeout=4, **changes
    )
    return WinRMTransport(settings)


def test_winrm_ntlm_https_reuses_one_shell(site: Site) -> None:
    with WinRMTransport(site.genesys.winrm) as transport:
        first = transport.run(powershell.service_state("TSrvSIP64").command_line)
        shell = transport._shell_id
        clock = transport.run(powershell.host_clock().command_line)
        assert transport._shell_id == shell
    assert first.ok and powershell.parse_service_state(first.stdout_text).status == "Running"
    assert powershell.parse_host_clock(clock.stdout_text).utcoffset() is not None
    assert transport.bytes_received > 0


def test_a_failing_command_is_reported_not_retried(site: Site) -> None:
    with WinRMTransport(site.genesys.winrm) as transport:
        result = transport.run(
            powershell.encode("Get-Service -Name 'NoSuchService' -ErrorAction Stop").command_line
        )
    assert not result.ok and result.exit_code == 1
    assert b"NoSuchService" in result.stderr


def test_basic_over_http_only_for_the_lab(site: Site) -> None:
    settings = dataclasses.replace(
        site.genesys.winrm, scheme="http", port=5985, auth="basic", lab=True
    )
    with WinRMTransport(settings) as transport:
        assert transport.run(powershell.host_clock().command_line).ok


def test_wrong_ca_is_a_tls_error(site: Site) -> None:
    # The public CA bundle did not sign the lab's certificate.
    with (
        _fast_winrm(site, ca_trust_path=certifi.where()) as transport,
        pytest.raises(TransportError) as caught,
    ):
        transport.run(powershell.host_clock().command_line)
    assert caught.value.reference == "winrm-tls-failed"
    assert "ansible_winrm_ca_trust_path" in caught.value.hint


@pytest.mark.parametrize(
    ("fault", "reference"),
    [
        ("winrm-401", "winrm-auth-failed"),
        ("winrm-500", "winrm-server-error"),
        ("winrm-drop", "winrm-unreachable"),
        ("winrm-stall", "winrm-timeout"),
    ],
)
def test_winrm_faults_map_to_their_errors(
    lab: LabLayout, site: Site, fault: str, reference: str
) -> None:
    set_fault(lab, fault, True)
    started = time.monotonic()
    with _fast_winrm(site) as transport, pytest.raises(TransportError) as caught:
        transport.run(powershell.host_clock().command_line)
    elapsed = time.monotonic() - started
    assert caught.value.reference == reference
    assert caught.value.exit_status == ExitStatus.PRECONDITION_FAILED
    assert site.genesys.winrm.password not in f"{caught.value} {caught.value.hint}"
    assert elapsed < 2 + 4 + 1  # read timeout + command cap + margin


def test_winrm_refused(site: Site) -> None:
    with _fast_winrm(site, port=1) as transport, pytest.raises(TransportError) as caught:
        transport.run(powershell.host_clock().command_line)
    assert caught.value.reference == "winrm-unreachable"
    assert "refused" in caught.value.message


def test_gax_reads_the_lab_configuration(site: Site) -> None:
    with GaxClient(site.genesys.gax) as client:
        switch = client.find("CfgSwitch", site.genesys.switch)
        dns = {obj["name"] for obj in client.find_all("CfgDN")}
    assert switch is not None and switch["type"] == "CfgSwitch"
    assert {"1002", "1003", "5001", "5002"} <= dns


@pytest.mark.parametrize(
    ("fault", "reference"), [("gax-500", "gax-server-error"), ("gax-timeout", "gax-timeout")]
)
def test_gax_faults(lab: LabLayout, site: Site, fault: str, reference: str) -> None:
    set_fault(lab, fault, True)
    settings = dataclasses.replace(site.genesys.gax, read_timeout=1.0)
    started = time.monotonic()
    with GaxClient(settings) as client, pytest.raises(GaxError) as caught:
        client.find("CfgSwitch", site.genesys.switch)
    assert caught.value.reference == reference
    assert time.monotonic() - started < 3


def test_ssh_exec_sftp_and_atomic_write(lab: LabLayout, site: Site) -> None:
    target = lab.asterisk_dir / "h6-atomic.conf"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    with SSHTransport(site.asterisk.ssh) as transport:
        result = transport.run("asterisk -rx 'core show version'")
        assert result.ok and result.stdout_text.startswith("Asterisk 22")
        failing = transport.run("exit 3")
        assert failing.exit_code == 3 and not failing.ok
        assert (
            transport.read_file(site.asterisk.pjsip_conf)
            == Path(site.asterisk.pjsip_conf).read_bytes()
        )
        transport.write_file_atomic(str(target), b"new\n")
        with pytest.raises(TransportError) as missing:
            transport.read_file(str(lab.asterisk_dir / "nope.conf"))
    assert missing.value.reference == "ssh-file-missing"
    assert target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not [p for p in target.parent.iterdir() if ".remediate-" in p.name]
    target.unlink()


def test_ssh_command_timeout(site: Site) -> None:
    settings = dataclasses.replace(site.asterisk.ssh, command_timeout=1.0)
    started = time.monotonic()
    with SSHTransport(settings) as transport, pytest.raises(TransportError) as caught:
        transport.run("sleep 5")
    assert caught.value.reference == "ssh-timeout"
    assert time.monotonic() - started < 2.5


def test_ssh_host_keys_unknown_and_changed(site: Site, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with (
        SSHTransport(dataclasses.replace(site.asterisk.ssh, known_hosts_file=str(empty))) as t,
        pytest.raises(TransportError) as unknown,
    ):
        t.run("true")
    assert unknown.value.reference == "ssh-host-key-unknown"
    changed = tmp_path / "known_hosts_changed"
    other_key = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    entry = f"[{site.asterisk.ssh.address}]:{site.asterisk.ssh.port}"
    changed.write_text(f"{entry} {other_key.decode()}\n")
    with (
        SSHTransport(dataclasses.replace(site.asterisk.ssh, known_hosts_file=str(changed))) as t,
        pytest.raises(TransportError) as caught,
    ):
        t.run("true")
    assert caught.value.reference == "ssh-host-key-changed"
    assert "UserKnownHostsFile" in caught.value.hint


def test_ssh_drop_and_refused(lab: LabLayout, site: Site) -> None:
    with (
        SSHTransport(dataclasses.replace(site.asterisk.ssh, port=1)) as t,
        pytest.raises(TransportError) as refused,
    ):
        t.run("true")
    assert refused.value.reference == "ssh-unreachable"
    set_fault(lab, "ssh-drop", True)
    settings = dataclasses.replace(site.asterisk.ssh, connect_timeout=2.0)
    started = time.monotonic()
    with SSHTransport(settings) as t, pytest.raises(TransportError) as dropped:
        t.run("true")
    assert dropped.value.reference == "ssh-unreachable"
    assert time.monotonic() - started < 4


def test_service_state_and_bounded_restart(lab_factory: Any) -> None:
    """On a lab of its own: a restart ends Running; a hang and error 1053 end as errors in time."""
    layout: LabLayout = lab_factory("untrusted-gateway")
    site = load_site(layout.inventory_dir / "hosts.yml")
    with WinRMTransport(site.genesys.winrm) as transport:
        service = SipServerService(transport, site.genesys.service_name)
        assert service.state().status == "Running"
        assert service.restart(10, 10).status == "Running"
        set_fault(layout, "service-hang", True)
        started = time.monotonic()
        with pytest.raises(ServiceControlError) as hung:
            service.stop(2)
        assert time.monotonic() - started < 2 + 3
        assert service.state().status == "StopPending"
        set_fault(layout, "service-hang", False)
        set_fault(layout, "service-1053", True)
        deadline = time.monotonic() + 5
        while service.state().status != "Stopped" and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(ServiceControlError) as failed:
            service.start(5)
        set_fault(layout, "service-1053", False)
        assert service.start(10).status == "Running"
    assert "TSrvSIP64" in hung.value.message
    assert "1053" in failed.value.message or "timely" in failed.value.message
    with WinRMTransport(site.genesys.winrm) as transport:
        missing = SipServerService(transport, "NoSuchService")
        with pytest.raises(InputError) as unknown:
            missing.state()
    assert unknown.value.reference == "service-unknown"
