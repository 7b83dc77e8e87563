"""The SIP Server log parser on hand-written log text in the real format."""

from __future__ import annotations

from datetime import datetime

import pytest
from conftest import HEADER, SEED_1003, SEED_5002, SEGMENT, accepted, register, response

from remediate.genesys.logs import (
    CheckPoint,
    CtiLine,
    DnNotConfigured,
    FrameworkLine,
    GatewayLookup,
    InternalDomain,
    LogEvent,
    RegistrarOutcome,
    RegistrationEvent,
    Scope,
    SegmentHeader,
    SipMessage,
    TransportChange,
    TrunkAddress,
    UnknownLine,
    UnresolvedNumber,
    Verdict,
    read_logs,
    read_stream,
    registrations,
    segment_order,
)


def parse(text: str, name: str = SEGMENT, scope: Scope = Scope.REGISTRATIONS) -> list[LogEvent]:
    return list(read_stream([text.encode()], name, scope))


def kinds(events: list[LogEvent]) -> list[str]:
    return [type(event).__name__ for event in events]


def test_the_seed_excerpts_become_typed_events_with_dates_and_line_numbers() -> None:
    events = parse(HEADER + SEED_1003 + SEED_5002, scope=Scope.EVERYTHING)
    events = [e for e in events if not isinstance(e, FrameworkLine)]
    header = events[0]
    assert isinstance(header, SegmentHeader)
    assert header.get("Application name") == "SIP_P"
    assert header.get("Local time") == "2026-02-02T13:54:59.852"
    assert kinds(events[1:]) == [
        "SipMessage",
        "UnresolvedNumber",
        "TrunkAddress",
        "GatewayLookup",
        "TransportChange",
        "InternalDomain",
        "RegistrationEvent",
        "CtiLine",
        "CtiLine",
        "SipMessage",
        "SipMessage",
        "UnresolvedNumber",
        "TrunkAddress",
        "GatewayLookup",
        "RegistrationEvent",
        "RegistrarOutcome",
        "CtiLine",
        "SipMessage",
    ]
    request = events[1]
    assert isinstance(request, SipMessage)
    assert request.line == 13  # the marker line: 9 header lines, a blank one, 2 framework lines
    assert request.time == datetime(2026, 2, 2, 18, 32, 19, 739000)
    assert (request.direction, request.peer_address, request.peer_port) == (
        "received",
        "192.168.210.81",
        5090,
    )
    assert request.method == "REGISTER"
    assert request.user_agent == "Genesys-Softphone/9.0.014.13"
    assert request.expires == 1800
    assert request.cseq == (21, "REGISTER")
    assert request.header_line("User-Agent") == 23
    lookup = events[14]
    assert isinstance(lookup, GatewayLookup)
    assert (lookup.address, lookup.gateway, lookup.number) == ("192.168.210.54", None, "5002")
    terminated = events[16]
    assert isinstance(terminated, RegistrarOutcome)
    assert (terminated.outcome, terminated.dn) == ("TERMINATED", "5002")
    transport = events[5]
    assert isinstance(transport, TransportChange)
    assert transport.new == "192.168.210.81:5090:1"
    assert isinstance(events[6], InternalDomain) and events[6].domain == "192.168.210.81"
    in_service = events[8]
    assert isinstance(in_service, CtiLine)
    assert (in_service.prefix, in_service.name, in_service.fields) == (
        "$*:SIP:CTI",
        "DN_IN_SERVICE",
        ("5",),
    )
    assert isinstance(events[9], CtiLine) and events[9].name == "PRM:ON_DN_IN_SERVICE"
    assert isinstance(events[10], SipMessage) and events[10].status_code == 200


