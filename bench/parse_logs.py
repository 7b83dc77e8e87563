"""Benchmark: the SIP Server log parser against `grep -c` on the same big, realistic log.

    .venv/bin/python bench/parse_logs.py [--size-mb 512] [--dir bench/out] [--keep]

Writes a SIP Server log of --size-mb megabytes in the real format (header block, registrations of
many DNs through a gateway and a softphone, OPTIONS/SUBSCRIBE/NOTIFY/INVITE traffic with bodies,
each message with its size on the wire, T-Server event dumps, CTI and framework lines, hourly check
points, a midnight), then measures, in the same run and on the same (cached) file:

- the parser: every event of the file, in a child process, with the child's peak RSS (VmHWM)
  (best of two runs, as grep's figure is the best of three);
- the diagnosis of two DNs (parser + registration transactions + root cause), likewise;
- `grep -c 'SIPTS: handle registration event'`.

It prints MB/s for each, the parser/grep ratio and the peak RSS, then deletes the file.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

MB = 1024 * 1024
DEFAULT_DIR = Path(__file__).resolve().parent / "out"
SERVER = "192.168.210.81"
GATEWAY = "192.168.210.54"
MEDIA = "192.168.210.90"


def _header(start: datetime, name: str) -> str:
    utc = start - timedelta(seconds=19800)
    return (
        "Application name: SIP_P\n"
        "Application type: TServer (1)\n"
        "Command line: D:\\gcti_apps\\SIP_P\\sip_server.exe -host GenUAT02 -port 2020 -app SIP_P "
        "-service TSrvSIP64 -l 7260@192.168.210.66\n"
        "Host name: GenUAT02\n"
        "Time zone: -19800, India Standard Time, India Daylight Time\n"
        f"UTC time: {utc.isoformat(timespec='milliseconds')}\n"
        f"Local time: {start.isoformat(timespec='milliseconds')}\n"
        "Host info: Windows Server 2019, x64\n"
        f"File: (1) D:\\gcti_logs\\SIP_P\\{name}\n"
        "\n"
        f"{start.isoformat(timespec='milliseconds')} Std 05060 Application started\n"
        f"{start.isoformat(timespec='milliseconds')} Trc 04110 Option 'segment' has been set to "
        "the value '10 MB'\n"
    )


def _wire_size(message: str) -> int:
    """The size of `message` (LF line ends; headers, then any body) on the wire, as the marker line
    gives it: CRLF line ends, and the empty line after the headers when there is no body."""
    size = len(message.replace("\n", "\r\n").encode())
    return size if "\n\n" in message else size + 2


class _Writer:
    """Produces the log's text cycle by cycle, with a clock that only moves forward."""

    def __init__(self, start: datetime, rng: random.Random) -> None:
        self.now = start
        self.rng = rng
        self.next_check_point = start.replace(minute=54, second=56, microsecond=0) + timedelta(
            hours=1
        )
        self.seq = 0

    def tick(self, milliseconds: int) -> str:
        self.now += timedelta(milliseconds=milliseconds)
        return self.now.strftime("%H:%M:%S.") + f"{self.now.microsecond // 1000:03d}"

    def check_point(self) -> str:
        if self.now < self.next_check_point:
            return ""
        stamp = self.next_check_point
        self.next_check_point += timedelta(hours=1)
        return (
            f"{stamp.isoformat(timespec='milliseconds')} Trc 04120 Check point "
            f"{stamp.isoformat(timespec='seconds')}\n"
        )

    def call_id(self) -> str:
        self.seq += 1
        return f"{self.rng.getrandbits(64):016x}-{self.seq}@{GATEWAY}"

    def tevent(self, clock: str, name: str, dn: str) -> str:
        """A T-Server event as SIP Server dumps it: a framework-ish line and its attributes."""
        self.seq += 1
        connection = f"{self.rng.getrandbits(64):016x}"
        return (
            f"@{clock}0 [0] 8.1.103.67 distribute_event: message {name}\n"
            f"\tAttributeEventSequenceNumber\t{self.seq:016x}\n"
            "\tAttributeCustomerID\t'Resources'\n"
            f"\tAttributeTimeinuSecs\t{self.rng.randrange(1000000)}\n"
            f"\tAttributeTimeinSecs\t1770020731 ({clock[:8]})\n"
            f"\tAttributeThisDN\t'{dn}'\n"
            "\tAttributeThisQueue\t'8001'\n"
            "\tAttributeThisDNRole\t2\n"
            f"\tAttributeOtherDN\t'+9180{self.rng.randrange(10**8):08d}'\n"
            "\tAttributeOtherDNRole\t1\n"
            f"\tAttributeConnID\t{connection}\n"
            f"\tAttributeCallUUID\t'{self.rng.getrandbits(128):032X}'\n"
            "\tAttributeCallType\t2\n"
            f"\tAttributeCallID\t{self.rng.randrange(10**6)}\n"
            "\tAttributeANI\t'+918012345678'\n"
            "\tAttributeDNIS\t'8001'\n"
            "\tAttributeUserData [120] 00 04 00 00..\n"
            f"\t\t'GSIP_REC_FN'\t'{connection}_{dn}'\n"
            "\t\t'RTargetRequested'\t'Sales_Hindi'\n"
            f"\t\t'CustomerSegment'\t'{self.rng.choice(('Gold', 'Silver', 'Bronze'))}'\n"
            "\t\t'IW_CaseUid'\t'00a1b2c3-d4e5-f607-1829-3a4b5c6d7e8f'\n"
            "\tAttributeExtensions [52] 00 02 00 00..\n"
            f"\t\t'AgentSessionID'\t'{self.rng.getrandbits(64):016X}'\n"
            "\t\t'BusinessCall'\t1\n"
            f"\tAttributeAgentID\t'agent{dn}'\n"
            "\tAttributePlace\t'Place_" + dn + "'\n"
        )

    def register(self, dn: str) -> str:
        """One registration transaction through the gateway or the softphone."""
        via_gateway = dn.startswith("5")
        source, port = (GATEWAY, 5060) if via_gateway else (SERVER, 5090)
        agent = "Asterisk-Genesys-Gateway" if via_gateway else "Genesys-Softphone/9.0.014.13"
        call_id, cseq = self.call_id(), self.rng.randrange(1, 90000)
        expires = 0 if self.rng.random() < 0.1 else 3600
        trusted = via_gateway and self.rng.random() < 0.8
        clock = self.tick(self.rng.randrange(1, 40))
        register = (
            f"REGISTER sip:{SERVER}:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {source}:{port};rport;branch=z9hG4bK{self.rng.getrandbits(48):x}\n"
            f"From: <sip:{dn}@{SERVER}>;tag={self.rng.getrandbits(32):x}\n"
            f"To: <sip:{dn}@{SERVER}>\n"
            f"Call-ID: {call_id}\n"
            f"CSeq: {cseq} REGISTER\n"
            f"Contact: <sip:{dn}@{source}:{port}>\n"
            f"Expires: {expires}\n"
            "Max-Forwards: 70\n"
            f"User-Agent: {agent}\n"
            "Content-Length:  0\n"
        )
        lines = [
            f"{clock}: SIPTR: Received [0,UDP] {_wire_size(register)} bytes from "
            f"{source}:{port} <<<<<\n{register}\n",
            f"{clock}: Unable to resolve number for DN:{dn}\n",
            f"{clock}: trunk ip addr {source}\n",
        ]
        if trusted:
            lines.append(
                f"{clock}: gateway 'Asterisk_WebRTC_Gateway' associated with address '{source}'\n"
            )
        else:
            lines.append(
                f"{clock}: no gateway is found using address '{source}' for number '{dn}'\n"
            )
        lines.append(
            f"{clock}: Assocaited transport for the device [4] changed from [:0:0] to "
            f"[{source}:{port}:1]\n{clock}: TRNMNGR: internal domain {SERVER}\n"
        )
        clock = self.tick(1)
        refused = via_gateway and not trusted
        if expires == 0 or refused:
            lines.append(
                f"{clock}: SIPTS: handle registration event 2\n"
                f"{clock}: REGISTRAR: TERMINATED:{dn}\n"
                f"{clock}: $+CTI:PRM:AGENT_LOGGED_OUT:{dn}:0\n"
            )
        else:
            event = self.rng.choice((0, 3, 3, 3))
            lines.append(f"{clock}: SIPTS: handle registration event {event}\n")
            lines.append(
                f"{clock}: $*:SIP:CTI:DN_IN_SERVICE:{self.rng.randrange(9)}\n"
                if event == 0
                else f"{clock}: $*:SIP:CTI:DN_CONTACT_CHANGE:{self.rng.randrange(9)}\n"
            )
            lines.append(f"{clock}: $+CTI:PRM:ON_DN_IN_SERVICE:190:62\n")
            lines.append(self.tevent(clock, "EventDNBackInService", dn))
        response = (
            "SIP/2.0 200 OK\n"
            f"Via: SIP/2.0/UDP {source}:{port};rport={port};branch=z9hG4bK1\n"
            f"From: <sip:{dn}@{SERVER}>;tag=1\n"
            f"To: <sip:{dn}@{SERVER}>;tag={self.rng.getrandbits(32):x}\n"
            f"Call-ID: {call_id}\n"
            f"CSeq: {cseq} REGISTER\n"
            f"Contact: <sip:{dn}@{source}:{port}>;expires={expires}\n"
            "Content-Length: 0\n"
        )
        lines.append(
            f"{clock}: Sending  [0,UDP] {_wire_size(response)} bytes to {source}:{port} >>>>>\n"
            f"{response}\n"
        )
        return "".join(lines)

    def options(self) -> str:
        clock = self.tick(self.rng.randrange(1, 30))
        call_id = self.call_id()
        request = (
            f"OPTIONS sip:{GATEWAY}:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {SERVER}:5060;branch=z9hG4bK{self.rng.getrandbits(48):x}\n"
            f"From: <sip:{SERVER}:5060>;tag={self.rng.getrandbits(32):x}\n"
            f"To: <sip:{GATEWAY}:5060>\n"
            f"Call-ID: {call_id}\n"
            "CSeq: 1 OPTIONS\n"
            "Max-Forwards: 70\n"
            "Content-Length: 0\n"
        )
        reply = (
            "SIP/2.0 200 OK\n"
            f"Via: SIP/2.0/UDP {SERVER}:5060;branch=z9hG4bK1\n"
            f"Call-ID: {call_id}\n"
            "CSeq: 1 OPTIONS\n"
            "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO\n"
            "Accept: application/sdp, application/dialog-info+xml\n"
            "User-Agent: Asterisk-Genesys-Gateway\n"
            "Content-Length: 0\n"
        )
        return (
            f"{clock}: Sending  [0,UDP] {_wire_size(request)} bytes to {GATEWAY}:5060 >>>>>\n"
            f"{request}\n"
            f"{self.tick(2)}: SIPTR: Received [0,UDP] {_wire_size(reply)} bytes from "
            f"{GATEWAY}:5060 <<<<<\n{reply}\n"
            f"{self.tick(0)}: SIPDM: trunk Asterisk_WebRTC_Gateway in service, oos-check 30\n"
        )

    def subscribe_notify(self, dn: str) -> str:
        clock = self.tick(self.rng.randrange(1, 30))
        call_id = self.call_id()
        subscribe = (
            f"SUBSCRIBE sip:{dn}@{SERVER}:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {SERVER}:5090;branch=z9hG4bK{self.rng.getrandbits(48):x}\n"
            f"From: <sip:{dn}@{SERVER}>;tag={self.rng.getrandbits(32):x}\n"
            f"To: <sip:{dn}@{SERVER}>\n"
            f"Call-ID: {call_id}\n"
            "CSeq: 2 SUBSCRIBE\n"
            "Event: dialog\n"
            "Accept: application/dialog-info+xml\n"
            "Expires: 3600\n"
            "Content-Length: 0\n"
        )
        body = (
            '<?xml version="1.0"?>\n'
            '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" '
            f'state="full" entity="sip:{dn}@{SERVER}">\n'
            f'<dialog id="{self.rng.getrandbits(32):x}" direction="recipient">'
            "<state>terminated</state></dialog>\n"
            "</dialog-info>\n"
        )
        wire_body = body.replace("\n", "\r\n")
        notify = (
            f"NOTIFY sip:{dn}@{SERVER}:5090 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {SERVER}:5060;branch=z9hG4bK{self.rng.getrandbits(48):x}\n"
            f"From: <sip:{dn}@{SERVER}>;tag=2\n"
            f"To: <sip:{dn}@{SERVER}>;tag=3\n"
            f"Call-ID: {call_id}\n"
            "CSeq: 3 NOTIFY\n"
            "Event: dialog\n"
            "Subscription-State: active;expires=3600\n"
            "Content-Type: application/dialog-info+xml\n"
            f"Content-Length: {len(wire_body)}\n"
            f"\n{body}"
        )
        ok = f"SIP/2.0 200 OK\nCall-ID: {call_id}\nCSeq: 2 SUBSCRIBE\nContent-Length: 0\n"
        return (
            f"{clock}: SIPTR: Received [0,UDP] {_wire_size(subscribe)} bytes from "
            f"{SERVER}:5090 <<<<<\n{subscribe}\n"
            f"{clock}: Sending  [0,UDP] {_wire_size(ok)} bytes to {SERVER}:5090 >>>>>\n{ok}\n"
            f"{self.tick(1)}: Sending  [0,UDP] {_wire_size(notify)} bytes to {SERVER}:5090 >>>>>\n"
            f"{notify}\n"
        )

    def call(self, dn: str) -> str:
        clock = self.tick(self.rng.randrange(1, 30))
        call_id = self.call_id()
        sdp = (
            "v=0\n"
            f"o=- {self.rng.getrandbits(32)} 1 IN IP4 {MEDIA}\n"
            "s=Genesys\n"
            f"c=IN IP4 {MEDIA}\n"
            "t=0 0\n"
            f"m=audio {self.rng.randrange(10000, 20000, 2)} RTP/AVP 0 8 101\n"
            "a=rtpmap:0 PCMU/8000\n"
            "a=rtpmap:8 PCMA/8000\n"
            "a=rtpmap:101 telephone-event/8000\n"
            "a=fmtp:101 0-15\n"
            "a=sendrecv\n"
        )
        wire_sdp = sdp.replace("\n", "\r\n")
        invite = (
            f"INVITE sip:{dn}@{GATEWAY}:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {SERVER}:5060;branch=z9hG4bK{self.rng.getrandbits(48):x}\n"
            f"From: <sip:+9180{self.rng.randrange(10**8):08d}@{SERVER}>;tag=4\n"
            f"To: <sip:{dn}@{GATEWAY}>\n"
            f"Call-ID: {call_id}\n"
            "CSeq: 1 INVITE\n"
            f"Contact: <sip:{SERVER}:5060>\n"
            "Max-Forwards: 69\n"
            "Content-Type: application/sdp\n"
            f"Content-Length: {len(wire_sdp)}\n"
            f"\n{sdp}"
        )
        lines = [
            f"{clock}: $+CTI:PRM:ON_CALL_RINGING:{dn}:{self.rng.randrange(999)}\n",
            f"{clock}: Sending  [0,UDP] {_wire_size(invite)} bytes to {GATEWAY}:5060 >>>>>\n"
            f"{invite}\n",
        ]
        for status in ("100 Trying", "180 Ringing", "200 OK"):
            clock = self.tick(self.rng.randrange(1, 200))
            message = (
                f"SIP/2.0 {status}\n"
                f"Via: SIP/2.0/UDP {SERVER}:5060;branch=z9hG4bK1\n"
                f"From: <sip:+9180@{SERVER}>;tag=4\n"
                f"To: <sip:{dn}@{GATEWAY}>;tag=5\n"
                f"Call-ID: {call_id}\n"
                "CSeq: 1 INVITE\n"
            )
            if status == "200 OK":
                message += (
                    f"Content-Type: application/sdp\nContent-Length: {len(wire_sdp)}\n\n{sdp}"
                )
            else:
                message += "Content-Length: 0\n"
            lines.append(
                f"{clock}: SIPTR: Received [0,UDP] {_wire_size(message)} bytes from {GATEWAY}:5060 "
                f"<<<<<\n{message}\n"
            )
            event = "EventRinging" if "180" in status else "EventDialing"
            lines.append(self.tevent(clock, event, dn))
            lines.append(self.tevent(clock, "EventAttachedDataChanged", dn))
            lines.append(
                f"{self.now.isoformat(timespec='milliseconds')} Int 04543 Interaction message "
                '"EventRinging" sent to 636 ("WWE_Server")\n'
            )
        for method in ("ACK", "BYE"):
            clock = self.tick(self.rng.randrange(1, 2000))
            message = (
                f"{method} sip:{dn}@{GATEWAY}:5060 SIP/2.0\n"
                f"Via: SIP/2.0/UDP {SERVER}:5060;branch=z9hG4bK2\n"
                f"Call-ID: {call_id}\n"
                f"CSeq: {1 if method == 'ACK' else 2} {method}\n"
                "Content-Length: 0\n"
            )
            lines.append(
                f"{clock}: Sending  [0,UDP] {_wire_size(message)} bytes to {GATEWAY}:5060 >>>>>\n"
                f"{message}\n"
            )
        lines.append(self.tevent(clock, "EventReleased", dn))
        lines.append(self.tevent(clock, "EventAgentReady", dn))
        return "".join(lines)


