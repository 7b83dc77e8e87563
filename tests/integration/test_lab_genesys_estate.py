"""The seed's fault, end to end on the shared lab (untrusted-gateway): the Asterisk host's own
registrations for 5001/5002 are refused as the seed shows, the softphone's 1002/1003 accepted.
Read-only: it leaves the shared lab as it found it."""

from __future__ import annotations

import json
import re
import time

from remediate.lab.layout import LabLayout


def _log_text(layout: LabLayout) -> str:
    return "\n".join(
        segment.read_text(encoding="utf-8")
        for segment in sorted(layout.log_dir.glob("SIP_P-001.*.log"))
    )


def test_gateway_registrations_are_refused_as_in_the_seed(lab: LabLayout) -> None:
    asterisk = lab.addresses.asterisk_host
    pattern = re.compile(
        rf"\d\d:\d\d:\d\d\.\d{{3}}: SIPTR: Received \[0,UDP\] \d+ bytes from "
        rf"{re.escape(asterisk)}:{lab.addresses.asterisk_sip_port} <<<<<\n"
        r"REGISTER [^\n]*\n(?:[^\n]+\n)*?User-Agent: Asterisk-Genesys-Gateway\n(?:[^\n]+\n)*\n"
        r"\d\d:\d\d:\d\d\.\d{3}: Unable to resolve number for DN:5002\n"
        rf"\d\d:\d\d:\d\d\.\d{{3}}: trunk ip addr {re.escape(asterisk)}\n"
        rf"\d\d:\d\d:\d\d\.\d{{3}}: no gateway is found using address '{re.escape(asterisk)}' "
        r"for number '5002'\n"
        r"\d\d:\d\d:\d\d\.\d{3}: SIPTS: handle registration event 2\n"
        r"\d\d:\d\d:\d\d\.\d{3}: REGISTRAR: TERMINATED:5002\n"
        r"\d\d:\d\d:\d\d\.\d{3}: Sending  \[0,UDP\] \d+ bytes to [\d.:]+ >>>>>\n"
        r"SIP/2\.0 403 Forbidden\n"
    )
    deadline = time.monotonic() + 10
    while not pattern.search(_log_text(lab)):
        assert time.monotonic() < deadline, _log_text(lab)[-3000:]
        time.sleep(0.1)
    status = json.loads(lab.genesys_status_file.read_text(encoding="utf-8"))
    assert status["service"] == "Running"
    assert {"1002", "1003"} <= set(status["in_service"])
    assert not {"5001", "5002"} & set(status["in_service"])
