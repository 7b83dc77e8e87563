"""The host-side log filter (`powershell.read_log_filtered`, run by the lab's cmd.exe and
PowerShell) is not fooled by text inside a SIP message either: over the forged logs of
test_logs_forgery, the parser reads the filtered stream as it reads the whole log, for every DN
asked, and nothing of a stranger's message is ever kept as a block or a line of its own."""

from __future__ import annotations

import re

import pytest
from conftest import HEADER, SEED_5002, accepted
from test_live_parts import host_side_filter
from test_logs_forgery import FORGED_CLOCK, VARIANTS, logged

from remediate.genesys.logs import (
    BindingExpiry,
    RegistrationTransaction,
    TimelineEntry,
    Verdict,
    read_stream,
    registrations,
)
from remediate.lab.winrm.powershell import dotnet_substitution

SEGMENT = "SIP_P-001.20260202_135459_850.log"
ASKED = (["5002"], ["5001"], ["5002", "5001"])
_HAND_SIZED_BLOCK = re.compile(r"(?m)^(.*\[0,UDP\] )\d+( bytes .*\n)((?:.+\n)*\n)")


def server_sized(blocks: str) -> str:
    """`blocks` (hand-made SIP blocks without a body, each closed by its blank line) with the byte
    counts SIP Server writes: each message's size on the wire, its blank line included."""
    return _HAND_SIZED_BLOCK.sub(
        lambda block: block[1] + str(len(block[3].replace("\n", "\r\n"))) + block[2] + block[3],
        blocks,
    )


def forged_log(variant: str, *, sized: bool) -> str:
    """test_logs_forgery's log for `variant`: as written there (the seed's byte counts are
    hand-made), or as SIP Server writes it (every byte count exact, but where the variant says)."""
    message, size = VARIANTS[variant]
    around = server_sized if sized else str
    return (
        HEADER
        + around(SEED_5002)
        + logged("21:06:59.000", message, size=size)
        + around(accepted("21:08:00.000", "5001", call_id="after"))
    )


def view(entry: TimelineEntry) -> tuple[object, ...]:
    """What a diagnosis reads of a timeline entry (line numbers aside: the filtered stream is
    shorter than the log)."""
    if isinstance(entry, BindingExpiry):
        return ("expiry", [line.text for line in entry.lines])
    assert isinstance(entry, RegistrationTransaction)
    response = entry.response
    return (
        entry.call_id,
        entry.cseq,
        entry.verdict,
        entry.server_events,
        entry.source_address,
        entry.request.message,
        [line.text for line in entry.lines],
        None if response is None else response.message,
        [retransmission.message for retransmission in entry.retransmissions],
    )


def timelines(data: bytes, dns: list[str]) -> dict[str, list[tuple[object, ...]]]:
    history = registrations(read_stream([data], SEGMENT), dns)
    return {dn: [view(entry) for entry in history.timelines[dn].entries] for dn in dns}


@pytest.mark.parametrize("sized", [True, False], ids=["server-sized", "hand-sized"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_filtered_log_reads_as_the_whole_log(variant: str, sized: bool) -> None:
    text = forged_log(variant, sized=sized)
    whole = text.replace("\n", "\r\n").encode()
    for dns in ASKED:
        filtered = host_side_filter(text, dns)
        assert timelines(filtered, dns) == timelines(whole, dns)
    (refused,) = timelines(whole, ["5002"])["5002"]
    assert refused[2] is Verdict.REFUSED


@pytest.mark.parametrize("variant", [name for name, (_, size) in VARIANTS.items() if size is None])
def test_a_stranger_s_message_never_reaches_the_controller(variant: str) -> None:
    """In a log as the server writes it, every block is matched whole by its byte count: the
    stranger's message is dropped with everything inside it, whatever it carries."""
    text = forged_log(variant, sized=True)
    filtered = host_side_filter(text, ["5002", "5001"])
    assert FORGED_CLOCK.encode() not in filtered and b"10.6.6.6" not in filtered
    assert b"CSeq: 40312 REGISTER" in filtered and b"REGISTRAR: ACTIVE:5001" in filtered
    assert len(filtered) < len(text) * 0.8


def test_a_block_whose_lines_do_not_add_up_keeps_the_rest_of_the_log_whole() -> None:
    """A marker line whose byte count its lines do not make (the hand-made log's 600): only its
    Content-Length tells where it ends, which the host's regex cannot count, so everything from
    there on crosses the wire as written and the parser ends the block itself."""
    text = forged_log("in-the-body-of-a-hand-made-log", sized=True)
    filtered = host_side_filter(text, ["5002"])
    rest = text[text.index("21:06:59.000: SIPTR") :].replace("\n", "\r\n").encode()
    assert filtered.endswith(rest + b"\r\n")
    assert filtered.count(FORGED_CLOCK.encode()) == text.count(FORGED_CLOCK)


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        ("${2}<${1}>", "<ab>-"),  # a group that took no part is empty
        ("$1$$", "ab$-"),
        ("$12", "$12-"),  # all its digits name the group: no group 12, so it stays as written
        ("${x}[$&]", "${x}[ab]-"),
    ],
)
def test_the_lab_substitutes_as_dotnet_does(replacement: str, expected: str) -> None:
    """The lab's `[regex]::Replace`, which the filter's output rests on, against .NET's rules."""
    pattern = re.compile(r"(ab)|(c)")
    assert pattern.sub(dotnet_substitution(pattern, replacement), "ab-") == expected


def test_more_dns_than_one_command_line_holds_read_as_the_whole_log() -> None:
    """A large site's baseline asks for hundreds of DNs: the filter then keeps every REGISTER
    block (the DN list would overflow cmd.exe's 8191 characters), and reads the same."""
    text = forged_log("in-the-body", sized=True)
    many = [str(dn) for dn in range(4000, 4400)] + ["5001", "5002"]
    filtered = host_side_filter(text, many)
    whole = text.replace("\n", "\r\n").encode()
    assert timelines(filtered, ["5001", "5002"]) == timelines(whole, ["5001", "5002"])
    assert b"10.6.6.6" not in filtered