def test_the_seed_excerpts_become_one_transaction_each() -> None:
    history = registrations(parse(HEADER + SEED_1003 + SEED_5002))
    (working,) = history.timelines["1003"].entries
    (failing,) = history.timelines["5002"].entries
    assert (working.source_address, working.source_port) == ("192.168.210.81", 5090)
    assert working.user_agent == "Genesys-Softphone/9.0.014.13"
    assert working.contact == "<sip:1003@192.168.210.81:5090>;expires=1800"
    assert (working.call_id, working.cseq, working.expires) == (
        "4f1a9c2e-1003@192.168.210.81",
        21,
        1800,
    )
    assert working.server_events == [0]
    assert working.gateway is not None and working.gateway.gateway is None
    assert working.response_code == 200
    assert working.verdict is Verdict.ACCEPTED
    assert (failing.source_address, failing.source_port) == ("192.168.210.54", 5060)
    assert failing.user_agent == "Asterisk-Genesys-Gateway"
    assert failing.server_events == [2]
    assert [line.text for line in failing.outcomes] == ["21:06:21.752: REGISTRAR: TERMINATED:5002"]
    assert failing.verdict is Verdict.REFUSED
    assert history.sources["192.168.210.54"].accepted == 0
    assert history.sources["192.168.210.81"].accepted == 1
    assert history.server_addresses == {"192.168.210.81"}


def test_both_scopes_agree_and_everything_keeps_the_rest() -> None:
    noise = (
        "21:06:22.000: SIPDM: trunk Asterisk_WebRTC_Gateway in service, oos-check 30\n"
        "@21:06:22.0000 [0] 8.1.103.67 distribute_event: message EventDNBackInService\n"
        "\tAttributeThisDN\t'5002'\n"
    )
    options = (
        "21:06:22.100: Sending  [0,UDP] 300 bytes to 192.168.210.54:5060 >>>>>\n"
        "OPTIONS sip:192.168.210.54:5060 SIP/2.0\n"
        "Call-ID: opt-1\n"
        "CSeq: 1 OPTIONS\n"
        "Content-Length: 0\n"
        "\n"
    )
    text = HEADER + SEED_1003 + noise + options + SEED_5002
    focused = parse(text)
    everything = parse(text, scope=Scope.EVERYTHING)
    informational = (UnknownLine, FrameworkLine, TrunkAddress, TransportChange)
    interesting = [event for event in everything if not isinstance(event, informational)]
    interesting = [
        e for e in interesting if not (isinstance(e, SipMessage) and e.method == "OPTIONS")
    ]
    assert [(type(e), e.line, e.text) for e in interesting] == [
        (type(e), e.line, e.text) for e in focused
    ]
    assert [e.text for e in everything if isinstance(e, UnknownLine)] == noise.splitlines()
    assert [e.message_id for e in everything if isinstance(e, FrameworkLine)] == ["04110", "05060"]
    (options_message,) = [
        e for e in everything if isinstance(e, SipMessage) and e.method == "OPTIONS"
    ]
    assert options_message.direction == "sent"


def test_text_inside_sip_blocks_is_never_read_as_a_log_line() -> None:
    body = "21:06:30.000: REGISTRAR: ACTIVE:5002\r\n21:06:30.000: $*:SIP:CTI:DN_IN_SERVICE:4\r\n"
    notify = (
        "21:06:29.000: Sending  [0,UDP] 500 bytes to 192.168.210.81:5090 >>>>>\n"
        "NOTIFY sip:1003@192.168.210.81:5090 SIP/2.0\n"
        "Call-ID: n-1\n"
        "CSeq: 3 NOTIFY\n"
        "X-Note: REGISTRAR: ACTIVE:5002\n"
        "Content-Type: text/plain\n"
        f"Content-Length: {len(body)}\n"
        "\n" + body.replace("\r\n", "\n") + "\n"
    )
    forged_header = SEED_5002.replace(
        "User-Agent: Asterisk-Genesys-Gateway\n",
        "User-Agent: Asterisk-Genesys-Gateway\nX-Note: REGISTRAR: ACTIVE:5002\n",
    )
    for scope in Scope:
        events = parse(HEADER + forged_header + notify, scope=scope)
        assert not [e for e in events if isinstance(e, RegistrarOutcome) and e.outcome == "ACTIVE"]
        assert not [e for e in events if isinstance(e, CtiLine) and e.name == "DN_IN_SERVICE"]
    (transaction,) = registrations(parse(HEADER + forged_header + notify)).timelines["5002"].entries
    assert transaction.verdict is Verdict.REFUSED


