"""The HTML report: a journal written with the real Journal API, synthetic DN timelines, and what
a person opening the page would see (and what must never be in it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import HEADER, SEED_5002, SEGMENT, accepted

from remediate import journal as journal_module
from remediate.genesys.logs import read_stream, registrations
from remediate.journal import Journal, RunRecord, RunStatus
from remediate.report import (
    STATE_COLOURS,
    STEP_COLOURS,
    DnStates,
    RegistrationState,
    StateChange,
    dn_states,
    render_html,
)
from remediate.state import StateDir

START = datetime(2026, 12, 5, 16, 30, 0, tzinfo=UTC)
IN, OUT, UNKNOWN = (
    RegistrationState.IN_SERVICE,
    RegistrationState.OUT_OF_SERVICE,
    RegistrationState.UNKNOWN,
)
HOSTILE = "<script>alert('x')</script>&\"><img src=x onerror=alert(1)>"


class Clock:
    """The journal's clock, advanced by the test so steps take realistic times."""

    def __init__(self) -> None:
        self.now = START

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(journal_module, "utc_now", fake)
    return fake


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def write_run(tmp_path: Path, clock: Clock, *, fail_verify: bool = False) -> RunRecord:
    """An apply run as the engine journals it: guards ... verify, then commit or rollback."""
    state = StateDir.open(tmp_path / "state")
    with Journal.start(
        state, site="lab", dns=["5001", "5002"], fix="trusted-gateway", change_id=HOSTILE
    ) as journal:
        for name, seconds in (("guards", 0.4), ("preflight", 6), ("plan", 2), ("backup", 1.5)):
            with journal.step(name):
                clock.advance(seconds)
            clock.advance(0.1)
        journal.store_backup("switch-SIP_P.json", b"{}\n", source="CfgSwitch SIP_P", kind="object")
        for name, seconds in (("apply", 35), ("restart", 40)):
            with journal.step(name):
                clock.advance(seconds)
            clock.advance(0.1)
        journal.step_started("verify")
        clock.advance(20)
        if fail_verify:
            journal.step_failed("verify", f"5002 still out of service {HOSTILE}")
            for name, seconds in (("rollback", 30), ("rollback-restart", 40)):
                with journal.step(name):
                    clock.advance(seconds)
            journal.finish(RunStatus.ROLLED_BACK, {"message": "rolled back", "exit_code": 3})
        else:
            journal.step_finished("verify")
            with journal.step("commit"):
                clock.advance(0.2)
            journal.finish(
                RunStatus.COMMITTED,
                {"message": "5001 and 5002 in service after the fix", "exit_code": 0},
            )
        return journal.record()


def timelines() -> list[DnStates]:
    refused = "REGISTER refused from 127.0.0.54:5060 (Asterisk-Genesys-Gateway)"
    return [
        DnStates(
            "5001",
            (
                StateChange(at(-600), OUT, refused),
                StateChange(at(70), IN, "REGISTER accepted from 127.0.0.54:5060"),
            ),
        ),
        DnStates(
            "5002",
            (
                StateChange(at(75), IN, f"accepted {HOSTILE}"),
                StateChange(at(-900), OUT, refused),  # any order: the report sorts
            ),
        ),
        DnStates("1003", (StateChange(at(95), IN, "accepted from 127.0.0.81:5090"),)),
    ]