def write_log(
    path: Path, size_bytes: int, registration_share: float = 0.1, seed: int = 2
) -> tuple[int, int]:
    """Write the log; return (its size, the number of registration-event lines in it).

    `registration_share` is the share of the traffic's exchanges that are registrations; the rest
    is OPTIONS (20 %), SUBSCRIBE/NOTIFY (25 %) and calls.
    """
    rng = random.Random(seed)
    start = datetime(2026, 2, 2, 13, 54, 59, 850000)
    writer = _Writer(start, rng)
    dns = [str(dn) for dn in range(5000, 5400)] + [str(dn) for dn in range(1000, 1100)]
    written = 0
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(_header(start, path.name))
        while written < size_bytes:
            parts = []
            for _ in range(200):
                parts.append(writer.check_point())
                roll = rng.random()
                dn = rng.choice(dns)
                if roll < registration_share:
                    parts.append(writer.register(dn))
                elif roll < registration_share + 0.2:
                    parts.append(writer.options())
                elif roll < registration_share + 0.45:
                    parts.append(writer.subscribe_notify(dn))
                else:
                    parts.append(writer.call(dn))
            text = "".join(parts)
            out.write(text)
            written += len(text)
    size = path.stat().st_size
    return size, _count(path)


def _count(path: Path) -> int:
    result = subprocess.run(
        ["grep", "-c", "SIPTS: handle registration event", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(result.stdout.strip() or 0)


_CHILD = """
import json, sys, time
from remediate.genesys.logs import read_logs
from remediate.diagnose import diagnose_events
path, mode = sys.argv[1], sys.argv[2]
started = time.perf_counter()
events = 0
if mode == "parse":
    for _event in read_logs([path]):
        events += 1
else:
    diagnosis = diagnose_events(read_logs([path]), ["5002", "1003"], sources=[path])
    events = len(diagnosis.dns)
elapsed = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"elapsed": elapsed, "events": events, "peak_kb": peak}))
"""


def _measure_child(path: Path, mode: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def _measure_grep(path: Path) -> float:
    started = time.perf_counter()
    _count(path)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512, help="size of the log (default 512)")
    parser.add_argument(
        "--registrations",
        type=float,
        default=10,
        help="percentage of the exchanges that are registrations (default 10)",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where to write it")
    parser.add_argument("--keep", action="store_true", help="keep the log file afterwards")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / "SIP_P-001.20260202_135459_850.log"
    try:
        started = time.perf_counter()
        size, registrations = write_log(path, args.size_mb * MB, args.registrations / 100)
        print(
            f"wrote {path} ({size / MB:.0f} MB, {registrations} registrations, "
            f"{args.registrations:g} % of the exchanges) in {time.perf_counter() - started:.1f} s"
        )
        _measure_grep(path)  # warm the page cache, so both readers see the same cached file
        grep_seconds = min(_measure_grep(path) for _ in range(3))
        parse = min(
            (_measure_child(path, "parse") for _ in range(2)), key=lambda run: run["elapsed"]
        )
        diagnose = _measure_child(path, "diagnose")
        grep_rate = size / MB / grep_seconds
        parse_rate = size / MB / parse["elapsed"]
        diagnose_rate = size / MB / diagnose["elapsed"]
        print(f"grep -c:  {grep_rate:8.0f} MB/s  ({grep_seconds:.2f} s)")
        print(
            f"parser:   {parse_rate:8.0f} MB/s  ({parse['elapsed']:.2f} s, "
            f"{int(parse['events'])} events, peak RSS {parse['peak_kb'] / 1024:.0f} MB)"
        )
        print(
            f"diagnose: {diagnose_rate:8.0f} MB/s  ({diagnose['elapsed']:.2f} s, 2 DNs, "
            f"peak RSS {diagnose['peak_kb'] / 1024:.0f} MB)"
        )
        print(f"ratio parser/grep: {parse_rate / grep_rate:.3f} (target >= 0.05)")
        print(f"ratio diagnose/grep: {diagnose_rate / grep_rate:.3f}")
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            path.unlink(missing_ok=True)
            if args.dir == DEFAULT_DIR and not any(args.dir.iterdir()):
                shutil.rmtree(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
