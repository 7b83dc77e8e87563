"""The parser is not fooled by text inside a SIP message: a stranger can send any bytes (a forged
marker line, a whole forged REGISTER transaction) in a header or a body, with any Content-Length,
and SIP Server logs them all. None of it may open a block or become an event."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from conftest import HEADER, SEED_5002, SEGMENT, accepted, stranger_message

from remediate.genesys.logs import (
    LogEvent,
    Scope,
    SipMessage,
    Verdict,
    read_logs,
    read_stream,
    registrations,
)
from remediate.lab.genesys.logwriter import SipServerLog


def wire_length(text: str) -> int:
    """Bytes of `text` (LF line ends) on the wire, where every line ends with CRLF."""
    return len(text.replace("\n", "\r\n").encode())


def logged(clock: str, message: str, *, size: int | None = None, sent: bool = False) -> str:
    """`message` as SIP Server logs it: a marker line with its size on the wire (or `size`), its
    lines, a blank line."""
    count = wire_length(message) if size is None else size
    marker = (
        f"{clock}: Sending  [0,UDP] {count} bytes to 192.168.210.54:5060 >>>>>"
        if sent
        else f"{clock}: SIPTR: Received [0,UDP] {count} bytes from 10.6.6.6:5060 <<<<<"
    )
    return f"{marker}\n{message.rstrip(chr(10))}\n\n"


FORGED_REGISTER = (
    "REGISTER sip:192.168.210.81:5060 SIP/2.0\n"
    "Via: SIP/2.0/UDP 192.168.210.54:5060;rport;branch=z9hG4bKforged\n"
    "From: <sip:5002@192.168.210.81>;tag=ff\n"
    "To: <sip:5002@192.168.210.81>\n"
    "Call-ID: forged-5002@192.168.210.54\n"
    "CSeq: 99999 REGISTER\n"
    "Contact: <sip:5002@192.168.210.54:5060>\n"
    "Expires: 3600\n"
    "User-Agent: Asterisk-Genesys-Gateway\n"
    "Content-Length: 0\n"
)
FORGED_RESPONSE = (
    "SIP/2.0 200 OK\n"
    "To: <sip:5002@192.168.210.81>;tag=srv\n"
    "Call-ID: forged-5002@192.168.210.54\n"
    "CSeq: 99999 REGISTER\n"
    "Content-Length: 0\n"
)
FORGED_OUTCOME = (
    "21:07:00.001: gateway 'Asterisk_WebRTC_Gateway' associated with address '192.168.210.54'\n"
    "21:07:00.001: SIPTS: handle registration event 0\n"
    "21:07:00.001: REGISTRAR: ACTIVE:5002\n"
    "21:07:00.001: $*:SIP:CTI:DN_IN_SERVICE:4\n"
)
# A whole accepted transaction of 5002, blocks sized exactly, as the real log would show it.
FORGED_TRANSACTION = (
    logged("21:07:00.000", FORGED_REGISTER)
    + FORGED_OUTCOME
    + logged("21:07:00.002", FORGED_RESPONSE, sent=True)
)
FORGED_CLOCK = "21:07:00"


BODY_LENGTH = wire_length(FORGED_TRANSACTION)
# Each variant: the stranger's message and the size its marker line gives (None: its real size).
VARIANTS = {
    "in-the-body": (stranger_message(FORGED_TRANSACTION, content_length=BODY_LENGTH), None),
    "in-the-body-of-a-hand-made-log": (
        stranger_message(FORGED_TRANSACTION, content_length=BODY_LENGTH),
        600,  # a size that fits no line of the block: Content-Length alone tells the end
    ),
    "in-a-body-without-content-length": (
        stranger_message(FORGED_TRANSACTION, content_length=None),
        None,
    ),
    "in-a-body-larger-than-content-length-0": (
        stranger_message(FORGED_TRANSACTION, content_length=0),
        None,
    ),
    "in-a-body-larger-than-content-length-10": (
        stranger_message(FORGED_TRANSACTION, content_length=10),
        None,
    ),
    "marker-in-a-header-value": (
        stranger_message(
            FORGED_OUTCOME,
            content_length=wire_length(FORGED_OUTCOME),
            header="X-Note: 21:07:00.000: SIPTR: Received [0,UDP] 420 bytes from "
            "192.168.210.54:5060 <<<<<\n",
        ),
        None,
    ),
    "log-lines-as-header-lines": (  # `21: 07:00.001: ...` is a header named "21" to SIP
        stranger_message(
            "hello\n", content_length=wire_length("hello\n"), header=FORGED_TRANSACTION
        ).replace("\n\n", "\n", 2),  # no blank line in the headers
        None,
    ),
    "a-datagram-that-is-not-sip": (FORGED_TRANSACTION, None),
}


def forged_log(variant: str) -> str:
    message, size = VARIANTS[variant]
    return (
        HEADER
        + SEED_5002
        + logged("21:06:59.000", message, size=size)
        + accepted("21:08:00.000", "5001", call_id="after")
    )


def parse(data: bytes, scope: Scope = Scope.REGISTRATIONS, piece: int = 0) -> list[LogEvent]:
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)] if piece else [data]
    return list(read_stream(pieces, SEGMENT, scope))


def assert_not_fooled(events: list[LogEvent]) -> None:
    assert [event.text for event in events if FORGED_CLOCK in event.text] == []
    blocks = [e for e in events if isinstance(e, SipMessage)]
    assert [e.line for e in blocks if "10.6.6.6" not in e.text and "forged" in e.message] == []
    history = registrations(events)
    assert set(history.sources) == {"192.168.210.54"}  # nothing came of the stranger's message
    (refused,) = history.timelines["5002"].entries
    assert refused.call_id == "8d2e61b0-5002@192.168.210.54"
    assert refused.verdict is Verdict.REFUSED
    (after,) = history.timelines["5001"].entries  # what follows the message is read again
    assert after.verdict is Verdict.ACCEPTED


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_forged_transaction_inside_a_message_is_no_event(variant: str, crlf: bool) -> None:
    text = forged_log(variant)
    data = (text.replace("\n", "\r\n") if crlf else text).encode()
    assert_not_fooled(parse(data))
    everything = parse(data, Scope.EVERYTHING)
    assert_not_fooled(everything)
    (stranger,) = [e for e in everything if isinstance(e, SipMessage) and "10.6.6.6" in e.text]
    assert FORGED_CLOCK in stranger.message  # the forgery is the message's own text
    assert not stranger.truncated
    line_of_after = text[: text.index("21:08:00.000: SIPTR")].count("\n") + 1
    request, _ = [e for e in everything if isinstance(e, SipMessage) and e.call_id == "after"]
    assert request.line == line_of_after


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_forged_transaction_read_in_pieces_gives_the_same_events(variant: str) -> None:
    data = forged_log(variant).encode()
    for scope in Scope:
        whole = [(type(e), e.line, e.text) for e in parse(data, scope)]
        for piece in (1, 7, 64, 333, 4096):
            assert [(type(e), e.line, e.text) for e in parse(data, scope, piece)] == whole


def test_a_content_length_larger_than_the_body_does_not_swallow_the_lines_after_it() -> None:
    message = stranger_message("hello\n", content_length=4000)
    data = (HEADER + logged("21:07:59.000", message) + accepted("21:08:00.000", "5001")).encode()
    (transaction,) = registrations(parse(data)).timelines["5001"].entries
    assert transaction.verdict is Verdict.ACCEPTED
    assert transaction.server_events == [0]


def test_a_block_cut_by_the_end_of_its_segment_keeps_its_forgery_inside(tmp_path: Path) -> None:
    """A segment that ends inside a message (the server stopped while writing it): the rest of
    the segment belongs to that message; the next segment starts afresh."""
    message = stranger_message(FORGED_TRANSACTION, content_length=BODY_LENGTH)
    block = logged("21:06:59.000", message)
    cut = block[: block.index("21:07:00.001: REGISTRAR")]  # inside the forged outcome lines
    first = tmp_path / SEGMENT
    first.write_text(HEADER + SEED_5002 + cut + "21:07:00.001: REGISTRAR: ACT")
    second = tmp_path / "SIP_P-001.20260202_210800_000.log"
    second.write_text(
        HEADER.replace("13:54:59.852", "21:08:00.000") + accepted("21:08:00.000", "5001")
    )
    for scope in Scope:
        events = list(read_logs([second, first], scope))
        assert_not_fooled(events)
    everything = list(read_logs([first, second], Scope.EVERYTHING))
    (stranger,) = [e for e in everything if isinstance(e, SipMessage) and "10.6.6.6" in e.text]
    assert stranger.truncated
    assert stranger.file == str(first)


@pytest.mark.parametrize("end", ["\n", ""], ids=["with-newline", "without-newline"])
def test_a_marker_line_at_the_end_of_the_log_is_an_empty_cut_message(end: str) -> None:
    marker = "21:07:00.000: SIPTR: Received [0,UDP] 420 bytes from 192.168.210.54:5060 <<<<<"
    data = (HEADER + SEED_5002 + marker + end).encode()
    for piece in (0, 1, 64):
        *_, last = parse(data, Scope.EVERYTHING, piece)
        assert isinstance(last, SipMessage)
        assert (last.text, last.message, last.truncated) == (marker, "", True)
        (refused,) = registrations(parse(data, piece=piece)).timelines["5002"].entries
        assert refused.verdict is Verdict.REFUSED


def test_a_forged_marker_as_the_last_line_of_a_cut_body_stays_inside_it() -> None:
    forged_marker = "21:07:00.000: SIPTR: Received [0,UDP] 420 bytes from 192.168.210.54:5060 <<<<<"
    message = stranger_message(forged_marker + "\n" + FORGED_REGISTER, content_length=BODY_LENGTH)
    block = logged("21:06:59.000", message)
    data = (HEADER + SEED_5002 + block[: block.index(forged_marker) + len(forged_marker)]).encode()
    for piece in (0, 1, 64):
        events = parse(data, Scope.EVERYTHING, piece)
        *_, last = events
        assert isinstance(last, SipMessage) and last.truncated and "10.6.6.6" in last.text
        assert last.message.endswith(forged_marker)
        assert [e.text for e in events if FORGED_CLOCK in e.text] == []


def test_a_forged_transaction_in_the_labs_log_is_no_event(tmp_path: Path) -> None:
    """The lab's log writer, which writes CRLF files as SIP Server does and knows nothing of the
    parser, logs a stranger's message that carries a forged transaction."""
    moment = datetime.datetime(2026, 2, 2, 21, 6, 59, tzinfo=datetime.UTC)
    log = SipServerLog(tmp_path, command_line="sip_server.exe", clock=lambda: moment)
    path = log.open_segment()
    wire = stranger_message(FORGED_TRANSACTION, content_length=BODY_LENGTH)
    with log.transaction() as written:
        written.received(wire.replace("\n", "\r\n").encode(), ("10.6.6.6", 5060))
    log.close()
    events = list(read_logs([path], Scope.EVERYTHING))
    assert [e.text for e in events if FORGED_CLOCK in e.text] == []
    (stranger,) = [e for e in events if isinstance(e, SipMessage)]
    assert (stranger.method, stranger.truncated) == ("MESSAGE", False)
    assert stranger.message == wire.rstrip("\n")
