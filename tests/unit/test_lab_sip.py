"""The lab's SIP message module: parsing, header lookups, building requests and responses."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediate.lab.sip import (
    SipParseError,
    build_request,
    build_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    parse_name_addr,
    parse_uri,
    via_sent_by,
)

SEED_REGISTER = (
    b"REGISTER sip:192.168.210.81:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.210.54:5060;rport;branch=z9hG4bKPj1\r\n"
    b"From: <sip:5002@192.168.210.81>;tag=abc\r\n"
    b"To: <sip:5002@192.168.210.81>\r\n"
    b"Call-ID: 1234@192.168.210.54\r\n"
    b"CSeq: 7 REGISTER\r\n"
    b"Contact: <sip:5002@192.168.210.54:5060>\r\n"
    b"Expires: 0\r\n"
    b"Max-Forwards: 70\r\n"
    b"User-Agent: Asterisk-Genesys-Gateway\r\n"
    b"Content-Length:  0\r\n"
    b"\r\n"
)


def test_long_form_headers_and_start_line() -> None:
    message = parse_message(SEED_REGISTER)
    assert message.is_request
    assert message.method == "REGISTER"
    assert message.request_uri == "sip:192.168.210.81:5060"
    assert message.header("user-agent") == "Asterisk-Genesys-Gateway"
    assert message.header("Content-Length") == "0"  # the spacing after the colon is not kept
    assert message.header("Expires") == "0"
    assert message.header("X-Missing") is None
    assert message.cseq_number == 7
    assert message.body == b""


def test_compact_forms_answer_long_names_and_back() -> None:
    data = (
        b"REGISTER sip:127.0.0.81 SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 127.0.0.54:5060;branch=z9hG4bK1\r\n"
        b"f: <sip:5001@127.0.0.81>;tag=1\r\n"
        b"t: <sip:5001@127.0.0.81>\r\n"
        b"i: call-1\r\n"
        b"CSeq: 1 REGISTER\r\n"
        b"m: <sip:5001@127.0.0.54>\r\n"
        b"k: path\r\n"
        b"l: 0\r\n\r\n"
    )
    message = parse_message(data)
    assert message.header("Via") == "SIP/2.0/UDP 127.0.0.54:5060;branch=z9hG4bK1"
    assert message.header("call-id") == "call-1"
    assert message.header("m") == message.header("Contact") == "<sip:5001@127.0.0.54>"
    assert message.header("Supported") == "path"
    assert message.header("l") == "0"
    # names stay as received
    assert [name for name, _ in message.headers][:3] == ["v", "f", "t"]


def test_folded_header_values_are_unfolded_and_lf_line_ends_accepted() -> None:
    data = (
        b"OPTIONS sip:127.0.0.81 SIP/2.0\n"
        b"Via: SIP/2.0/UDP 127.0.0.54:5060\n"
        b"  ;branch=z9hG4bK2\n"
        b"From: <sip:probe@127.0.0.54>;tag=9\n"
        b"To: <sip:127.0.0.81>\n"
        b"Call-ID: c2\n"
        b"CSeq: 3 OPTIONS\n"
        b"Subject: a long\n"
        b"\tsubject line\n"
        b"Content-Length: 0\n\n"
    )
    message = parse_message(data)
    assert message.header("Via") == "SIP/2.0/UDP 127.0.0.54:5060 ;branch=z9hG4bK2"
    assert message.header("s") == "a long subject line"
    assert message.method == "OPTIONS"


def test_multiple_contacts_split_across_lines_and_commas() -> None:
    data = SEED_REGISTER.replace(
        b"Contact: <sip:5002@192.168.210.54:5060>\r\n",
        b'Contact: "A, B" <sip:5002@192.168.210.54:5060>;expires=60, '
        b"sip:5002@10.0.0.1;expires=30\r\n"
        b"m: <sip:5002@10.0.0.2;transport=udp>\r\n",
    )
    contacts = parse_message(data).header_values("Contact")
    assert contacts == [
        '"A, B" <sip:5002@192.168.210.54:5060>;expires=60',
        "sip:5002@10.0.0.1;expires=30",
        "<sip:5002@10.0.0.2;transport=udp>",
    ]
    first, second, third = (parse_name_addr(value) for value in contacts)
    assert first.display_name == "A, B" and first.expires == 60
    assert second.uri == "sip:5002@10.0.0.1" and second.expires == 30
    assert third.expires is None and parse_uri(third.uri).params == {"transport": "udp"}


def test_wildcard_contact() -> None:
    data = SEED_REGISTER.replace(b"Contact: <sip:5002@192.168.210.54:5060>", b"Contact: *")
    message = parse_message(data)
    assert message.header_values("Contact") == ["*"]
    assert parse_name_addr("*").is_wildcard
    assert message.header("Expires") == "0"


def test_multiple_via_values_in_one_header_and_several_headers() -> None:
    data = SEED_REGISTER.replace(
        b"Via: SIP/2.0/UDP 192.168.210.54:5060;rport;branch=z9hG4bKPj1\r\n",
        b"Via: SIP/2.0/UDP proxy.example:5070;branch=z9hG4bKa, "
        b"SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKb\r\n"
        b"v: SIP/2.0/UDP 10.2.2.2:5062;branch=z9hG4bKc\r\n",
    )
    vias = parse_message(data).header_values("via")
    assert len(vias) == 3
    assert via_sent_by(vias[0]) == ("proxy.example", 5070)
    assert via_sent_by(vias[1]) == ("10.1.1.1", 5060)
    assert via_sent_by(vias[2]) == ("10.2.2.2", 5062)


def test_non_list_header_keeps_its_commas() -> None:
    data = SEED_REGISTER.replace(
        b"Max-Forwards: 70\r\n", b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"
    )
    assert parse_message(data).header_values("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_expires_as_header_and_as_contact_param() -> None:
    data = SEED_REGISTER.replace(b"Expires: 0\r\n", b"Expires: 3600\r\n").replace(
        b"Contact: <sip:5002@192.168.210.54:5060>",
        b"Contact: <sip:5002@192.168.210.54:5060>;expires=120",
    )
    message = parse_message(data)
    assert message.header("Expires") == "3600"
    assert parse_name_addr(message.header_values("Contact")[0]).expires == 120


def test_content_length_bounds_the_body() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    data = SEED_REGISTER.replace(b"Content-Length:  0", f"Content-Length: {len(body)}".encode())
    message = parse_message(data + body + b"trailing garbage")
    assert message.body == body
    with pytest.raises(SipParseError):
        parse_message(data + body[:-3])


def test_response_parsing() -> None:
    data = (
        b"SIP/2.0 403 Forbidden\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.54:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:5002@127.0.0.81>;tag=abc\r\n"
        b"To: <sip:5002@127.0.0.81>;tag=xyz\r\n"
        b"Call-ID: c\r\n"
        b"CSeq: 7 REGISTER\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    message = parse_message(data)
    assert not message.is_request
    assert (message.status_code, message.reason, message.method) == (403, "Forbidden", "REGISTER")
    assert parse_name_addr(message.header("To") or "").tag == "xyz"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"REGISTER sip:x SIP/2.0\r\n",  # no blank line
        b"REGISTER sip:x SIP/3.0\r\nVia: a\r\n\r\n",
        b"REGISTER  SIP/2.0\r\n\r\n",
        b"SIP/2.0 99 Too Small\r\n\r\n",
        b"REGISTER sip:x SIP/2.0\r\n no header before\r\n\r\n",
        SEED_REGISTER.replace(b"Call-ID: 1234@192.168.210.54\r\n", b""),
        SEED_REGISTER.replace(b"CSeq: 7 REGISTER", b"CSeq: seven REGISTER"),
        SEED_REGISTER.replace(b"CSeq: 7 REGISTER", b"CSeq: 7 INVITE"),
        SEED_REGISTER.replace(b"Content-Length:  0", b"Content-Length: -1"),
        SEED_REGISTER.replace(b"User-Agent:", b"User Agent:"),
        b"\xff\xfe" + SEED_REGISTER,
    ],
)
def test_malformed_messages_raise_sip_parse_error(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(data)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


@given(st.text(max_size=80))
def test_arbitrary_name_addr_raises_only_sip_parse_error(text: str) -> None:
    with contextlib.suppress(SipParseError):
        parse_name_addr(text)


def test_parse_uri_parts() -> None:
    uri = parse_uri("sip:5002@127.0.0.54:5061;transport=udp;lr")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sip", "5002", "127.0.0.54", 5061)
    assert uri.params == {"transport": "udp", "lr": None}
    assert str(uri) == "sip:5002@127.0.0.54:5061;transport=udp;lr"
    bare = parse_uri("sip:127.0.0.81")
    assert (bare.user, bare.host, bare.port) == (None, "127.0.0.81", None)
    for bad in ("http://x", "sip:", "sip:user@", "sip:host:99999", "sip:ho st"):
        with pytest.raises(SipParseError):
            parse_uri(bad)


def test_name_addr_forms() -> None:
    quoted = parse_name_addr('"Agent \\"5002\\"" <sip:5002@127.0.0.81>;tag=t1;expires=60')
    assert quoted.display_name == 'Agent "5002"'
    assert (quoted.uri, quoted.tag, quoted.expires) == ("sip:5002@127.0.0.81", "t1", 60)
    token = parse_name_addr("Agent <sip:1003@127.0.0.81:5090>")
    assert token.display_name == "Agent" and token.params == {}
    for bad in ('"unterminated <sip:a@b>', "<sip:a@b", "<sip:a@b> junk"):
        with pytest.raises(SipParseError):
            parse_name_addr(bad)


def test_build_request_round_trips() -> None:
    branch, tag, call_id = new_branch(), new_tag(), new_call_id("127.0.0.54")
    assert branch.startswith("z9hG4bK") and call_id.endswith("@127.0.0.54") and tag
    data = build_request(
        "REGISTER",
        "sip:127.0.0.81:5060",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.54:5060;rport;branch={branch}"),
            ("From", f"<sip:5001@127.0.0.81>;tag={tag}"),
            ("To", "<sip:5001@127.0.0.81>"),
            ("Call-ID", call_id),
            ("CSeq", "1 REGISTER"),
            ("Contact", "<sip:5001@127.0.0.54:5060>"),
            ("Expires", "3600"),
        ],
    )
    assert data.endswith(b"Content-Length: 0\r\n\r\n")
    message = parse_message(data)
    assert message.header("Call-ID") == call_id
    assert parse_message(message.to_bytes()) == message


def test_build_response_copies_dialog_headers_and_adds_to_tag() -> None:
    request = parse_message(
        SEED_REGISTER.replace(
            b"Max-Forwards: 70\r\n", b"Via: SIP/2.0/UDP 10.9.9.9:5080;branch=z9hG4bKsecond\r\n"
        )
    )
    data = build_response(
        request,
        200,
        "OK",
        to_tag="srv1",
        headers=[("Contact", "<sip:5002@192.168.210.54:5060>;expires=3600")],
        received=("192.168.210.54", 5060),
    )
    response = parse_message(data)
    assert response.start_line == "SIP/2.0 200 OK"
    assert response.header_values("Via") == [
        "SIP/2.0/UDP 192.168.210.54:5060;rport=5060;branch=z9hG4bKPj1;received=192.168.210.54",
        "SIP/2.0/UDP 10.9.9.9:5080;branch=z9hG4bKsecond",
    ]
    assert response.header("From") == "<sip:5002@192.168.210.81>;tag=abc"
    assert response.header("To") == "<sip:5002@192.168.210.81>;tag=srv1"
    assert response.header("Call-ID") == "1234@192.168.210.54"
    assert response.header("CSeq") == "7 REGISTER"
    assert response.header("Content-Length") == "0"
    # a To that already has a tag keeps it
    tagged = parse_message(data)
    again = parse_message(build_response(tagged, 200, "OK", to_tag="other"))
    assert again.header("To") == "<sip:5002@192.168.210.81>;tag=srv1"
