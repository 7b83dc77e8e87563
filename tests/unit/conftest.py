"""Hand-written SIP Server log text in the real format (DESIGN section 2.1), for the parser's and
the diagnosis's tests. Deliberately independent of the lab's log writer: the parser must agree with
the format, not with another piece of this project."""

from __future__ import annotations

from pathlib import Path

import pytest

SEGMENT = "SIP_P-001.20260202_135459_850.log"

HEADER = """\
Application name: SIP_P
Application type: TServer (1)
Command line: D:\\gcti_apps\\SIP_P\\sip_server.exe -host GenUAT02 -port 2020 -app SIP_P -service TSrvSIP64 -l 7260@192.168.210.66
Host name: GenUAT02
Time zone: -19800, India Standard Time, India Daylight Time
UTC time: 2026-02-02T08:24:59.852
Local time: 2026-02-02T13:54:59.852
Host info: x64, Windows Server 2019 Standard, 10.0.17763
File: (1) D:\\gcti_logs\\SIP_P\\SIP_P-001.20260202_135459_850.log

2026-02-02T13:54:59.845 Trc 04110 Option 'segment' has been set to the value '10 MB'
2026-02-02T13:54:59.846 Std 05060 Application started
"""  # noqa: E501

# The seed's working case (1003, the Genesys softphone on the SIP Server host), with the REGISTER
# and the response that the seed's excerpt leaves out.
SEED_1003 = """\
18:32:19.739: SIPTR: Received [0,UDP] 461 bytes from 192.168.210.81:5090 <<<<<
REGISTER sip:192.168.210.81:5060 SIP/2.0
Via: SIP/2.0/UDP 192.168.210.81:5090;branch=z9hG4bK-1003-a;rport
Max-Forwards: 70
From: <sip:1003@192.168.210.81>;tag=7c1e0a
To: <sip:1003@192.168.210.81>
Call-ID: 4f1a9c2e-1003@192.168.210.81
CSeq: 21 REGISTER
Contact: <sip:1003@192.168.210.81:5090>;expires=1800
Expires: 1800
User-Agent: Genesys-Softphone/9.0.014.13
Content-Length:  0

18:32:19.740: Unable to resolve number for DN:1003
18:32:19.740: trunk ip addr 192.168.210.81
18:32:19.740: no gateway is found using address '192.168.210.81' for number '1003'
18:32:19.740: Assocaited transport for the device [5] changed from [:0:0] to [192.168.210.81:5090:1]
18:32:19.740: TRNMNGR: internal domain 192.168.210.81
18:32:19.740: SIPTS: handle registration event 0
18:32:19.741: $*:SIP:CTI:DN_IN_SERVICE:5
18:32:19.741: $+CTI:PRM:ON_DN_IN_SERVICE:190:62
18:32:19.741: Sending  [0,UDP] 418 bytes to 192.168.210.81:5090 >>>>>
SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.168.210.81:5090;branch=z9hG4bK-1003-a;rport=5090
From: <sip:1003@192.168.210.81>;tag=7c1e0a
To: <sip:1003@192.168.210.81>;tag=srv-1003
Call-ID: 4f1a9c2e-1003@192.168.210.81
CSeq: 21 REGISTER
Contact: <sip:1003@192.168.210.81:5090>;expires=1800
Content-Length: 0

"""

# The seed's failing case (5002 through the Asterisk gateway).
SEED_5002 = """\
21:06:21.750: SIPTR: Received [0,UDP] 446 bytes from 192.168.210.54:5060 <<<<<
REGISTER sip:192.168.210.81:5060 SIP/2.0
Via: SIP/2.0/UDP 192.168.210.54:5060;rport;branch=z9hG4bKPj5002a
From: <sip:5002@192.168.210.81>;tag=as5002
To: <sip:5002@192.168.210.81>
Call-ID: 8d2e61b0-5002@192.168.210.54
CSeq: 40312 REGISTER
Contact: <sip:5002@192.168.210.54:5060>
Expires: 3600
Max-Forwards: 70
User-Agent: Asterisk-Genesys-Gateway
Content-Length:  0

21:06:21.751: Unable to resolve number for DN:5002
21:06:21.751: trunk ip addr 192.168.210.54
21:06:21.751: no gateway is found using address '192.168.210.54' for number '5002'
21:06:21.752: SIPTS: handle registration event 2
21:06:21.752: REGISTRAR: TERMINATED:5002
21:06:21.752: $+CTI:PRM:AGENT_LOGGED_OUT:191:6
21:06:21.753: Sending  [0,UDP] 402 bytes to 192.168.210.54:5060 >>>>>
SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.168.210.54:5060;rport=5060;branch=z9hG4bKPj5002a
From: <sip:5002@192.168.210.81>;tag=as5002
To: <sip:5002@192.168.210.81>;tag=srv-5002
Call-ID: 8d2e61b0-5002@192.168.210.54
CSeq: 40312 REGISTER
Content-Length: 0

"""


