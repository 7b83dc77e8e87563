"""Change windows: a run that changes anything starts only inside an approved window, and only if
it can end before the window closes.

Two kinds of window:

- `--window START/END`: one ISO 8601 interval with explicit offsets
  (`2026-12-05T22:00+05:30/2026-12-06T02:00+05:30`, or `...Z`). A time without an offset is refused:
  a scheduler on a controller in another zone would read it differently.
- recurring windows from the inventory variable `remediate_change_windows`, a list such as
  `[{days: [sat], start: "22:00", end: "02:00", tz: "Asia/Kolkata"}]`. `days` are the days the
  window opens (local to `tz`); an `end` at or before `start` closes the next day. Times are wall
  clock times in `tz`, so a window keeps its local hours across DST changes: a night that loses
  an hour gives a shorter window, one that gains an hour a longer one. A wall time that does not
  exist (skipped by DST) is read as the moment of the change; one that happens twice opens at its
  later reading and closes at its earlier one, so a window never grows beyond what was approved.

The caller passes either the `--window` or the inventory's windows (the command line wins); with
several windows, any of them will do, and windows that touch or overlap form one opening.
`check_window` decides: inside or outside, the opening that applies, the next opening long enough
for the run, and whether the run's worst-case duration would outlast the opening's end. Starts are
inclusive, ends exclusive; a run whose worst case ends exactly at the close fits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from remediate.errors import InputError, RemediateError
from remediate.status import ExitStatus

WINDOWS_VARIABLE = "remediate_change_windows"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_WINDOW_KEYS = frozenset({"days", "start", "end", "tz"})
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
_LOOK_BACK = timedelta(days=2)
"""A recurring window lasts less than a day: one that opened two days ago has closed."""
_LOOK_AHEAD = timedelta(days=15)
"""Two weeks and a day cover every opening of a weekly window."""


class OutsideWindowError(RemediateError):
    """Now is outside every change window, or the run would outlast the one it is in."""

    reference = "outside-change-window"
    exit_status = ExitStatus.OUTSIDE_WINDOW


# Windows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opening:
    """One concrete span of time in which changes are allowed: [start, end)."""

    start: datetime
    end: datetime
    windows: tuple[str, ...]
    """The windows (as `describe()` words them) this opening comes from."""
    zone: tzinfo
    """The zone the windows are written in: times are shown in it."""

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.astimezone(self.zone).isoformat(),
            "end": self.end.astimezone(self.zone).isoformat(),
            "start_utc": _utc_text(self.start),
            "end_utc": _utc_text(self.end),
            "windows": list(self.windows),
        }


@dataclass(frozen=True)
class FixedWindow:
    """One window given on the command line (`--window START/END`)."""

    start: datetime
    end: datetime

    def describe(self) -> str:
        return f"--window {_local_text(self.start)} to {_local_text(self.end)}"

    def openings(self, since: datetime, until: datetime) -> Iterator[Opening]:
        # A fixed window is always considered, however far away: it is the one that was approved.
        zone = self.start.tzinfo or UTC
        yield Opening(self.start, self.end, (self.describe(),), zone)


@dataclass(frozen=True)
class RecurringWindow:
    """A weekly window from the inventory, in wall clock time of a named zone."""

    days: tuple[int, ...]
    """Days the window opens, Monday 0 to Sunday 6, in `zone`."""
    start: time
    end: time
    zone_name: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.zone_name)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def describe(self) -> str:
        days = "daily" if len(self.days) == 7 else ",".join(WEEKDAYS[day] for day in self.days)
        return (
            f"{days} {_clock_text(self.start)}-{_clock_text(self.end)}"
            f"{' (next day)' if self.crosses_midnight else ''} {self.zone_name}"
        )

    def openings(self, since: datetime, until: datetime) -> Iterator[Opening]:
        """Every opening that starts on a day between `since` and `until` (local dates)."""
        zone = self.zone
        day = since.astimezone(zone).date()
        last = until.astimezone(zone).date()
        while day <= last:
            if day.weekday() in self.days:
                end_day = day + timedelta(days=1) if self.crosses_midnight else day
                start = wall_time(day, self.start, zone, opening=True)
                end = wall_time(end_day, self.end, zone, opening=False)
                if end > start:  # a DST change cannot empty a window, but never yield one reversed
                    yield Opening(start, end, (self.describe(),), zone)
            day += timedelta(days=1)


ChangeWindow = FixedWindow | RecurringWindow


def wall_time(day: date, clock: time, zone: ZoneInfo, *, opening: bool) -> datetime:
    """The instant a wall clock shows `clock` on `day` in `zone`, read so a window never grows:
    a time that happens twice (clocks go back) opens at its later reading and closes at its
    earlier one; a time that never happens (clocks go forward) is the moment of the change."""
    earlier = datetime.combine(day, clock, tzinfo=zone).replace(fold=0)
    later = earlier.replace(fold=1)
    first = earlier if earlier.astimezone(UTC) <= later.astimezone(UTC) else later
    second = later if first is earlier else earlier
    if first.astimezone(UTC) == second.astimezone(UTC):
        return earlier.astimezone(UTC)  # an ordinary time: one reading
    if _exists(first) and _exists(second):  # a repeated time
        return (second if opening else first).astimezone(UTC)
    return _transition(first.astimezone(UTC), second.astimezone(UTC), zone)


def _exists(moment: datetime) -> bool:
    """True when the wall time really appears on the zone's clocks (not skipped by DST)."""
    back = moment.astimezone(UTC).astimezone(moment.tzinfo)
    return back.replace(tzinfo=None) == moment.replace(tzinfo=None)


