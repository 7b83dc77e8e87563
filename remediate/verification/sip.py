"""A SIP OPTIONS probe over UDP (RFC 3261 section 11): the network check of the verification.

One request, retransmitted on RFC 3261's timer E schedule (0.5 s, 1 s, 2 s, ...) until a final
response or the bound; a response counts only when its Call-ID, CSeq and top Via branch are the
request's.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass

FIRST_RETRANSMIT_SECONDS = 0.5
MAX_RETRANSMIT_SECONDS = 4.0
MAX_DATAGRAM = 65535


@dataclass(frozen=True)
class ProbeResult:
    """What the probe got: a final response (`status` and `reason`), or none (`status` None)."""

    target: str
    status: int | None
    reason: str
    sent: int
    seconds: float

    @property
    def answered_ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def options_request(
    target_host: str, target_port: int, local_host: str, local_port: int, branch: str, call_id: str
) -> bytes:
    local = _host_port(local_host, local_port)
    uri = f"sip:{_host_port(target_host, target_port)}"
    lines = [
        f"OPTIONS {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {local};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:remediate-verify@{local}>;tag={secrets.token_hex(6)}",
        f"To: <{uri}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:remediate-verify@{local}>",
        "Accept: application/sdp",
        "User-Agent: remediate-verify",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _headers(data: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the first value of each header (compact forms expanded)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", errors="replace")
    start, *lines = head.split("\r\n")
    compact = {"i": "call-id", "v": "via"}
    headers: dict[str, str] = {}
    for line in lines:
        name, separator, value = line.partition(":")
        if not separator:
            continue
        key = compact.get(name.strip().lower(), name.strip().lower())
        headers.setdefault(key, value.strip())
    return start, headers


def _matches(data: bytes, call_id: str, branch: str) -> tuple[int, str] | None:
    """(status, reason) when `data` is a response to our request, else None."""
    start, headers = _headers(data)
    parts = start.split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    if headers.get("call-id") != call_id or headers.get("cseq", "").split() != ["1", "OPTIONS"]:
        return None
    if f"branch={branch}" not in headers.get("via", ""):
        return None
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


def options_probe(host: str, port: int, timeout: float) -> ProbeResult:
    """Send OPTIONS to `host:port` over UDP and wait up to `timeout` seconds for a final answer."""
    target = _host_port(host, port)
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
    )[0]
    started = time.monotonic()
    deadline = started + timeout
    sent = 0
    with socket.socket(family, kind, protocol) as udp:
        # Connected: the kernel picks our source address (for Via and Contact) and drops
        # datagrams from anyone else; an ICMP port-unreachable surfaces as ConnectionRefusedError.
        udp.connect(address)
        local_host, local_port = udp.getsockname()[:2]
        branch = "z9hG4bK" + secrets.token_hex(8)
        call_id = f"{secrets.token_hex(12)}@{local_host}"
        request = options_request(host, port, local_host, local_port, branch, call_id)
        interval = FIRST_RETRANSMIT_SECONDS
        provisional = ""
        try:
            while time.monotonic() < deadline:
                udp.send(request)
                sent += 1
                resend_at = min(deadline, time.monotonic() + interval)
                interval = min(interval * 2, MAX_RETRANSMIT_SECONDS)
                while (wait := resend_at - time.monotonic()) > 0:
                    udp.settimeout(wait)
                    try:
                        data = udp.recv(MAX_DATAGRAM)
                    except TimeoutError:
                        break
                    answer = _matches(data, call_id, branch)
                    if answer is None:
                        continue
                    if answer[0] < 200:
                        provisional = f"{answer[0]} {answer[1]}".strip()
                        continue
                    return ProbeResult(
                        target, answer[0], answer[1], sent, time.monotonic() - started
                    )
        except ConnectionRefusedError:
            return ProbeResult(
                target, None, "port unreachable (ICMP)", sent, time.monotonic() - started
            )
    reason = f"no final response in {timeout:g} s ({sent} sent"
    reason += f", last provisional {provisional})" if provisional else ")"
    return ProbeResult(target, None, reason, sent, time.monotonic() - started)
