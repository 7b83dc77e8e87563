"""A stranger's SIP MESSAGE that carries a whole forged REGISTER transaction of 5002 (a REGISTER
block, its `REGISTRAR: ACTIVE:5002` handling lines and its 200 OK, all as SIP Server would log
them) reaches the lab's SIP Server, which logs it whole; `remediate diagnose --dn 5002`, which
reads the log through the host-side filter over WinRM, still finds 5002 out of service."""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import Callable

import pytest

from remediate.cli import main
from remediate.env import Environment
from remediate.lab.layout import LabLayout

pytestmark = pytest.mark.lab

WAIT_SECONDS = 25.0
STRANGER = "127.0.0.1"


def _log_text(layout: LabLayout) -> str:
    return "".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(layout.log_dir.glob("*.log"))
    )


def _wait_for(layout: LabLayout, text: str) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while text not in (log := _log_text(layout)):
        if time.monotonic() > deadline:
            pytest.fail(f"the lab never logged {text!r} within {WAIT_SECONDS} s")
        time.sleep(0.2)
    return log


def _block(marker: str, message: str) -> str:
    """`message` (CRLF lines) as SIP Server logs it, its byte count exact."""
    return f"{marker.format(size=len(message.encode()))}\r\n{message}"


def _forged_transaction(clock: str, server: str, gateway: str) -> str:
    """5002 registered through the gateway and accepted, written as the server would log it."""
    register = (
        f"REGISTER sip:{server}:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {gateway}:5060;rport;branch=z9hG4bKforged\r\n"
        f"From: <sip:5002@{server}>;tag=ff\r\n"
        f"To: <sip:5002@{server}>\r\n"
        f"Call-ID: forged-5002@{gateway}\r\n"
        "CSeq: 99999 REGISTER\r\n"
        f"Contact: <sip:5002@{gateway}:5060>\r\n"
        "Expires: 3600\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    accepted = (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP {gateway}:5060;rport;branch=z9hG4bKforged\r\n"
        f"To: <sip:5002@{server}>;tag=srv\r\n"
        f"Call-ID: forged-5002@{gateway}\r\n"
        "CSeq: 99999 REGISTER\r\n"
        f"Contact: <sip:5002@{gateway}:5060>;expires=3600\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return (
        _block(
            f"{clock}: SIPTR: Received [0,UDP] {{size}} bytes from {gateway}:5060 <<<<<", register
        )
        + f"{clock}: gateway 'Asterisk_WebRTC_Gateway' associated with address '{gateway}'\r\n"
        f"{clock}: SIPTS: handle registration event 0\r\n"
        f"{clock}: REGISTRAR: ACTIVE:5002\r\n"
        f"{clock}: $*:SIP:CTI:DN_IN_SERVICE:4\r\n"
        + _block(f"{clock}: Sending  [0,UDP] {{size}} bytes to {gateway}:5060 >>>>>", accepted)
    )


def test_a_forged_acceptance_inside_a_message_leaves_5002_out_of_service(
    lab_factory: Callable[[str], LabLayout],
) -> None:
    layout = lab_factory("untrusted-gateway")
    log = _wait_for(layout, "TERMINATED:5002")
    # The forgery's time is the log's latest, so that, read as genuine, it would be 5002's latest.
    clock = re.findall(r"(?m)^(\d\d:\d\d:\d\d\.\d{3}): ", log)[-1]
    server, gateway = layout.addresses.genesys_host, layout.addresses.asterisk_host
    body = _forged_transaction(clock, server, gateway)
    message = (
        f"MESSAGE sip:5002@{server} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {STRANGER}:5999;branch=z9hG4bKstranger\r\n"
        f"From: <sip:stranger@{STRANGER}>;tag=s\r\n"
        f"To: <sip:5002@{server}>\r\n"
        f"Call-ID: stranger@{STRANGER}\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body.encode())}\r\n\r\n" + body
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind((STRANGER, 0))
        stranger.sendto(message.encode(), (server, layout.addresses.sip_port))
    _wait_for(layout, "Call-ID: forged-5002")
    time.sleep(0.5)  # the lab's answer to the MESSAGE follows it in the log
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), environ={})
    inventory = str(layout.inventory_dir / "hosts.yml")
    assert main(["diagnose", "--dn", "5002", "-i", inventory], env) == 0
    text = out.getvalue()
    assert "DN 5002: OUT OF SERVICE" in text and "root cause  untrusted-gateway" in text
    assert "forged" not in text