def _transition(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The instant between `low` and `high` (UTC) at which `zone`'s offset changes."""
    offset = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


# Parsing -----------------------------------------------------------------------------------------


def parse_window_option(text: str) -> FixedWindow:
    """`--window START/END`: ISO 8601 times with an offset (or Z), END after START."""
    hint = (
        "write --window START/END with offsets, e.g. 2026-12-05T22:00+05:30/2026-12-06T02:00+05:30"
    )
    parts = text.strip().split("/")
    if len(parts) != 2 or not all(parts):
        raise InputError(
            f"--window {text!r} is not START/END", reference="window-invalid", hint=hint
        )
    start, end = (
        _aware_time(part.strip(), name, hint)
        for part, name in zip(parts, ("START", "END"), strict=True)
    )
    if end <= start:
        raise InputError(
            f"--window {text!r} ends ({_local_text(end)}) at or before it starts "
            f"({_local_text(start)})",
            reference="window-invalid",
            hint="END must be after START; a window across midnight ends on the next day's date",
        )
    return FixedWindow(start, end)


def _aware_time(text: str, name: str, hint: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"--window {name} {text!r} is not an ISO 8601 date and time",
            reference="window-invalid",
            hint=hint,
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(
            f"--window {name} {text!r} has no time zone offset; the controller and the site may "
            "not share a zone, so a bare time is ambiguous",
            reference="window-invalid",
            hint=f"add the site's offset (+05:30) or Z for UTC: {text}+05:30",
        )
    return moment


def parse_recurring_windows(value: Any, *, where: str) -> tuple[RecurringWindow, ...]:
    """The inventory's `remediate_change_windows` (None or empty: none). `where` names the host
    and file the value came from, for the error message."""
    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        raise _invalid("", f"must be a list of windows, not {type(value).__name__}", where)
    return tuple(_recurring(item, index, where) for index, item in enumerate(value))


def _recurring(item: Any, index: int, where: str) -> RecurringWindow:
    at = f"[{index}]"
    if not isinstance(item, Mapping):
        raise _invalid(at, "must be a mapping with days, start, end and tz", where)
    unknown = sorted(set(map(str, item)) - _WINDOW_KEYS)
    if unknown:
        raise _invalid(at, f"has unknown keys: {', '.join(unknown)}", where)
    for key in ("start", "end", "tz"):
        if item.get(key) in (None, ""):
            raise _invalid(f"{at}.{key}", "is missing", where)
    start = _clock(item["start"], f"{at}.start", where)
    end = _clock(item["end"], f"{at}.end", where)
    if start == end:
        raise _invalid(
            f"{at}", "starts and ends at the same time", where, "a window lasts less than a day"
        )
    zone_name = str(item["tz"])
    try:
        ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(
            f"{at}.tz",
            f"names no known time zone ({zone_name!r})",
            where,
            "use an IANA zone name such as Asia/Kolkata, Europe/London or UTC",
        ) from None
    return RecurringWindow(_days(item.get("days"), f"{at}.days", where), start, end, zone_name)


def _clock(value: Any, at: str, where: str) -> time:
    # YAML reads an unquoted 22:00 as the sexagesimal number 1320: accept it as minutes.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    match = _CLOCK.fullmatch(str(value).strip())
    if match is None:
        raise _invalid(at, f"must be a time of day HH:MM, not {value!r}", where)
    return time(int(match[1]), int(match[2]), int(match[3] or 0))


def _days(value: Any, at: str, where: str) -> tuple[int, ...]:
    if value is None or value == "daily":
        return tuple(range(7))
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise _invalid(at, "must be a list of days (mon ... sun) or 'daily'", where)
    days: set[int] = set()
    for name in names:
        word = str(name).strip().lower()
        if word in WEEKDAYS:
            days.add(WEEKDAYS.index(word))
        elif word in _FULL_WEEKDAYS:
            days.add(_FULL_WEEKDAYS.index(word))
        else:
            raise _invalid(at, f"has {name!r}, which is not a day (mon ... sun)", where)
    return tuple(sorted(days))


def _invalid(at: str, why: str, where: str, hint: str = "") -> InputError:
    return InputError(
        f"{WINDOWS_VARIABLE}{at} {why} {where}".rstrip(),
        reference="inventory-variable-invalid",
        hint=hint
        or f'e.g. {WINDOWS_VARIABLE}: [{{days: [sat], start: "22:00", end: "02:00", '
        'tz: "Asia/Kolkata"}]',
    )


# The decision ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowDecision:
    """Whether a run may start now, and why."""

    allowed: bool
    reason: str
    """`unrestricted` (no window configured), `inside`, `outside` or `too-short`."""
    now: datetime
    worst_case: timedelta
    current: Opening | None
    """The opening `now` is in, if any."""
    next_opening: Opening | None
    """The next opening, after now, long enough for the worst case (None: none in sight)."""
    message: str
    windows_ahead: bool = False
    """Some window opens after now (long enough or not)."""

    @property
    def reference(self) -> str:
        return "window-too-short" if self.reason == "too-short" else "outside-change-window"

    def error(self) -> OutsideWindowError | None:
        """The error to stop the run with (exit 6), or None when the run may start."""
        if self.allowed:
            return None
        if self.next_opening is not None:
            hint = (
                "the next window long enough opens "
                f"{_local_text(self.next_opening.start, self.next_opening.zone)} "
                f"(in {human_duration(self.next_opening.start - self.now)}); run then, or get a "
                "wider window approved"
            )
        elif self.windows_ahead:
            hint = (
                f"no configured window is long enough for {human_duration(self.worst_case)}; "
                f"get a wider window approved (--window START/END or {WINDOWS_VARIABLE})"
            )
        else:
            hint = (
                "no configured window opens after now; get a new window approved "
                f"(--window START/END or {WINDOWS_VARIABLE})"
            )
        return OutsideWindowError(self.message, reference=self.reference, hint=hint)

    def require(self) -> None:
        """Raise the decision's error (exit 6, nothing touched) unless the run may start."""
        error = self.error()
        if error is not None:
            raise error

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "reference": None if self.allowed else self.reference,
            "now": _utc_text(self.now),
            "worst_case_seconds": int(self.worst_case.total_seconds()),
            "current": None if self.current is None else self.current.to_json(),
            "next_opening": None if self.next_opening is None else self.next_opening.to_json(),
            "message": self.message,
        }


def check_window(
    windows: Sequence[ChangeWindow], now: datetime, worst_case: timedelta
) -> WindowDecision:
    """May a run whose steps take at most `worst_case` start at `now` (an aware time)?"""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("check_window needs an aware time for now")
    if not windows:
        return WindowDecision(
            True, "unrestricted", now, worst_case, None, None, "no change window is configured"
        )
    openings = _merged(
        opening
        for window in windows
        for opening in window.openings(now - _LOOK_BACK, now + _LOOK_AHEAD)
    )
    current = next((opening for opening in openings if opening.contains(now)), None)
    upcoming = next(
        (o for o in openings if o.start > now and o.duration >= worst_case),
        None,
    )
    ahead = any(opening.start > now for opening in openings)
    if current is not None and now + worst_case <= current.end:
        return WindowDecision(
            True,
            "inside",
            now,
            worst_case,
            current,
            upcoming,
            f"inside the change window {_span_text(current)}; the run's worst case "
            f"({human_duration(worst_case)}) ends by {_local_text(now + worst_case, current.zone)}",
        )
    if current is not None:
        return WindowDecision(
            False,
            "too-short",
            now,
            worst_case,
            current,
            upcoming,
            f"the change window {_span_text(current)} closes in "
            f"{human_duration(current.end - now)}, but the run may take up to "
            f"{human_duration(worst_case)} (the worst case of its steps): not starting",
            windows_ahead=ahead,
        )
    return WindowDecision(
        False,
        "outside",
        now,
        worst_case,
        None,
        upcoming,
        f"outside every change window (now {_local_text(now, _zone_of(windows))}; windows: "
        f"{'; '.join(window.describe() for window in windows)}): nothing was touched",
        windows_ahead=ahead,
    )


def _merged(openings: Iterable[Opening]) -> list[Opening]:
    """Openings sorted by start, those that overlap or touch joined into one."""
    merged: list[Opening] = []
    for opening in sorted(openings, key=lambda o: (o.start, o.end)):
        if merged and opening.start <= merged[-1].end:
            last = merged[-1]
            names = last.windows + tuple(n for n in opening.windows if n not in last.windows)
            merged[-1] = Opening(last.start, max(last.end, opening.end), names, last.zone)
        else:
            merged.append(opening)
    return merged


def _zone_of(windows: Sequence[ChangeWindow]) -> tzinfo:
    first = windows[0]
    if isinstance(first, RecurringWindow):
        return first.zone
    return first.start.tzinfo or UTC


# Text --------------------------------------------------------------------------------------------


def human_duration(span: timedelta) -> str:
    """`2 h 05 min`, `45 min`, `30 s`: what an operator reads at a glance."""
    seconds = max(0, int(span.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min" + (f" {seconds:02d} s" if seconds else "")
    if minutes:
        return f"{minutes} min" + (f" {seconds:02d} s" if seconds else "")
    return f"{seconds} s"


def _clock_text(clock: time) -> str:
    return clock.strftime("%H:%M:%S" if clock.second else "%H:%M")


def _local_text(moment: datetime, zone: tzinfo | None = None) -> str:
    local = moment.astimezone(zone) if zone is not None else moment
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    name = f" {zone.key}" if isinstance(zone, ZoneInfo) else ""
    seconds = ":%S" if local.second else ""
    return f"{local.strftime(f'%a %Y-%m-%d %H:%M{seconds}')} {offset}{name}".rstrip()


def _span_text(opening: Opening) -> str:
    return f"{_local_text(opening.start, opening.zone)} to {_local_text(opening.end, opening.zone)}"


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
