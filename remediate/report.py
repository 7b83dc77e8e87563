"""`remediate report RUN_ID --html FILE`: one self-contained page per run.

The page holds the run's metadata, its steps (started, ended, duration, outcome, from the journal)
and, drawn as inline SVG on one time axis, the steps as bars and one row per DN showing its
registration state (in service, out of service, unknown) before, during and after the change.
People read a timeline faster than a log.

Self-contained: inline CSS, inline SVG (no xmlns needed in HTML), no script, no external URL;
every text from the run or the logs is escaped. Times are UTC. Registration times come from the
SIP Server's log, in the host's local time: `dn_states` converts them with the host's zone.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

from remediate import __version__
from remediate.genesys.logs import (
    BindingExpiry,
    RegistrationTransaction,
    TimelineEntry,
    Verdict,
)
from remediate.journal import RunRecord, RunStatus, StepOutcome

# The input ---------------------------------------------------------------------------------------


class RegistrationState(StrEnum):
    IN_SERVICE = "in-service"
    OUT_OF_SERVICE = "out-of-service"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return self.value.replace("-", " ")


@dataclass(frozen=True)
class StateChange:
    """From `time` (aware) on, the DN is in `state`; `detail` says what the log showed."""

    time: datetime
    state: RegistrationState
    detail: str = ""


@dataclass(frozen=True)
class DnStates:
    """One DN's registration state over time, as the engine read it during verification."""

    dn: str
    changes: tuple[StateChange, ...]


_VERDICT_STATES = {
    Verdict.ACCEPTED: RegistrationState.IN_SERVICE,
    Verdict.REFUSED: RegistrationState.OUT_OF_SERVICE,
    Verdict.UNREGISTERED: RegistrationState.OUT_OF_SERVICE,
    Verdict.NOT_CONFIGURED: RegistrationState.OUT_OF_SERVICE,
    Verdict.NO_ANSWER: RegistrationState.UNKNOWN,
}


def dn_states(dn: str, entries: Iterable[TimelineEntry], host_zone: tzinfo) -> DnStates:
    """A DN's states from the log parser's timeline entries (`DnTimeline.entries`). Log times are
    the SIP Server host's local time: `host_zone` places them on the UTC axis."""
    changes: list[StateChange] = []
    for entry in entries:
        moment = entry.time
        if moment is None:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=host_zone)
        if isinstance(entry, BindingExpiry):
            changes.append(StateChange(moment, RegistrationState.OUT_OF_SERVICE, "binding expired"))
            continue
        changes.append(StateChange(moment, _VERDICT_STATES[entry.verdict], _detail(entry)))
    return DnStates(dn, tuple(sorted(changes, key=lambda change: change.time)))


def _detail(transaction: RegistrationTransaction) -> str:
    source = f"{transaction.source_address}:{transaction.source_port}"
    agent = f" ({transaction.user_agent})" if transaction.user_agent else ""
    code = transaction.response_code
    answer = f"; the server answered {code}" if code is not None else ""
    lookup = transaction.gateway
    if lookup is not None and lookup.gateway is None:
        answer += f"; no gateway is configured for {lookup.address}"
    words = {
        Verdict.ACCEPTED: "REGISTER accepted",
        Verdict.REFUSED: "REGISTER refused",
        Verdict.UNREGISTERED: "un-registered (Expires: 0)",
        Verdict.NOT_CONFIGURED: "refused: DN not configured",
        Verdict.NO_ANSWER: "REGISTER got no answer",
    }
    return f"{words[transaction.verdict]} from {source}{agent}{answer}"


# Colours -----------------------------------------------------------------------------------------

STATE_COLOURS = {
    RegistrationState.IN_SERVICE: "#2e7d32",
    RegistrationState.OUT_OF_SERVICE: "#c62828",
    RegistrationState.UNKNOWN: "#9e9e9e",
}
STEP_COLOURS = {
    StepOutcome.FINISHED: "#1565c0",
    StepOutcome.FAILED: "#c62828",
    StepOutcome.RUNNING: "#757575",
}
STATUS_COLOURS = {
    RunStatus.COMMITTED: "#2e7d32",
    RunStatus.NO_CHANGE: "#2e7d32",
    RunStatus.ROLLED_BACK: "#ef6c00",
    RunStatus.ROLLBACK_FAILED: "#b71c1c",
    RunStatus.FAILED_BEFORE_CHANGE: "#616161",
    RunStatus.ABORTED: "#616161",
    RunStatus.RUNNING: "#616161",
}
_HATCH = "out-hatch"

