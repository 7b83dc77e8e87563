"""`python -m remediate.lab.genesys` as `lab up` runs it: ready file, status file, signals, and a
port that is already taken."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from remediate.lab.layout import LabLayout, save_layout


def start(layout: LabLayout, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "remediate.lab.genesys", "--dir", str(layout.root), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(
    layout: LabLayout, process: subprocess.Popen[str], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}: {process.communicate()}")
        try:
            document: dict[str, Any] = json.loads(layout.ready_file("genesys").read_text())
            return document
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise AssertionError("not ready in time")


@pytest.fixture
def lab_dir(free_lab_dir: LabLayout) -> Iterator[LabLayout]:
    save_layout(free_lab_dir, "untrusted-gateway")
    yield free_lab_dir


def test_ready_status_and_clean_exit_on_sigterm(lab_dir: LabLayout) -> None:
    addresses = lab_dir.addresses
    process = start(lab_dir)
    try:
        ready = wait_ready(lab_dir, process)
        assert ready["pid"] == process.pid
        assert ready["scenario"] == "untrusted-gateway"
        assert ready["sip"] == f"{addresses.genesys_host}:{addresses.sip_port}"
        assert ready["gax_https"] == f"https://{addresses.genesys_host}:{addresses.gax_https_port}"
        for port in (
            addresses.winrm_http_port,
            addresses.winrm_https_port,
            addresses.gax_http_port,
        ):
            with socket.create_connection((addresses.genesys_host, port), timeout=2):
                pass
        # The softphone registers 1002 then 1003 right after the service starts.
        deadline = time.monotonic() + 5
        status = json.loads(lab_dir.genesys_status_file.read_text())
        while status["in_service"] != ["1002", "1003"] and time.monotonic() < deadline:
            time.sleep(0.05)
            status = json.loads(lab_dir.genesys_status_file.read_text())
        assert status["service"] == "Running"
        assert status["in_service"] == ["1002", "1003"]
        assert status["bindings"]["1003"]["user_agent"] == "Genesys-Softphone/9.0.014.13"
        assert status["bindings"]["1003"]["source"] == (
            f"{addresses.genesys_host}:{addresses.softphone_port}"
        )
        assert len(list(lab_dir.log_dir.glob("SIP_P-001.*.log"))) == 1
        assert lab_dir.ca_cert.exists()
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - began < 1.0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not lab_dir.ready_file("genesys").exists()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((addresses.genesys_host, addresses.sip_port))  # every socket was closed


def test_service_stopped_scenario(lab_dir: LabLayout) -> None:
    process = start(lab_dir, "--scenario", "service-stopped")
    try:
        ready = wait_ready(lab_dir, process)
        assert ready["scenario"] == "service-stopped"
        status = json.loads(lab_dir.genesys_status_file.read_text())
        assert (status["service"], status["in_service"]) == ("Stopped", [])
        assert not list(lab_dir.log_dir.glob("*.log"))  # SIP Server never ran
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_taken_port_is_reported_with_its_address(lab_dir: LabLayout) -> None:
    addresses = lab_dir.addresses
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((addresses.genesys_host, addresses.sip_port))
        process = start(lab_dir)
        try:
            _, stderr = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 1
    assert f"UDP {addresses.genesys_host}:{addresses.sip_port}" in stderr
    assert "Traceback" not in stderr
    assert not lab_dir.ready_file("genesys").exists()
