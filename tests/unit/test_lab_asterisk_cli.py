"""The lab Asterisk answers each CLI command with exactly the text a real Asterisk 22.10.1 printed.

The configuration below is the one the fixture's header describes; the expected outputs are read
from `tests/data/asterisk/cli-output-asterisk-22.txt` (a copy of ../shared/fixtures) itself.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from remediate.lab.asterisk import outbound
from remediate.lab.asterisk.daemon import AsteriskDaemon
from remediate.lab.asterisk.outbound import REGISTERED, UNREGISTERED
from remediate.lab.layout import LabLayout

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "asterisk" / "cli-output-asterisk-22.txt"

CAPTURE_EXTENSIONS = """[general]
static=yes

[from-genesys]
exten => _5XXX,1,NoOp(Call from Genesys to ${EXTEN})
 same => n,Dial(PJSIP/${EXTEN})
"""

CAPTURE_PJSIP = """[global]
type=global
user_agent=Asterisk-Genesys-Gateway

[transport-udp]
type=transport
protocol=udp
bind=127.0.0.54:5060

[genesys_reg_5001]
type=registration
transport=transport-udp
server_uri=sip:127.0.0.81:5060
client_uri=sip:5001@127.0.0.81
contact_user=5001
retry_interval=20

[genesys_reg_5002]
type=registration
transport=transport-udp
server_uri=sip:127.0.0.81:5060
client_uri=sip:5002@127.0.0.81
contact_user=5002
retry_interval=20

[genesys_sip_server]
type=endpoint
context=from-genesys
transport=transport-udp
aors=genesys_sip_server

[genesys_sip_server]
type=aor
contact=sip:127.0.0.81:5060

[genesys-identify]
type=identify
endpoint=genesys_sip_server
match=127.0.0.81
"""

NOW = 1_800_000_000.0


def fixture_outputs() -> list[tuple[str, str, str]]:
    """(command, annotation, exact output) for every `$ asterisk -rx` block, in order."""
    text = FIXTURE.read_text(encoding="utf-8")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines = lines[:-1]
    blocks: list[tuple[str, str, list[str]]] = []
    current: list[str] | None = None
    for line in lines:
        match = re.match(r'^\$ asterisk -rx "(.*?)"\s*(.*)$', line)
        if match:
            current = []
            blocks.append((match[1], match[2], current))
        elif line.startswith("Asterisk log lines"):
            current = None
        elif current is not None:
            current.append(line)
    # Each block is followed by one blank separator line in the capture.
    return [(command, note, "\n".join(body[:-1]) + "\n") for command, note, body in blocks]


def expected(command: str, occurrence: int = 0) -> str:
    found = [output for cmd, _note, output in fixture_outputs() if cmd == command]
    return found[occurrence]


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsteriskDaemon:
    layout = LabLayout(tmp_path)
    layout.asterisk_etc.mkdir(parents=True)
    (layout.asterisk_etc / "extensions.conf").write_text(CAPTURE_EXTENSIONS, encoding="utf-8")
    (layout.asterisk_etc / "pjsip.conf").write_text(CAPTURE_PJSIP, encoding="utf-8")
    monkeypatch.setattr(outbound.time, "time", lambda: NOW)
    daemon = AsteriskDaemon(layout)
    daemon.load_dialplan()
    daemon.load_pjsip(start=False)
    return daemon


def run(daemon: AsteriskDaemon, command: str) -> str:
    return asyncio.run(daemon.execute(command))


def set_state(daemon: AsteriskDaemon, name: str, status: str, expires_in: int) -> None:
    client = daemon.gateway.clients[name]
    client.status = status
    client.expires_at = NOW + expires_in


@pytest.mark.parametrize(
    "command",
    [
        "core show version",
        "dialplan reload",
        "dialplan show from-genesys",
        "dialplan show 5001@from-genesys",
        "dialplan show 1003@from-genesys",
        "dialplan show nosuch",
        "pjsip send register nosuch",
        "pjsip show endpoints",
        "pjsip reload",
        "pjsip show endpoint nosuch",
        "foo bar",
        "module reload res_pjsip.so",
    ],
)
def test_output_is_exactly_asterisk_22s(daemon: AsteriskDaemon, command: str) -> None:
    assert run(daemon, command) == expected(command)


def test_send_register_prints_nothing_but_queues(daemon: AsteriskDaemon) -> None:
    assert run(daemon, "pjsip send register genesys_reg_5001") == expected(
        "pjsip send register genesys_reg_5001"
    )
    assert run(daemon, "pjsip send register *all") == expected("pjsip send register *all")
    assert run(daemon, "pjsip send unregister genesys_reg_5002") == expected(
        "pjsip send unregister genesys_reg_5002"
    )


def test_registrations_table_columns(daemon: AsteriskDaemon) -> None:
    set_state(daemon, "genesys_reg_5001", UNREGISTERED, 8)
    set_state(daemon, "genesys_reg_5002", UNREGISTERED, 3)
    assert run(daemon, "pjsip show registrations") == expected("pjsip show registrations", 0)
    set_state(daemon, "genesys_reg_5001", UNREGISTERED, 2)
    set_state(daemon, "genesys_reg_5002", REGISTERED, 109)
    assert run(daemon, "pjsip show registrations") == expected("pjsip show registrations", 2)


def test_single_registration_with_its_parameters(daemon: AsteriskDaemon) -> None:
    set_state(daemon, "genesys_reg_5001", UNREGISTERED, 2)
    assert run(daemon, "pjsip show registration genesys_reg_5001") == expected(
        "pjsip show registration genesys_reg_5001"
    )


def test_nothing_scheduled_any_more_reads_seconds_ago(daemon: AsteriskDaemon) -> None:
    set_state(daemon, "genesys_reg_5002", "Rejected", -42)
    row = run(daemon, "pjsip show registrations").splitlines()[5]
    assert row.endswith("n/a                         Rejected          (exp. 42s ago)")


def test_broken_dialplan_reload_keeps_the_old_one_and_logs(daemon: AsteriskDaemon) -> None:
    conf = daemon.etc / "extensions.conf"
    conf.write_text(CAPTURE_EXTENSIONS.replace("[from-genesys]", "[from-genesys"), "utf-8")
    assert run(daemon, "dialplan reload") == "Dialplan reloaded.\n"
    assert run(daemon, "dialplan show from-genesys") == expected("dialplan show from-genesys", 1)
    log = daemon.layout.asterisk_log.read_text(encoding="utf-8")
    assert re.fullmatch(
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] WARNING\[\d+\] config\.c: parse error: no closing "
        rf"'\]', line 4 of {re.escape(str(conf))}\n",
        log,
    )


def test_usage_for_missing_arguments(daemon: AsteriskDaemon) -> None:
    assert run(daemon, "pjsip show endpoint").startswith("Usage: pjsip show endpoint <id>\n")
    assert run(daemon, "pjsip show endpoint genesys_sip_server").startswith(
        expected("pjsip show endpoints").split("Objects found")[0].rstrip("\n")
    )