_CSS = """
body{font-family:"DejaVu Sans",Verdana,Arial,sans-serif;margin:24px;color:#212121;
background:#fff;font-size:14px;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:4px}
.status{display:inline-block;color:#fff;padding:3px 10px;border-radius:4px;font-weight:bold}
.message{margin:10px 0;padding:8px 12px;background:#f5f5f5;border-left:4px solid #9e9e9e}
table{border-collapse:collapse;margin:6px 0}
th,td{text-align:left;padding:4px 12px 4px 0;vertical-align:top;border-bottom:1px solid #eee}
th{color:#555;font-weight:normal}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.finished{color:#1565c0}.failed{color:#c62828;font-weight:bold}.running{color:#757575}
.in-service{color:#2e7d32}.out-of-service{color:#c62828}.unknown{color:#757575}
.legend span{display:inline-block;margin-right:18px}
.swatch{display:inline-block;width:14px;height:14px;vertical-align:-2px;margin-right:5px}
.mono{font-family:"DejaVu Sans Mono",monospace;font-size:13px;white-space:nowrap}
svg text{font-family:"DejaVu Sans",Verdana,Arial,sans-serif}
.note{color:#666;font-size:12px}
"""

# Geometry ----------------------------------------------------------------------------------------

WIDTH = 1040
LABEL_WIDTH = 130
PLOT_RIGHT = WIDTH - 20
AXIS_HEIGHT = 44
STEP_ROW = 18
DN_ROW = 30
MIN_MARGIN = timedelta(minutes=2)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S")


def _duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@dataclass(frozen=True)
class _Segment:
    start: datetime
    end: datetime
    state: RegistrationState
    detail: str
    since: datetime | None
    """When the state began, if before the segment (the axis cut it)."""


def _segments(states: DnStates, start: datetime, end: datetime) -> list[_Segment]:
    ordered = sorted(states.changes, key=lambda change: change.time)
    before = [change for change in ordered if change.time <= start]
    current = before[-1] if before else None
    state = current.state if current else RegistrationState.UNKNOWN
    detail = current.detail if current else "no registration seen before this"
    since = current.time if current else None
    cursor = start
    segments: list[_Segment] = []
    for change in ordered:
        if not start < change.time < end:
            continue
        segments.append(_Segment(cursor, change.time, state, detail, since))
        cursor, state, detail, since = change.time, change.state, change.detail, change.time
    segments.append(_Segment(cursor, end, state, detail, since))
    # Consecutive segments in the same state read as one (a refresh does not change the state).
    joined: list[_Segment] = []
    for segment in segments:
        if joined and joined[-1].state is segment.state:
            last = joined[-1]
            joined[-1] = _Segment(last.start, segment.end, last.state, segment.detail, last.since)
        elif segment.end > segment.start or not joined:
            joined.append(segment)
    return joined


def _tick_step(span: timedelta) -> timedelta:
    for seconds in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600):
        if span / timedelta(seconds=seconds) <= 10:
            return timedelta(seconds=seconds)
    return timedelta(days=1)


class _Axis:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.span = (end - start).total_seconds() or 1.0

    def x(self, moment: datetime) -> float:
        fraction = (moment - self.start).total_seconds() / self.span
        return LABEL_WIDTH + max(0.0, min(1.0, fraction)) * (PLOT_RIGHT - LABEL_WIDTH)


def render_html(
    record: RunRecord, timelines: Sequence[DnStates], *, margin: timedelta | None = None
) -> str:
    """The run's page. `timelines`: one entry per DN (see `dn_states`); the axis covers the run
    plus `margin` (default: a quarter of the run, at least two minutes) on each side."""
    run_start = _parse(record.metadata.started)
    last_entry = _parse(record.entries[-1].time) if record.entries else run_start
    run_end = _parse(record.finished) if record.finished else last_entry
    span = run_end - run_start
    pad = margin if margin is not None else max(MIN_MARGIN, span / 4)
    axis = _Axis(run_start - pad, run_end + pad)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>remediate run {_e(record.run_id)}: {_e(record.status.value)}</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(record, run_start, run_end),
        "<h2>Timeline</h2>",
        _legend(),
        _svg(record, timelines, axis, run_start, run_end),
        '<p class="note">Times in UTC. Registration states come from the SIP Server log '
        "(REGISTER transactions and their outcome), converted from the host's clock; the "
        "shaded band is the run.</p>",
        _steps_table(record),
        _changes_table(timelines, axis),
        _backups_table(record),
        f'<p class="note">Made by remediate {_e(__version__)} from the journal of run '
        f"{_e(record.run_id)} ({_e(record.path)}).</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(record: RunRecord, run_start: datetime, run_end: datetime) -> str:
    meta = record.metadata
    status = record.status
    result = record.result
    rows = [
        ("Run", f'<span class="mono">{_e(meta.run_id)}</span>'),
        ("Action", _e(meta.action)),
        ("Site", _e(meta.site)),
        ("DNs", _e(", ".join(meta.dns))),
        ("Fix", _e(meta.fix)),
        ("Change", _e(meta.change_id or "none given")),
        ("Started", _e(_utc(run_start))),
        (
            "Ended",
            _e(f"{_utc(run_end)} ({_duration(run_end - run_start)})")
            if record.finished
            else "not recorded: the run is open (still running, or its controller died)",
        ),
        ("Operator", _e(f"{meta.owner.operator}@{meta.owner.host} (pid {meta.owner.pid})")),
    ]
    if "exit_code" in result:
        rows.append(("Exit code", _e(result["exit_code"])))
    colour = STATUS_COLOURS[status]
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    message = result.get("message")
    return (
        f"<h1>Run {_e(meta.run_id)} on site {_e(meta.site)}</h1>"
        f'<p><span class="status" style="background:{colour}">{_e(status.value)}</span></p>'
        + (f'<div class="message">{_e(message)}</div>' if message else "")
        + f"<table>{body}</table>"
    )