class Elements(HTMLParser):
    """Every element's tag and attributes, and the text of the page."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {key: value or "" for key, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def rects(self, css_class: str) -> Iterator[dict[str, str]]:
        for tag, attrs in self.elements:
            if tag == "rect" and css_class in attrs.get("class", "").split():
                yield attrs


def dn_rows(page: str) -> dict[str, list[tuple[str, str, str, str]]]:
    """Per DN row of the SVG: its segments as (state, colour, from, to)."""
    rows: dict[str, list[tuple[str, str, str, str]]] = {}
    for group in re.finditer(r'<g class="dn" data-dn="([^"]*)">(.*?)</g>', page):
        parser = Elements(group[2])
        rows[group[1]] = [
            (r["class"].split()[1], r["data-colour"], r["data-from"], r["data-to"])
            for r in parser.rects("state")
        ]
    return rows


def test_committed_run_page(tmp_path: Path, clock: Clock) -> None:
    record = write_run(tmp_path, clock)
    page = render_html(record, timelines(), margin=timedelta(minutes=2))
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    # Self-contained, script-free, and hostile text shown as text.
    assert "<script" not in page.lower() and "http" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<img" not in page
    # One row per DN, each with its states, colours and times on the shared axis.
    rows = dn_rows(page)
    assert list(rows) == ["5001", "5002", "1003"]
    axis_start, axis_end = "2026-12-05T16:28:00.000Z", "2026-12-05T16:33:45.700Z"
    green, red, grey = (STATE_COLOURS[s] for s in (IN, OUT, UNKNOWN))
    assert rows["5001"] == [
        ("out-of-service", red, axis_start, "2026-12-05T16:31:10.000Z"),
        ("in-service", green, "2026-12-05T16:31:10.000Z", axis_end),
    ]
    assert rows["5002"] == [
        ("out-of-service", red, axis_start, "2026-12-05T16:31:15.000Z"),
        ("in-service", green, "2026-12-05T16:31:15.000Z", axis_end),
    ]
    assert rows["1003"] == [  # nothing seen before: unknown, not assumed in service
        ("unknown", grey, axis_start, "2026-12-05T16:31:35.000Z"),
        ("in-service", green, "2026-12-05T16:31:35.000Z", axis_end),
    ]
    # The steps, from the journal, on the same axis.
    parser = Elements(page)
    steps = [attrs["data-step"] for attrs in parser.rects("step")]
    assert steps == [
        "guards",
        "preflight",
        "plan",
        "backup",
        "apply",
        "restart",
        "verify",
        "commit",
    ]
    assert {attrs["fill"] for attrs in parser.rects("step")} == {STEP_COLOURS["finished"]}
    text = " ".join(parser.text)
    assert "committed" in text and "5001 and 5002 in service after the fix" in text
    assert "35.0 s" in text and "40.0 s" in text  # apply and restart durations
    assert "2026-12-05T16:30:00.000Z" in text  # the run's start
    assert "switch-SIP_P.json" in text  # the backups it kept
    assert "run start" in text and "run end" in text


def test_rolled_back_run_shows_the_failed_step_and_its_error(tmp_path: Path, clock: Clock) -> None:
    record = write_run(tmp_path, clock, fail_verify=True)
    page = render_html(record, timelines())
    parser = Elements(page)
    verify = next(a for a in parser.rects("step") if a["data-step"] == "verify")
    assert verify["fill"] == STEP_COLOURS["failed"] and "failed" in verify["class"]
    assert "5002 still out of service &lt;script&gt;" in page
    assert "rolled-back" in " ".join(parser.text)
    assert "<script" not in page.lower()


def test_an_open_run_and_no_timelines(tmp_path: Path, clock: Clock) -> None:
    state = StateDir.open(tmp_path / "state")
    with Journal.start(state, site="lab", dns=["5001"], fix="auto") as journal:
        journal.step_started("apply")
        clock.advance(5)
        record = journal.record()
    page = render_html(record, [])
    assert "the run is open" in page
    assert "no registration data was recorded" in page
    running = next(Elements(page).rects("step"))
    assert running["fill"] == STEP_COLOURS["running"]


def test_dn_states_from_the_log_parser() -> None:
    # The seed's failing 5002 (an un-registration from the gateway), then an accepted REGISTER;
    # the log's times are the host's (India, +05:30).
    text = HEADER + SEED_5002 + accepted("21:30:00.000", "5002", cseq=40313)
    history = registrations(read_stream([text.encode()], SEGMENT), ["5002"])
    ist = timezone(timedelta(hours=5, minutes=30))
    states = dn_states("5002", history.timelines["5002"].entries, ist)
    assert [change.state for change in states.changes] == [OUT, IN]
    first, last = states.changes
    assert first.detail == (
        "REGISTER refused from 192.168.210.54:5060 (Asterisk-Genesys-Gateway); the server "
        "answered 200; no gateway is configured for 192.168.210.54"
    )
    assert last.time == datetime(2026, 2, 2, 16, 0, 0, tzinfo=UTC)
    assert last.detail.startswith("REGISTER accepted from 192.168.210.54:5060")