def register(
    clock: str,
    dn: str,
    *,
    source: str = "192.168.210.54",
    port: int = 5060,
    agent: str = "Asterisk-Genesys-Gateway",
    call_id: str | None = None,
    cseq: int = 1,
    expires: int = 3600,
) -> str:
    """A received REGISTER block, as SIP Server logs it."""
    call_id = call_id or f"reg-{dn}@{source}"
    return (
        f"{clock}: SIPTR: Received [0,UDP] 420 bytes from {source}:{port} <<<<<\n"
        f"REGISTER sip:192.168.210.81:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP {source}:{port};rport;branch=z9hG4bK{dn}{cseq}\n"
        f"From: <sip:{dn}@192.168.210.81>;tag=f{dn}\n"
        f"To: <sip:{dn}@192.168.210.81>\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} REGISTER\n"
        f"Contact: <sip:{dn}@{source}:{port}>\n"
        f"Expires: {expires}\n"
        f"User-Agent: {agent}\n"
        "Content-Length:  0\n"
        "\n"
    )


def response(
    clock: str,
    dn: str,
    *,
    to: str = "192.168.210.54",
    port: int = 5060,
    call_id: str | None = None,
    cseq: int = 1,
    status: str = "200 OK",
) -> str:
    """A sent response to a REGISTER."""
    call_id = call_id or f"reg-{dn}@{to}"
    return (
        f"{clock}: Sending  [0,UDP] 380 bytes to {to}:{port} >>>>>\n"
        f"SIP/2.0 {status}\n"
        f"Via: SIP/2.0/UDP {to}:{port};rport={port};branch=z9hG4bK{dn}{cseq}\n"
        f"To: <sip:{dn}@192.168.210.81>;tag=srv\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} REGISTER\n"
        "Content-Length: 0\n"
        "\n"
    )


def accepted(
    clock: str,
    dn: str,
    *,
    source: str = "192.168.210.54",
    port: int = 5060,
    call_id: str | None = None,
    cseq: int = 1,
) -> str:
    """A REGISTER the server accepts through a configured gateway (a Trunk DN's contact)."""
    return (
        register(clock, dn, source=source, port=port, call_id=call_id, cseq=cseq)
        + f"{clock}: Unable to resolve number for DN:{dn}\n"
        f"{clock}: trunk ip addr {source}\n"
        f"{clock}: gateway 'Asterisk_WebRTC_Gateway' associated with address '{source}'\n"
        f"{clock}: SIPTS: handle registration event 0\n"
        f"{clock}: $*:SIP:CTI:DN_IN_SERVICE:4\n"
        f"{clock}: REGISTRAR: ACTIVE:{dn}\n"
        + response(clock, dn, to=source, port=port, call_id=call_id, cseq=cseq)
    )


@pytest.fixture
def write_log(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write `text` as a log segment named `name` (LF, or CRLF as on Windows) and return it."""

    def write(text: str, name: str = SEGMENT, *, crlf: bool = False) -> Path:
        path = tmp_path / name
        data = text.replace("\n", "\r\n") if crlf else text
        path.write_bytes(data.encode("utf-8"))
        return path

    return write


def stranger_message(body: str, *, content_length: int | None, header: str = "") -> str:
    """A SIP MESSAGE from a stranger to 5002 (LF line ends), with any Content-Length or none."""
    length = "" if content_length is None else f"Content-Length: {content_length}\n"
    return (
        "MESSAGE sip:5002@192.168.210.81 SIP/2.0\n"
        "Via: SIP/2.0/UDP 10.6.6.6:5060;branch=z9hG4bKforger\n"
        "From: <sip:forger@10.6.6.6>;tag=f\n"
        "To: <sip:5002@192.168.210.81>\n"
        "Call-ID: forger@10.6.6.6\n"
        "CSeq: 1 MESSAGE\n"
        f"{header}"
        "Content-Type: text/plain\n"
        f"{length}"
        "\n" + body
    )
