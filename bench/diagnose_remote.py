"""Live diagnosis against a 200 MB SIP Server log on the lab's Genesys host.

Brings a lab up (addresses from REMEDIATE_TEST_GENESYS_HOST / REMEDIATE_TEST_ASTERISK_HOST),
writes a log segment of --size-mb MB in the real format into the lab's log directory (calls with
SDP, OPTIONS pings, SUBSCRIBE/NOTIFY, CTI and framework lines, and the REGISTER refreshes of
--dns DNs, among them the seed's failing 5002 and working 1003), then in the same run:

- `remediate diagnose --dn 5002 --dn 1003` through the product's live path (filtered on the host),
  counting the HTTP response body bytes that crossed WinRM;
- a plain `Get-Content` of the same file over the same WinRM transport.

It prints both wall times, the bytes each moved, and the filtered path's bytes as a share of the
log's size (target: under 2 %). The lab is stopped at the end.

    .venv/bin/python bench/diagnose_remote.py [--size-mb 200] [--keep-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from remediate import live
from remediate.genesys import powershell
from remediate.inventory import load_site
from remediate.lab import control
from remediate.lab.layout import LabAddresses, LabLayout
from remediate.transport.winrm import WinRMTransport

HOST_ZONE = datetime.timezone(datetime.timedelta(seconds=19800))
GATEWAY_PORT = 5060
SOFTPHONE_PORT = 5090


def _block(clock: str, direction: str, peer: str, message: str) -> str:
    size = len(message.replace("\n", "\r\n").encode())
    if direction == "in":
        return f"{clock}: SIPTR: Received [0,UDP] {size} bytes from {peer} <<<<<\n{message}\n"
    return f"{clock}: Sending  [0,UDP] {size} bytes to {peer} >>>>>\n{message}\n"


def _register(dn: str, source: str, server: str, user_agent: str, expires: int, n: int) -> str:
    return (
        f"REGISTER sip:{server}:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP {source};branch=z9hG4bK{n:016x};rport\n"
        "Max-Forwards: 70\n"
        f"Contact: <sip:{dn}@{source};transport=udp>\n"
        f"To: <sip:{dn}@{server}:5060>\n"
        f"From: <sip:{dn}@{server}:5060>;tag={n:012x}\n"
        f"Call-ID: {n:024x}@{source.split(':')[0]}\n"
        f"CSeq: {n % 9000 + 1} REGISTER\n"
        f"Expires: {expires}\n"
        f"User-Agent: {user_agent}\n"
        "Content-Length:  0\n"
    )


def _response(request: str, code: str, server: str, expires: int | None) -> str:
    keep = [
        line
        for line in request.splitlines()
        if line.startswith(("Via:", "From:", "To:", "Call-ID:", "CSeq:"))
    ]
    extra = (
        f"Contact: {request.split('Contact: ', 1)[1].splitlines()[0]};expires={expires}\n"
        if expires
        else ""
    )
    return f"SIP/2.0 {code}\n" + "\n".join(keep) + f"\n{extra}Server: SIP_P\nContent-Length:  0\n"


def _sdp(address: str, port: int) -> str:
    return (
        "v=0\n"
        f"o=- {port} 1 IN IP4 {address}\n"
        "s=-\n"
        f"c=IN IP4 {address}\n"
        "t=0 0\n"
        f"m=audio {port} RTP/AVP 0 8 101\n"
        "a=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-15\na=sendrecv\n"
    )


def write_log(
    path: Path, size_bytes: int, start: datetime.datetime, server: str, gateway: str, dns: int
) -> int:
    """A SIP Server segment of about `size_bytes`, starting at `start` (host time)."""
    rng = random.Random(42)
    agent_dns = [str(5001 + i) for i in range(dns // 2)] + [
        str(1001 + i) for i in range(dns - dns // 2)
    ]
    next_refresh = {dn: rng.uniform(0, 1800) for dn in agent_dns}
    header = (
        "Application name: SIP_P\n"
        "Application type: TServer (1)\n"
        "Command line: D:\\gcti_apps\\SIP_P\\sip_server.exe -host GenUAT02 -port 2020 -app SIP_P "
        f"-service TSrvSIP64 -l 7260@{server}\n"
        "Host name: GenUAT02\n"
        "Time zone: -19800, India Standard Time, India Daylight Time\n"
        f"UTC time: {start.astimezone(datetime.UTC):%Y-%m-%dT%H:%M:%S}.000\n"
        f"Local time: {start:%Y-%m-%dT%H:%M:%S}.000\n"
        "Host info: x64, Windows Server 2019 Standard, 10.0.17763\n"
        f"File: (1) D:\\gcti_logs\\SIP_P\\{path.name}\n\n"
    )
    written = 0
    n = 0
    second = 0
    with path.open("w", encoding="ascii", newline="\r\n") as out:
        out.write(header)
        written += len(header) + header.count("\n")
        while written < size_bytes:
            now = start + datetime.timedelta(seconds=second)
            parts: list[str] = []
            if second % 3600 == 0:
                parts.append(
                    f"{now:%Y-%m-%dT%H:%M:%S}.000 Trc 04120 Check point {now:%Y-%m-%dT%H:%M:%S}\n"
                )
            for call in range(3):
                n += 1
                clock = f"{now + datetime.timedelta(milliseconds=call * 300):%H:%M:%S.%f}"[:-3]
                caller, callee = rng.choice(agent_dns), rng.choice(agent_dns)
                invite = (
                    f"INVITE sip:{callee}@{server}:5060 SIP/2.0\n"
                    f"Via: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK{n:016x}\n"
                    f"From: <sip:{caller}@10.20.30.40>;tag={n:08x}\n"
                    f"To: <sip:{callee}@{server}>\n"
                    f"Call-ID: call-{n:020x}@10.20.30.40\n"
                    "CSeq: 1 INVITE\n"
                    f"Contact: <sip:{caller}@10.20.30.40:5060>\n"
                    "Content-Type: application/sdp\n"
                    "Content-Length: 240\n\n" + _sdp("10.20.30.40", 20000 + n % 10000)
                )
                parts.append(_block(clock, "in", "10.20.30.40:5060", invite))
                parts.append(f"{clock}: SIPTS: new call {n} from {caller} to {callee}\n")
                parts.append(f"{clock}: $+CTI:PRM:EventRinging:{callee}:{n}\n")
                ok = (
                    "SIP/2.0 200 OK\n"
                    + "\n".join(line for line in invite.split("\n\n")[0].splitlines()[1:7])
                    + "\nContent-Type: application/sdp\nContent-Length: 240\n\n"
                    + _sdp(server, 30000 + n % 10000)
                )
                parts.append(_block(clock, "out", "10.20.30.40:5060", ok))
                parts.append(
                    f"{now:%Y-%m-%dT%H:%M:%S}.{call:03d} Int 04543 Interaction message "
                    '"EventEstablished" sent to 620 ("WWE")\n'
                )
                parts.append(
                    _block(
                        clock,
                        "in",
                        "10.20.30.40:5060",
                        f"BYE sip:{callee}@{server}:5060 SIP/2.0\n"
                        f"Call-ID: call-{n:020x}@10.20.30.40\nCSeq: 2 BYE\nContent-Length: 0\n",
                    )
                )
                parts.append(f"{clock}: $+CTI:PRM:EventReleased:{callee}:{n}\n")
            clock = f"{now:%H:%M:%S}.950"
            parts.append(
                _block(
                    clock,
                    "out",
                    f"{gateway}:{GATEWAY_PORT}",
                    f"OPTIONS sip:{gateway}:5060 SIP/2.0\nCall-ID: opt-{second}\n"
                    f"CSeq: {second} OPTIONS\nContent-Length: 0\n",
                )
            )
            for dn in agent_dns:
                if next_refresh[dn] > second:
                    continue
                next_refresh[dn] = second + 1800
                n += 1
                clock = f"{now:%H:%M:%S}.{rng.randrange(1000):03d}"
                through_gateway = dn.startswith("50")
                address, port = (
                    (gateway, GATEWAY_PORT) if through_gateway else (server, SOFTPHONE_PORT)
                )
                source = f"{address}:{port}"
                agent = (
                    "Asterisk-Genesys-Gateway"
                    if through_gateway
                    else "Genesys-Softphone/9.0.014.13"
                )
                request = _register(dn, source, server, agent, 3600, n)
                parts.append(_block(clock, "in", source, request))
                parts.append(f"{clock}: Unable to resolve number for DN:{dn}\n")
                parts.append(f"{clock}: trunk ip addr {address}\n")
                parts.append(
                    f"{clock}: no gateway is found using address '{address}' for number '{dn}'\n"
                )
                if through_gateway:
                    parts.append(f"{clock}: SIPTS: handle registration event 2\n")
                    parts.append(f"{clock}: REGISTRAR: TERMINATED:{dn}\n")
                    parts.append(
                        _block(clock, "out", source, _response(request, "200 OK", server, None))
                    )
                else:
                    parts.append(
                        f"{clock}: SIPTS: handle registration event 0\n"
                        f"{clock}: $*:SIP:CTI:DN_IN_SERVICE:5\n{clock}: REGISTRAR: ACTIVE:{dn}\n"
                    )
                    parts.append(
                        _block(clock, "out", source, _response(request, "200 OK", server, 3600))
                    )
            text = "".join(parts)
            out.write(text)
            written += len(text) + text.count("\n")
            second += 1
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=float, default=200.0)
    parser.add_argument(
        "--dns", type=int, default=400, help="agent DNs refreshing their registration"
    )
    parser.add_argument(
        "--keep-dir", type=Path, help="lab directory to use and keep (default: a temporary one)"
    )
    args = parser.parse_args()
    addresses = LabAddresses(
        genesys_host=os.environ.get("REMEDIATE_TEST_GENESYS_HOST") or "127.0.0.81",
        asterisk_host=os.environ.get("REMEDIATE_TEST_ASTERISK_HOST") or "127.0.0.54",
    )
    root = args.keep_dir or Path(tempfile.mkdtemp(prefix="remediate-bench-"))
    layout = LabLayout(root, addresses)
    control.up(layout, "untrusted-gateway")
    try:
        site = load_site(layout.inventory_dir / "hosts.yml")
        host_now = datetime.datetime.now(HOST_ZONE)
        start = (host_now - datetime.timedelta(hours=10)).replace(microsecond=0)
        name = f"SIP_P-001.{start:%Y%m%d_%H%M%S}_000.log"
        log_path = layout.log_dir / name
        began = time.monotonic()
        size = write_log(
            log_path,
            int(args.size_mb * 1024 * 1024),
            start,
            addresses.genesys_host,
            addresses.asterisk_host,
            args.dns,
        )
        print(
            f"log: {log_path.name} {size / 1e6:.1f} MB written in {time.monotonic() - began:.1f} s"
        )

        began = time.monotonic()
        evidence = live.collect(site, ["5002", "1003"], since="12h")
        filtered_seconds = time.monotonic() - began
        history = evidence.history
        assert history is not None
        transactions = {dn: timeline.total for dn, timeline in history.timelines.items()}
        print(
            f"diagnose (filtered on the host): {filtered_seconds:6.2f} s wall, "
            f"{evidence.winrm_bytes_received / 1e6:8.3f} MB over WinRM "
            f"({100 * evidence.winrm_bytes_received / size:.3f} % of the log), "
            f"segments {len(evidence.log_segments)}, transactions {transactions}"
        )

        settings = site.genesys.winrm
        plain = powershell.encode(
            f"Get-Content -LiteralPath {powershell.quote(site.genesys.log_dir + chr(92) + name)}"
        )
        began = time.monotonic()
        with WinRMTransport(dataclasses.replace(settings, command_timeout=3600.0)) as transport:
            result = transport.run(plain.command_line)
            moved = transport.bytes_received
        plain_seconds = time.monotonic() - began
        print(
            f"plain Get-Content of the same file:  {plain_seconds:6.2f} s wall, "
            f"{moved / 1e6:8.3f} MB over WinRM (exit {result.exit_code}, "
            f"{len(result.stdout) / 1e6:.1f} MB of output)"
        )
        share = 100 * evidence.winrm_bytes_received / size
        print(f"share of the log that crossed WinRM: {share:.3f} % (target < 2 %)")
        print(f"wall time: filtered {filtered_seconds:.2f} s vs plain {plain_seconds:.2f} s")
        return 0 if share < 2 else 1
    finally:
        control.down(layout)
        if args.keep_dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
