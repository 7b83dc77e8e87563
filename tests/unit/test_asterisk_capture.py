"""REGISTERs from a capture: a pcap that tcpdump writes, or the lab's JSON-lines record."""

from __future__ import annotations

import json
import struct

from remediate.asterisk import capture

REGISTER = (
    "REGISTER sip:127.0.0.81:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.54:5060;rport;branch=z9hG4bK1\r\n"
    "From: <sip:5002@127.0.0.81>;tag=a\r\n"
    "To: <sip:5002@127.0.0.81>\r\n"
    "Call-ID: c1\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:5002@127.0.0.54:5060>\r\n"
    "User-Agent: Asterisk-Genesys-Gateway\r\n"
    "Expires: 3600\r\n"
    "Content-Length: 0\r\n\r\n"
)


def _udp_ipv4(source: str, sport: int, destination: str, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        bytes(int(part) for part in source.split(".")),
        bytes(int(part) for part in destination.split(".")),
    )
    return header + udp


def _pcap(link_type: int, frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link_type)
    for index, frame in enumerate(frames):
        out += struct.pack("<IIII", 1_764_340_000 + index, 500_000, len(frame), len(frame)) + frame
    return out


def test_registers_from_a_linux_cooked_pcap() -> None:
    register = _udp_ipv4("127.0.0.54", 5060, "127.0.0.81", 5060, REGISTER.encode())
    response = _udp_ipv4(
        "127.0.0.81", 5060, "127.0.0.54", 5060, b"SIP/2.0 403 Forbidden\r\nCSeq: 1 REGISTER\r\n\r\n"
    )
    options = _udp_ipv4("127.0.0.81", 5060, "127.0.0.54", 5060, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    sll = b"\x00" * 14 + b"\x08\x00"  # Linux cooked v1 header, protocol IPv4
    data = _pcap(113, [sll + register, sll + options, sll + response])
    found = capture.registers_from_pcap(data)
    assert [r.start_line for r in found] == [
        "REGISTER sip:127.0.0.81:5060 SIP/2.0",
        "SIP/2.0 403 Forbidden",
    ]
    first = found[0]
    assert (first.source, first.destination, first.dn) == (
        "127.0.0.54:5060",
        "127.0.0.81:5060",
        "5002",
    )
    assert first.header("user-agent") == "Asterisk-Genesys-Gateway"
    assert first.time.startswith("2025-11-28T14:26:40.500")
    assert first.origin == "tcpdump"


def test_ethernet_and_garbage_pcaps() -> None:
    register = _udp_ipv4("10.0.0.2", 5060, "10.0.0.1", 5060, REGISTER.encode())
    ethernet = b"\x00" * 12 + b"\x08\x00"
    assert len(capture.registers_from_pcap(_pcap(1, [ethernet + register]))) == 1
    assert capture.registers_from_pcap(b"not a pcap at all") == []
    truncated = _pcap(1, [ethernet + register])[:-40]
    assert capture.registers_from_pcap(truncated) == []


def test_headers_unfold_and_keep_order() -> None:
    start, headers = capture.parse_sip_headers(
        "REGISTER sip:x SIP/2.0\nVia: a\n  b\nTo: <sip:1@x>\n\nbody: no"
    )
    assert start == "REGISTER sip:x SIP/2.0"
    assert headers == (("Via", "a b"), ("To", "<sip:1@x>"))


def test_record_entries_with_and_without_raw_messages() -> None:
    lines = [
        {
            "time": "2026-11-28T14:29:19.503+00:00",
            "direction": "sent",
            "peer": "127.0.0.81:5060",
            "line": "REGISTER sip:127.0.0.81:5060 SIP/2.0",
            "call_id": "c1",
            "cseq": "1 REGISTER",
            "expires": 3600,
            "registration": "genesys_reg_5002",
        },
        {"time": "t2", "direction": "received", "peer": "127.0.0.81:5060", "message": REGISTER},
    ]
    data = ("\n".join(json.dumps(line) for line in lines) + '\n{"partial').encode()
    first, second = capture.registers_from_record(data, "/lab/rec.jsonl", "127.0.0.54:5060")
    assert (first.source, first.destination, first.registration) == (
        "127.0.0.54:5060",
        "127.0.0.81:5060",
        "genesys_reg_5002",
    )
    assert first.header("Expires") == "3600" and first.header("Via") is None
    assert second.source == "127.0.0.81:5060" and second.header("Via") is not None
    assert second.dn == "5002"