def test_responses_are_matched_by_call_id_and_cseq_not_by_position() -> None:
    text = (
        HEADER
        + register("14:00:00.000", "5001", call_id="a", cseq=7)
        + register("14:00:00.010", "5002", call_id="b", cseq=9)
        + response("14:00:00.020", "5002", call_id="b", cseq=9, status="404 Not Found")
        + response("14:00:00.030", "5001", call_id="a", cseq=6, status="500 Stale")
        + response("14:00:00.040", "5001", call_id="a", cseq=7, status="200 OK")
    )
    history = registrations(parse(text))
    (first,) = history.timelines["5001"].entries
    (second,) = history.timelines["5002"].entries
    assert first.response_code == 200
    assert second.response_code == 404
    assert second.verdict is Verdict.NOT_CONFIGURED


def test_retransmissions_of_one_request_are_one_transaction() -> None:
    text = HEADER + "".join(
        register(clock, "5003", call_id="r", cseq=3, expires=0)
        for clock in ("14:00:00.000", "14:00:00.500", "14:00:01.500", "14:00:03.500")
    )
    history = registrations(parse(text))
    (transaction,) = history.timelines["5003"].entries
    assert len(transaction.retransmissions) == 3
    assert transaction.verdict is Verdict.NO_ANSWER


def test_handling_lines_after_a_late_retransmission_belong_to_its_transaction() -> None:
    text = (
        HEADER
        + "".join(
            register(clock, "5002", call_id="late", cseq=4)
            for clock in ("14:00:00.000", "14:00:00.500", "14:00:01.500", "14:00:03.500")
        )
        + register("14:00:07.500", "5002", call_id="late", cseq=4)
        + "14:00:07.501: no gateway is found using address '192.168.210.54' for number '5002'\n"
        "14:00:07.501: SIPTS: handle registration event 2\n"
        "14:00:07.501: REGISTRAR: TERMINATED:5002\n"
        + response("14:00:07.502", "5002", call_id="late", cseq=4, status="403 Forbidden")
    )
    (transaction,) = registrations(parse(text)).timelines["5002"].entries
    assert len(transaction.retransmissions) == 4
    assert transaction.server_events == [2]
    assert transaction.verdict is Verdict.REFUSED


def test_the_not_configured_rejection_and_its_404() -> None:
    text = (
        HEADER
        + register("14:00:00.000", "5003")
        + "14:00:00.001: GetRegistration::Unable to resolve number for DN:5003\n"
        "14:00:00.001: DN 5003 is not configured or disabled in CME. "
        "Registration attempt rejected\n" + response("14:00:00.002", "5003", status="404 Not Found")
    )
    events = parse(text)
    assert isinstance(events[2], UnresolvedNumber) and events[2].dn == "5003"
    assert isinstance(events[3], DnNotConfigured) and events[3].dn == "5003"
    (transaction,) = registrations(events).timelines["5003"].entries
    assert transaction.verdict is Verdict.NOT_CONFIGURED
    assert transaction.response_code == 404


