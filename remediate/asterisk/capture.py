"""REGISTERs seen on the Asterisk host during a short window: a capture, as in the seed's step 3.

Where the host has tcpdump, it runs for the window and writes a pcap to stdout; the UDP payloads
toward the SIP Server are read here (no pcap library needed: classic pcap, Ethernet, Linux cooked
v1/v2, raw IP, loopback). Otherwise a JSON-lines record of the REGISTERs the host sent (the lab's
`sip-register.jsonl`, named by `asterisk_capture_record`) stands in, read from where it ended when
the window opened.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}
_PCAP_NS_MAGIC = {b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
_LINK_ETHERNET, _LINK_RAW, _LINK_NULL, _LINK_SLL, _LINK_SLL2, _LINK_RAW_ALT = (
    1,
    101,
    0,
    113,
    276,
    12,
)


@dataclass(frozen=True)
class CapturedRegister:
    """One REGISTER as it left (or one response as it reached) the Asterisk host."""

    time: str
    source: str  # address:port
    destination: str
    start_line: str
    headers: tuple[tuple[str, str], ...]
    origin: str  # "tcpdump" or the record file's path
    registration: str | None = None  # the pjsip.conf registration, when the record names it

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)

    @property
    def dn(self) -> str | None:
        """The user part of the To header (the AOR being registered)."""
        to = self.header("To") or self.header("t") or ""
        match = re.search(r"sips?:([^@;>]+)@", to)
        return match.group(1) if match else None


def parse_sip_headers(message: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The start line and the headers (unfolded, in order) of a raw SIP message."""
    head = re.split(r"\r?\n\r?\n", message, maxsplit=1)[0]
    lines = re.split(r"\r?\n", head)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0].strip(), tuple(headers)


def _ip_udp_payload(packet: bytes) -> tuple[str, int, str, int, bytes] | None:
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        header_length = (packet[0] & 0x0F) * 4
        if len(packet) < header_length + 8 or packet[9] != 17:
            return None
        source = ".".join(str(b) for b in packet[12:16])
        destination = ".".join(str(b) for b in packet[16:20])
        udp = packet[header_length:]
    elif version == 6:
        if len(packet) < 48 or packet[6] != 17:
            return None
        source = str(ipaddress.IPv6Address(packet[8:24]))
        destination = str(ipaddress.IPv6Address(packet[24:40]))
        udp = packet[40:]
    else:
        return None
    source_port, destination_port = struct.unpack("!HH", udp[:4])
    return source, source_port, destination, destination_port, udp[8:]


def _network_layer(link_type: int, frame: bytes, order: str) -> bytes | None:
    if link_type == _LINK_ETHERNET:
        ether_type = struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else 0
        offset = 14
        if ether_type == 0x8100 and len(frame) >= 18:  # one VLAN tag
            offset = 18
        return frame[offset:]
    if link_type == _LINK_SLL:
        return frame[16:]
    if link_type == _LINK_SLL2:
        return frame[20:]
    if link_type in (_LINK_RAW, _LINK_RAW_ALT):
        return frame
    if link_type == _LINK_NULL:
        return frame[4:]
    return None


def pcap_udp_payloads(data: bytes) -> Iterator[tuple[float, str, int, str, int, bytes]]:
    """(time, source, sport, destination, dport, payload) of every UDP datagram of a pcap."""
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in _PCAP_MAGIC:
        order, divisor = _PCAP_MAGIC[magic], 1e6
    elif magic in _PCAP_NS_MAGIC:
        order, divisor = _PCAP_NS_MAGIC[magic], 1e9
    else:
        return
    link_type = struct.unpack(order + "I", data[20:24])[0] & 0x0FFFFFFF
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        if offset + 16 + captured > len(data):
            break  # the last record was cut when the capture was stopped
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        packet = _network_layer(link_type, frame, order)
        if packet is None:
            continue
        parsed = _ip_udp_payload(packet)
        if parsed is not None:
            yield (seconds + fraction / divisor, *parsed)


def registers_from_pcap(data: bytes) -> list[CapturedRegister]:
    found: list[CapturedRegister] = []
    for moment, source, sport, destination, dport, payload in pcap_udp_payloads(data):
        text = payload.decode("utf-8", errors="replace")
        if not (text.startswith("REGISTER ") or text.startswith("SIP/2.0 ")):
            continue
        start_line, headers = parse_sip_headers(text)
        cseq = next((v for k, v in headers if k.lower() == "cseq"), "")
        if start_line.startswith("SIP/2.0") and "REGISTER" not in cseq.upper():
            continue
        found.append(
            CapturedRegister(
                time=datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat(
                    timespec="milliseconds"
                ),
                source=f"{source}:{sport}",
                destination=f"{destination}:{dport}",
                start_line=start_line,
                headers=headers,
                origin="tcpdump",
            )
        )
    return found


def registers_from_record(data: bytes, origin: str, local_address: str) -> list[CapturedRegister]:
    """Entries of a JSON-lines REGISTER record. Each has `time`, `direction` (`sent`/`received`),
    `peer`, and either the raw `message` or at least `line`, `call_id`, `cseq`, `expires`."""
    found: list[CapturedRegister] = []
    for raw in data.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # a line still being written when the window closed
        if not isinstance(entry, dict):
            continue
        message = entry.get("message")
        if isinstance(message, str) and message:
            start_line, headers = parse_sip_headers(message)
        else:
            start_line = str(entry.get("line", ""))
            pairs = [("Call-ID", entry.get("call_id")), ("CSeq", entry.get("cseq"))]
            if entry.get("expires") is not None:
                pairs.append(("Expires", str(entry["expires"])))
            headers = tuple((name, str(value)) for name, value in pairs if value is not None)
        peer = str(entry.get("peer", ""))
        local = local_address
        sent = str(entry.get("direction", "sent")).startswith("sent")
        registration = entry.get("registration")
        found.append(
            CapturedRegister(
                time=str(entry.get("time", "")),
                source=local if sent else peer,
                destination=peer if sent else local,
                start_line=start_line,
                headers=headers,
                origin=origin,
                registration=str(registration) if registration else None,
            )
        )
    return found