def _legend() -> str:
    items = [
        f'<span><span class="swatch" style="background:{STATE_COLOURS[state]}"></span>'
        f"{_e(state.label)}</span>"
        for state in RegistrationState
    ]
    items.append(
        f'<span><span class="swatch" style="background:{STEP_COLOURS[StepOutcome.FINISHED]}">'
        "</span>step</span>"
    )
    items.append(
        f'<span><span class="swatch" style="background:{STEP_COLOURS[StepOutcome.FAILED]}">'
        "</span>failed step</span>"
    )
    return f'<p class="legend">{"".join(items)}</p>'


def _svg(
    record: RunRecord,
    timelines: Sequence[DnStates],
    axis: _Axis,
    run_start: datetime,
    run_end: datetime,
) -> str:
    steps = record.steps
    steps_top = AXIS_HEIGHT
    dns_top = steps_top + len(steps) * STEP_ROW + 14
    height = dns_top + max(1, len(timelines)) * DN_ROW + 10
    out = [
        f'<svg width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="timeline of run {_e(record.run_id)}">',
        f'<defs><pattern id="{_HATCH}" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="8" height="8" '
        f'fill="{STATE_COLOURS[RegistrationState.OUT_OF_SERVICE]}"/>'
        '<rect width="3" height="8" fill="#ffffff" fill-opacity="0.35"/></pattern></defs>',
    ]
    # The run, shaded across every row, with its start and end marked.
    left, right = axis.x(run_start), axis.x(run_end)
    out.append(
        f'<rect class="run" x="{left:.1f}" y="{AXIS_HEIGHT - 6}" '
        f'width="{max(right - left, 1):.1f}" height="{height - AXIS_HEIGHT}" fill="#fff8e1">'
        "<title>the run: "
        f"{_e(_utc(run_start))} to {_e(_utc(run_end))}</title></rect>"
    )
    out.extend(_ticks(axis, height))
    for x, words in ((left, "run start"), (right, "run end")):
        out.append(
            f'<line x1="{x:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{x:.1f}" y2="{height}" '
            'stroke="#ff8f00" stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<text x="{x:.1f}" y="12" font-size="11" text-anchor="middle" fill="#e65100">'
            f"{_e(words)}</text>"
        )
    for index, step in enumerate(steps):
        y = steps_top + index * STEP_ROW
        started = _parse(step.started)
        ended = _parse(step.ended) if step.ended else run_end
        x1, x2 = axis.x(started), axis.x(ended)
        tip = f"{step.name}: {step.outcome.value}, {_utc(started)} to " + (
            f"{_utc(ended)} ({_duration(ended - started)})" if step.ended else "no end recorded"
        )
        if step.error:
            tip += f"; {step.error}"
        out.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 13}" font-size="12" text-anchor="end" '
            f'fill="#424242">{_e(step.name)}</text>'
            f'<rect class="step {step.outcome.value}" data-step="{_e(step.name)}" '
            f'x="{x1:.1f}" y="{y + 3}" width="{max(x2 - x1, 2.0):.1f}" height="{STEP_ROW - 6}" '
            f'rx="2" fill="{STEP_COLOURS[step.outcome]}"><title>{_e(tip)}</title></rect>'
        )
    if not timelines:
        out.append(
            f'<text x="{LABEL_WIDTH}" y="{dns_top + 18}" font-size="13" fill="#757575">'
            "no registration data was recorded for this run</text>"
        )
    for index, states in enumerate(timelines):
        y = dns_top + index * DN_ROW
        out.append(
            f'<g class="dn" data-dn="{_e(states.dn)}">'
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 19}" font-size="13" font-weight="bold" '
            f'text-anchor="end">DN {_e(states.dn)}</text>'
        )
        for segment in _segments(states, axis.start, axis.end):
            x1, x2 = axis.x(segment.start), axis.x(segment.end)
            colour = STATE_COLOURS[segment.state]
            fill = (
                f"url(#{_HATCH})" if segment.state is RegistrationState.OUT_OF_SERVICE else colour
            )
            since = f" (since {_utc(segment.since)})" if segment.since else ""
            tip = (
                f"DN {states.dn}: {segment.state.label} from {_utc(segment.start)} to "
                f"{_utc(segment.end)}{since}; {segment.detail}"
            )
            out.append(
                f'<rect class="state {segment.state.value}" data-colour="{colour}" '
                f'data-from="{_e(_utc(segment.start))}" data-to="{_e(_utc(segment.end))}" '
                f'x="{x1:.1f}" y="{y + 4}" width="{max(x2 - x1, 1.0):.1f}" height="{DN_ROW - 8}" '
                f'fill="{fill}" stroke="#ffffff" stroke-width="0.5"><title>{_e(tip)}</title></rect>'
            )
            if x2 - x1 > 90:
                out.append(
                    f'<text x="{(x1 + x2) / 2:.1f}" y="{y + 19}" font-size="12" fill="#ffffff" '
                    f'text-anchor="middle" font-weight="bold">{_e(segment.state.label)}</text>'
                )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _ticks(axis: _Axis, height: int) -> list[str]:
    step = _tick_step(axis.end - axis.start)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    first = epoch + ((axis.start - epoch) // step + 1) * step
    out = [
        f'<line x1="{LABEL_WIDTH}" y1="{AXIS_HEIGHT - 6}" x2="{PLOT_RIGHT}" '
        f'y2="{AXIS_HEIGHT - 6}" stroke="#9e9e9e"/>'
    ]
    moment = first
    while moment < axis.end:
        x = axis.x(moment)
        out.append(
            f'<line x1="{x:.1f}" y1="{AXIS_HEIGHT - 10}" x2="{x:.1f}" y2="{height}" '
            'stroke="#e0e0e0"/>'
            f'<text x="{x:.1f}" y="{AXIS_HEIGHT - 12}" font-size="11" text-anchor="middle" '
            f'fill="#616161">{_e(_clock(moment))}</text>'
        )
        moment += step
    return out


def _steps_table(record: RunRecord) -> str:
    rows = []
    for step in record.steps:
        started = _parse(step.started)
        ended = _parse(step.ended) if step.ended else None
        rows.append(
            f"<tr><td>{_e(step.name)}</td><td class='mono'>{_e(_utc(started))}</td>"
            f"<td class='mono'>{_e(_utc(ended)) if ended else '-'}</td>"
            f"<td class='num'>{_e(_duration(ended - started)) if ended else '-'}</td>"
            f"<td class='{step.outcome.value}'>{_e(step.outcome.value)}</td>"
            f"<td>{_e(step.error or '')}</td></tr>"
        )
    if not rows:
        return "<h2>Steps</h2><p>No step was recorded.</p>"
    return (
        "<h2>Steps</h2><table><tr><th>Step</th><th>Started</th><th>Ended</th>"
        "<th>Duration</th><th>Outcome</th><th>Error</th></tr>" + "".join(rows) + "</table>"
    )


def _changes_table(timelines: Sequence[DnStates], axis: _Axis) -> str:
    rows = []
    for states in timelines:
        for segment in _segments(states, axis.start, axis.end):
            since = _utc(segment.since) if segment.since else f"before {_utc(segment.start)}"
            rows.append(
                f"<tr><td>DN {_e(states.dn)}</td><td class='mono'>{_e(since)}</td>"
                f"<td class='{segment.state.value}'>{_e(segment.state.label)}</td>"
                f"<td>{_e(segment.detail)}</td></tr>"
            )
    if not rows:
        return ""
    return (
        "<h2>Registration states</h2><table><tr><th>DN</th><th>Since</th><th>State</th>"
        "<th>Last evidence</th></tr>" + "".join(rows) + "</table>"
    )


def _backups_table(record: RunRecord) -> str:
    backups = record.backups.values()
    if not backups:
        return ""
    rows = "".join(
        f"<tr><td>{_e(b.name)}</td><td>{_e(b.kind)}</td><td>{_e(b.source)}</td>"
        f"<td class='num'>{b.size}</td><td class='mono'>{_e(b.sha256[:16])}…</td></tr>"
        for b in backups
    )
    return (
        "<h2>Backups</h2><table><tr><th>Name</th><th>Kind</th><th>Source</th><th>Bytes</th>"
        f"<th>SHA-256</th></tr>{rows}</table>"
    )