def test_expired_bindings_with_their_aor_and_contact() -> None:
    text = (
        HEADER
        + accepted("14:00:00.000", "5002")
        + "15:00:00.100: SIPTS: handle registration event 1\n"
        "15:00:00.100: REGISTRAR: EXPIRED:\n"
        "\tAOR: sip:5002@192.168.210.81\n"
        "\tContact: <sip:5002@192.168.210.54:5060>\n"
        "15:00:00.101: $*:SIP:CTI:DN_OUT_OF_SERVICE:4\n"
    )
    events = parse(text)
    (expired,) = [e for e in events if isinstance(e, RegistrarOutcome) and e.outcome == "EXPIRED"]
    assert expired.dn == "5002"
    assert expired.aor == "sip:5002@192.168.210.81"
    assert expired.contact == "<sip:5002@192.168.210.54:5060>"
    timeline = registrations(events).timelines["5002"]
    assert [type(entry).__name__ for entry in timeline.entries] == [
        "RegistrationTransaction",
        "BindingExpiry",
    ]
    assert timeline.entries[0].gateway.gateway == "Asterisk_WebRTC_Gateway"


def test_obsolete_registration_and_contact_change() -> None:
    text = (
        HEADER
        + register("14:00:00.000", "1002", source="192.168.210.81", port=5090, cseq=2)
        + "14:00:00.001: REGISTRAR:DN[1002]:OBSOLETE REGISTRATION FOUND: TERM >> DLG[6]\n"
        "14:00:00.001: SIPTS: handle registration event 3\n"
        "14:00:00.001: $*:SIP:CTI:DN_CONTACT_CHANGE:2\n"
        + response("14:00:00.002", "1002", to="192.168.210.81", port=5090, cseq=2)
    )
    events = parse(text)
    (obsolete,) = [e for e in events if isinstance(e, RegistrarOutcome)]
    assert (obsolete.outcome, obsolete.dn) == ("OBSOLETE", "1002")
    (transaction,) = registrations(events).timelines["1002"].entries
    assert transaction.server_events == [3]
    assert transaction.verdict is Verdict.ACCEPTED


def test_date_from_file_name_without_header_and_midnight_rollover() -> None:
    text = (
        register("23:59:59.900", "5001", call_id="x")
        + response("00:00:00.100", "5001", call_id="x")
        + "00:00:01.000: SIPTS: handle registration event 0\n"
    )
    events = parse(text, name="SIP_P-001.20260202_235000_000.log")
    assert [e.time for e in events] == [
        datetime(2026, 2, 2, 23, 59, 59, 900000),
        datetime(2026, 2, 3, 0, 0, 0, 100000),
        datetime(2026, 2, 3, 0, 0, 1),
    ]


def test_check_points_re_anchor_the_date_of_sparse_lines() -> None:
    text = (
        "14:00:00.000: SIPTS: handle registration event 3\n"
        "2026-02-05T14:54:56.001 Trc 04120 Check point 2026-02-05T14:54:56\n"
        "14:55:00.000: SIPTS: handle registration event 3\n"
    )
    events = parse(text, name="SIP_P-001.20260202_135459_850.log")
    assert isinstance(events[1], CheckPoint)
    assert events[1].anchor == datetime(2026, 2, 5, 14, 54, 56)
    assert events[2].time == datetime(2026, 2, 5, 14, 55)


def test_segments_are_read_in_the_order_of_their_names_across_midnight(write_log) -> None:  # type: ignore[no-untyped-def]
    first = write_log(
        HEADER.replace("13:54:59.852", "23:50:00.000")
        + register("23:59:59.800", "5002", call_id="m"),
        "SIP_P-001.20260202_235000_000.log",
    )
    second = write_log(
        HEADER.replace("2026-02-02T13:54:59.852", "2026-02-03T00:00:00.000")
        + "00:00:00.001: SIPTS: handle registration event 0\n"
        "00:00:00.001: $*:SIP:CTI:DN_IN_SERVICE:4\n"
        + response("00:00:00.002", "5002", call_id="m"),
        "SIP_P-001.20260203_000000_000.log",
    )
    assert segment_order([str(second), str(first)]) == [str(first), str(second)]
    events = list(read_logs([second, first]))
    assert [e.file for e in events if isinstance(e, SegmentHeader)] == [str(first), str(second)]
    (transaction,) = registrations(events).timelines["5002"].entries
    assert transaction.time == datetime(2026, 2, 2, 23, 59, 59, 800000)
    assert transaction.response is not None
    assert transaction.response.time == datetime(2026, 2, 3, 0, 0, 0, 2000)
    assert transaction.response.file == str(second)
    assert transaction.verdict is Verdict.ACCEPTED


