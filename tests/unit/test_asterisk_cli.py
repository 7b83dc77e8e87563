"""The `asterisk -rx` parsers read what a real Asterisk 22 printed (fixtures/asterisk)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from remediate.asterisk import cli
from remediate.errors import InputError

# A copy of ../shared/fixtures/asterisk (MIT, see its LICENSE): real Asterisk 22 output.
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "asterisk" / "cli-output-asterisk-22.txt"


def _captures() -> list[tuple[str, str]]:
    """(command, output) pairs of the fixture, in order."""
    text = FIXTURE.read_text(encoding="utf-8")
    pairs: list[tuple[str, str]] = []
    for block in re.split(r"^\$ ", text, flags=re.MULTILINE)[1:]:
        header, _, body = block.partition("\n")
        command = re.match(r'asterisk -rx "([^"]+)"', header)
        assert command is not None
        output = body.split("\nAsterisk log lines", 1)[0]
        pairs.append((command.group(1), output.rstrip("\n") + "\n"))
    return pairs


def _output(command: str, occurrence: int = 0) -> str:
    return [out for cmd, out in _captures() if cmd == command][occurrence]


def test_registrations_rows_from_real_output() -> None:
    rows = cli.parse_registrations(_output("pjsip show registrations", 2))
    assert [(r.name, r.server_uri, r.auth, r.status, r.expires_in) for r in rows] == [
        ("genesys_reg_5001", "sip:127.0.0.81:5060", "n/a", "Unregistered", 2),
        ("genesys_reg_5002", "sip:127.0.0.81:5060", "n/a", "Registered", 109),
    ]
    assert [r.registered for r in rows] == [False, True]


def test_registration_detail_reads_the_parameters() -> None:
    detail = cli.parse_registration_detail(_output("pjsip show registration genesys_reg_5001"))
    assert detail.registration is not None
    assert detail.registration.name == "genesys_reg_5001"
    assert detail.parameters["max_retries"] == "10"
    assert detail.parameters["forbidden_retry_interval"] == "0"
    assert detail.parameters["contact_header_params"] == ""
    assert detail.parameters["server_uri"] == "sip:127.0.0.81:5060"


def test_dialplan_show_found_with_locations() -> None:
    shown = cli.parse_dialplan_show(_output("dialplan show 5001@from-genesys"))
    assert shown.found
    (extension,) = shown.extensions
    assert extension.context == "from-genesys"
    assert extension.pattern == "_5XXX"
    assert [(p.number, p.application, p.location) for p in extension.priorities] == [
        ("1", "NoOp(Call from Genesys to ${EXTEN})", "extensions.conf:5"),
        ("2", "Dial(PJSIP/${EXTEN})", "extensions.conf:6"),
    ]


def test_dialplan_show_missing_extension_and_context() -> None:
    missing_exten = cli.parse_dialplan_show(_output("dialplan show 1003@from-genesys"))
    assert not missing_exten.found and missing_exten.missing == "extension"
    missing_context = cli.parse_dialplan_show(_output("dialplan show nosuch"))
    assert not missing_context.found and missing_context.missing == "context"


def test_failures_are_read_from_the_text_not_the_exit_status() -> None:
    with pytest.raises(cli.AsteriskCommandError, match="no command 'pjsip reload'"):
        cli.check_output("pjsip reload", _output("pjsip reload"))
    with pytest.raises(cli.AsteriskCommandError, match="Unable to retrieve registration nosuch"):
        cli.check_output("pjsip send register nosuch", _output("pjsip send register nosuch"))
    assert cli.check_output("dialplan reload", _output("dialplan reload")) == "Dialplan reloaded.\n"


def test_version() -> None:
    assert cli.parse_version(_output("core show version")) == "22.10.1"
    assert cli.parse_version("No such command") == ""


def test_commands_are_quoted_and_names_checked() -> None:
    assert cli.rx(cli.show_registrations()) == "asterisk -rx 'pjsip show registrations'"
    assert cli.rx(cli.dialplan_show("from-genesys", "5002")) == (
        "asterisk -rx 'dialplan show 5002@from-genesys'"
    )
    assert cli.pjsip_reload() == "module reload res_pjsip.so"
    assert cli.send_register("*all") == "pjsip send register *all"
    for bad in ("reg'; rm -rf /", "a b", "x\ny", ""):
        with pytest.raises(InputError):
            cli.send_register(bad)
    with pytest.raises(InputError):
        cli.dialplan_show("from-genesys", "5002@other;")


def test_overdue_registration_rows() -> None:
    output = (
        " genesys_reg_5001/sip:127.0.0.81:5060                    n/a                         "
        "Rejected          (exp. 9s ago)\n"
    )
    (row,) = cli.parse_registrations(output)
    assert (row.status, row.expires_in) == ("Rejected", -9)
