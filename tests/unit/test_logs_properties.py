"""Property tests: whatever the bytes, the parser never raises; cut or chunked input stays sane."""

from __future__ import annotations

import itertools

from conftest import HEADER, SEED_1003, SEED_5002, SEGMENT
from hypothesis import given, settings
from hypothesis import strategies as st

from remediate.genesys.logs import Scope, read_stream, registrations

LOG = (HEADER + SEED_1003 + SEED_5002).encode()

# Pieces of real lines, so random input reaches the parser's real paths, not only "unknown line".
FRAGMENTS = [
    b"\n",
    b"\r\n",
    b"\n\n",
    b"13:55:31.501: ",
    b"2026-02-02T14:54:56.001 Trc 04120 Check point 2026-02-02T14:54:56\n",
    b"SIPTR: Received [0,UDP] 437 bytes from 192.168.210.54:5061 <<<<<\n",
    b"Sending  [0,UDP] 426 bytes to 192.168.210.54:5061 >>>>>\n",
    b"REGISTER sip:192.168.210.81 SIP/2.0\n",
    b"SIP/2.0 200 OK\n",
    b"CSeq: 1 REGISTER\n",
    b"Call-ID: x\n",
    b"Content-Length: 40\n",
    b"Expires: 0\n",
    b"SIPTS: handle registration event 2\n",
    b"REGISTRAR: TERMINATED:5002\n",
    b"REGISTRAR: EXPIRED:\n\tAOR: sip:5002@h\n",
    b"$*:SIP:CTI:DN_IN_SERVICE:3\n",
    b"no gateway is found using address '1' for number '2'\n",
    b"\xff\xfe\x00",
    b"Application name: SIP_P\n",
]

fragments = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(pieces=fragments, scope=st.sampled_from(list(Scope)))
def test_random_input_never_raises(pieces: list[bytes], scope: Scope) -> None:
    events = list(read_stream(pieces, SEGMENT, scope))
    registrations(events)
    for event in events:
        assert event.line >= 1


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(LOG)), scope=st.sampled_from(list(Scope)))
def test_a_log_cut_anywhere_gives_a_prefix_of_the_whole_logs_events(cut: int, scope: Scope) -> None:
    whole = [(type(e), e.line) for e in read_stream([LOG], SEGMENT, scope)]
    events = list(read_stream([LOG[:cut]], SEGMENT, scope))
    registrations(events)
    # Every event of the cut log except possibly the last (a line or block cut short) is exactly
    # an event of the whole log.
    assert [(type(e), e.line) for e in events[:-1]] == whole[: max(len(events) - 1, 0)]


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(LOG)), max_size=12))
def test_any_split_into_pieces_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(LOG)]
    pieces = [LOG[start:end] for start, end in itertools.pairwise(bounds)]
    expected = [(type(e), e.line, e.text) for e in read_stream([LOG], SEGMENT)]
    assert [(type(e), e.line, e.text) for e in read_stream(pieces, SEGMENT)] == expected