def test_crlf_lines_give_the_same_events() -> None:
    text = HEADER + SEED_1003 + SEED_5002
    plain = parse(text)
    crlf = list(read_stream([text.replace("\n", "\r\n").encode()], SEGMENT))
    assert [(type(e), e.line, e.time, e.text) for e in crlf] == [
        (type(e), e.line, e.time, e.text) for e in plain
    ]


def test_bytes_that_are_not_utf8_are_replaced_not_fatal() -> None:
    data = (HEADER + SEED_5002).encode().replace(b"Asterisk-Genesys-Gateway", b"Ast\xe9risk\xff")
    events = list(read_stream([data], SEGMENT))
    (request,) = [e for e in events if isinstance(e, SipMessage) and e.method == "REGISTER"]
    assert request.user_agent == "Ast\ufffdrisk\ufffd"


def test_truncated_blocks_are_kept_and_marked() -> None:
    cut_by_end = HEADER + SEED_5002[: SEED_5002.index("Expires:")]
    (request,) = [e for e in parse(cut_by_end) if isinstance(e, SipMessage)]
    assert request.truncated
    assert request.call_id == "8d2e61b0-5002@192.168.210.54"
    cut_by_restart = cut_by_end + "21:07:00.000: SIPTS: handle registration event 0\n"
    events = parse(cut_by_restart)
    assert isinstance(events[-2], SipMessage) and events[-2].truncated
    assert isinstance(events[-1], RegistrationEvent) and events[-1].kind == 0


@pytest.mark.parametrize("size", [1, 7, 64, 4096])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    data = (HEADER + SEED_1003 + SEED_5002).encode()
    whole = list(read_stream([data], SEGMENT))
    pieces = [data[index : index + size] for index in range(0, len(data), size)]
    chunked = list(read_stream(pieces, SEGMENT))
    assert [(type(e), e.line, e.text) for e in chunked] == [
        (type(e), e.line, e.text) for e in whole
    ]


def test_a_pre_filtered_stream_of_lines_works_without_the_rest_of_the_log() -> None:
    """Live diagnosis sends the header, whole REGISTER blocks and the handling lines only."""
    lines = (HEADER.split("\n\n")[0] + "\n\n" + SEED_5002).encode().splitlines(keepends=True)
    history = registrations(read_stream(lines, "SIP_P-001.20260202_135459_850.log"))
    (transaction,) = history.timelines["5002"].entries
    assert transaction.time == datetime(2026, 2, 2, 21, 6, 21, 750000)
    assert transaction.verdict is Verdict.REFUSED
    assert transaction.response_code == 200


def test_unknown_and_odd_lines_are_kept_never_fatal() -> None:
    text = HEADER + "garbage without a time\n21:00:00.000: REGISTRAR: SOMETHING NEW\n\x00\x01\n"
    events = parse(text, scope=Scope.EVERYTHING)
    unknown = [e.text for e in events if isinstance(e, UnknownLine)]
    assert unknown == [
        "garbage without a time",
        "21:00:00.000: REGISTRAR: SOMETHING NEW",
        "\x00\x01",
    ]


def test_gateway_association_and_trunk_address() -> None:
    events = parse(HEADER + accepted("14:00:00.000", "5001"), scope=Scope.EVERYTHING)
    (lookup,) = [e for e in events if isinstance(e, GatewayLookup)]
    assert (lookup.gateway, lookup.address, lookup.number) == (
        "Asterisk_WebRTC_Gateway",
        "192.168.210.54",
        None,
    )
    assert [e.address for e in events if isinstance(e, TrunkAddress)] == ["192.168.210.54"]
