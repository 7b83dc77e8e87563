"""The product's PowerShell builders and parsers (remediate.genesys.powershell), run through the
lab's PowerShell tokenizer and interpreter to prove the text means what the builder intended."""

from __future__ import annotations

import base64
import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediate.errors import InputError, RemediateError
from remediate.genesys import powershell as ps
from remediate.lab.winrm import pslang

IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))


@given(st.text())
def test_any_value_round_trips_through_the_lab_tokenizer(value: str) -> None:
    if any(ord(char) < 32 and char != "\t" for char in value):
        with pytest.raises(InputError):
            ps.quote(value)
        return
    tokens = pslang.tokenize(f"Write-Output {ps.quote(value)} -x")
    # The value stays one string token: it never closes its quotes early.
    assert [token.kind for token in tokens] == ["word", "string", "dash"]
    assert tokens[1].text == value


def test_typographic_quotes_are_doubled_like_ascii_ones() -> None:
    assert ps.quote("it\u2019s 'x'") == "'it\u2019\u2019s ''x'''"


def test_command_line_is_the_encoded_script() -> None:
    command = ps.service_state("TSrvSIP64")
    prefix = "powershell -NoProfile -NonInteractive -EncodedCommand "
    assert command.command_line.startswith(prefix)
    decoded = base64.b64decode(command.command_line[len(prefix) :]).decode("utf-16-le")
    assert decoded == command.script
    assert "'TSrvSIP64'" in command.script


def test_command_line_over_8191_characters_is_refused_with_a_hint() -> None:
    patterns = [f"pattern number {index}" for index in range(200)]
    with pytest.raises(RemediateError) as raised:
        ps.read_log_filtered("D:\\gcti_logs\\SIP_P", "SIP_P-001.20260202_135459_850.log", patterns)
    assert raised.value.reference == "powershell-command-too-long"
    assert "fewer" in raised.value.hint


@pytest.mark.parametrize(
    "call",
    [
        lambda: ps.service_state("TSrv SIP64"),
        lambda: ps.service_state("x';Stop-Computer;'"),
        lambda: ps.list_log_segments("\\\\server\\share", "*.log"),
        lambda: ps.list_log_segments("D:\\gcti_logs\\..\\Windows", "*.log"),
        lambda: ps.list_log_segments("D:\\gcti_logs", "*.log'; rm"),
        lambda: ps.read_log_lines("D:\\gcti_logs", "..\\secret.txt", 0, 10),
        lambda: ps.read_log_lines("D:\\gcti_logs", "a.log", -1, 10),
        lambda: ps.read_log_filtered("D:\\gcti_logs", "a.log", ["two\nlines"]),
        lambda: ps.port_listeners(70000),
        lambda: ps.restart_service("TSrvSIP64", 0, 60),
        lambda: ps.mlcmd("mlcmd.exe", "cs host", 2020, "SIP_P", "stop"),
        lambda: ps.mlcmd("mlcmd.exe", "cfg01", 2020, "SIP_P", "pause"),
        lambda: ps.list_log_segments("D:\\gcti_logs", "*.log", datetime.datetime(2026, 2, 2)),
    ],
)
def test_invalid_values_are_refused_before_anything_is_sent(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError):
        call()


def test_since_is_compared_in_utc_ticks() -> None:
    since = datetime.datetime(2026, 2, 2, 13, 54, 59, tzinfo=IST)
    script = ps.list_log_segments("D:\\gcti_logs\\SIP_P", "SIP_P-001.*.log", since).script
    utc = datetime.datetime(2026, 2, 2, 8, 24, 59)
    ticks = (utc - datetime.datetime(1, 1, 1)) // datetime.timedelta(microseconds=1) * 10
    assert f"$_.LastWriteTimeUtc.Ticks -ge {ticks}" in script


def test_parsers_read_the_documented_formats() -> None:
    assert ps.parse_service_state(
        "TSrvSIP64|Running|Genesys SIP Server | P\r\n"
    ) == ps.ServiceState("TSrvSIP64", "Running", "Genesys SIP Server | P")
    segments = ps.parse_log_segments(
        "SIP_P-001.20260202_135459_850.log|1048576|2026-02-02T13:54:59.8500000+05:30\r\n"
    )
    assert segments == [
        ps.LogSegment(
            "SIP_P-001.20260202_135459_850.log",
            1048576,
            datetime.datetime(2026, 2, 2, 13, 54, 59, 850000, tzinfo=IST),
        )
    ]
    assert ps.parse_port_listeners("UDP|127.0.0.81|5090|5150|Genesys Softphone\r\n") == [
        ps.PortListener("UDP", "127.0.0.81", 5090, 5150, "Genesys Softphone")
    ]
    clock = ps.parse_host_clock("2026-02-02T13:54:59.8521234+05:30\r\n")
    assert clock == datetime.datetime(2026, 2, 2, 13, 54, 59, 852123, tzinfo=IST)
    assert ps.parse_log_lines("a\r\nb\r\n\r\n") == ["a", "b", ""]


@pytest.mark.parametrize(
    "parse, text",
    [
        (ps.parse_service_state, "TSrvSIP64|Sleeping|x"),
        (ps.parse_service_state, ""),
        (ps.parse_log_segments, "name|big|2026-02-02T13:54:59"),
        (ps.parse_port_listeners, "SCTP|a|1|2|x"),
        (ps.parse_host_clock, "Monday, February 2, 2026 1:54:59 PM"),
    ],
)
def test_unreadable_output_is_an_error_not_a_guess(parse, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ps.PowerShellOutputError):
        parse(text)


def test_every_script_parses_in_the_lab_subset() -> None:
    for command in all_commands():
        pslang.parse(command.script)


def all_commands() -> list[ps.PowerShellCommand]:
    since = datetime.datetime(2026, 2, 2, 13, 0, tzinfo=IST)
    log_dir = "D:\\gcti_logs\\SIP_P"
    return [
        ps.service_state("TSrvSIP64"),
        ps.stop_service("TSrvSIP64", 30),
        ps.start_service("TSrvSIP64", 30),
        ps.restart_service("TSrvSIP64", 30, 60),
        ps.wait_service_status("TSrvSIP64", "Running", 30),
        ps.mlcmd("mlcmd.exe", "cfg01", 2020, "SIP_P", "stop"),
        ps.list_log_segments(log_dir, "SIP_P-001.*.log", since),
        ps.read_log_lines(log_dir, "SIP_P-001.20260202_135459_850.log", 0, 100),
        ps.read_log_filtered(
            log_dir, "SIP_P-001.20260202_135459_850.log", ["REGISTRAR", "no gateway is found"]
        ),
        ps.read_log_filtered(
            log_dir, "SIP_P-001.20260202_135459_850.log", ["REGISTRAR"], dns=["5001", "5002"]
        ),
        ps.port_listeners(5090),
        ps.host_clock(),
    ]
