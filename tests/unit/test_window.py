"""Change windows: --window, recurring inventory windows, midnight, DST, zones, the decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from remediate.errors import InputError
from remediate.status import ExitStatus
from remediate.window import (
    FixedWindow,
    OutsideWindowError,
    RecurringWindow,
    check_window,
    parse_recurring_windows,
    parse_window_option,
    wall_time,
)

IST = ZoneInfo("Asia/Kolkata")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
WHERE = "for host genesys-lab (inventories/lab/hosts.yml)"
HOUR = timedelta(hours=1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def saturdays_ist() -> tuple[RecurringWindow, ...]:
    return parse_recurring_windows(
        [{"days": ["sat"], "start": "22:00", "end": "02:00", "tz": "Asia/Kolkata"}], where=WHERE
    )


# --window -----------------------------------------------------------------------------------


def test_window_option_with_offsets_and_z() -> None:
    window = parse_window_option("2026-12-05T22:00+05:30/2026-12-06T02:00+05:30")
    assert window.start == utc("2026-12-05T16:30")
    assert window.end == utc("2026-12-05T20:30")
    assert parse_window_option("2026-12-05T16:30Z/2026-12-05T20:30Z") == window


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-12-05T22:00/2026-12-06T02:00", "no time zone offset"),
        ("2026-12-05T22:00+05:30/2026-12-06T02:00", "END '2026-12-06T02:00' has no time zone"),
        ("2026-12-06T02:00+05:30/2026-12-05T22:00+05:30", "at or before it starts"),
        ("2026-12-05T22:00Z/2026-12-05T22:00Z", "at or before it starts"),
        ("2026-12-05T22:00Z", "is not START/END"),
        ("tonight/tomorrow", "is not an ISO 8601"),
    ],
)
def test_window_option_refused_with_a_hint(text: str, says: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_window_option(text)
    assert caught.value.reference == "window-invalid"
    assert says in caught.value.message
    assert caught.value.hint


def test_naive_window_hint_shows_how_to_add_an_offset() -> None:
    with pytest.raises(InputError) as caught:
        parse_window_option("2026-12-05T22:00/2026-12-06T02:00+05:30")
    assert "2026-12-05T22:00+05:30" in caught.value.hint


# A fixed window --------------------------------------------------------------------------------


def fixed() -> list[FixedWindow]:
    return [parse_window_option("2026-12-05T22:00+05:30/2026-12-06T02:00+05:30")]


def test_before_the_window_is_refused_with_exit_6_and_the_opening() -> None:
    decision = check_window(fixed(), utc("2026-12-05T16:00"), HOUR)
    assert not decision.allowed and decision.reason == "outside"
    assert decision.next_opening is not None
    assert decision.next_opening.start == utc("2026-12-05T16:30")
    error = decision.error()
    assert isinstance(error, OutsideWindowError)
    assert error.exit_status is ExitStatus.OUTSIDE_WINDOW == 6
    assert error.reference == "outside-change-window"
    assert "nothing was touched" in error.message
    assert "Sat 2026-12-05 22:00 +05:30" in error.hint and "in 30 min" in error.hint
    with pytest.raises(OutsideWindowError):
        decision.require()


def test_start_is_inclusive_end_exclusive() -> None:
    assert check_window(fixed(), utc("2026-12-05T16:30"), HOUR).allowed
    at_end = check_window(fixed(), utc("2026-12-05T20:30"), timedelta(0))
    assert not at_end.allowed and at_end.reason == "outside"
    assert at_end.next_opening is None
    error = at_end.error()
    assert error is not None and "no configured window opens after now" in error.hint


def test_a_run_that_ends_exactly_at_the_close_fits_one_second_more_does_not() -> None:
    now = utc("2026-12-05T19:30")
    assert check_window(fixed(), now, HOUR).allowed
    decision = check_window(fixed(), now, HOUR + timedelta(seconds=1))
    assert not decision.allowed and decision.reason == "too-short"
    error = decision.error()
    assert error is not None and error.reference == "window-too-short"
    assert error.exit_status == 6
    assert "closes in 1 h 00 min" in error.message and "up to 1 h 00 min 01 s" in error.message


def test_no_window_configured_means_unrestricted() -> None:
    decision = check_window([], utc("2026-12-05T03:00"), HOUR)
    assert decision.allowed and decision.reason == "unrestricted"
    decision.require()


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        check_window(fixed(), datetime(2026, 12, 5, 22), HOUR)


# Recurring windows -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        ("2026-12-05T21:59:59", False),  # Saturday, a second before it opens
        ("2026-12-05T22:00", True),  # Saturday, opening
        ("2026-12-05T23:59", True),
        ("2026-12-06T00:00", True),  # across midnight: Sunday, the window opened Saturday
        ("2026-12-06T01:59:59", True),
        ("2026-12-06T02:00", False),  # closed
        ("2026-12-06T22:30", False),  # Sunday evening: the window opens on Saturdays only
        ("2026-12-04T23:00", False),  # Friday
    ],
)
def test_saturday_night_window_across_midnight(local: str, inside: bool) -> None:
    now = datetime.fromisoformat(local).replace(tzinfo=IST)
    decision = check_window(saturdays_ist(), now, timedelta(0))
    assert decision.allowed is inside, decision.message


def test_outside_names_the_next_saturday_in_the_sites_zone() -> None:
    now = datetime(2026, 12, 6, 2, 0, tzinfo=IST)  # just closed
    decision = check_window(saturdays_ist(), now, HOUR)
    assert decision.next_opening is not None
    assert decision.next_opening.start == datetime(2026, 12, 12, 22, 0, tzinfo=IST)
    assert decision.next_opening.to_json()["start"] == "2026-12-12T22:00:00+05:30"
    assert decision.next_opening.to_json()["start_utc"] == "2026-12-12T16:30:00Z"
    assert "sat 22:00-02:00 (next day) Asia/Kolkata" in decision.message
    error = decision.error()
    assert error is not None and "Sat 2026-12-12 22:00 +05:30 Asia/Kolkata" in error.hint


def test_the_same_instant_seen_from_another_zone() -> None:
    # 23:00 IST on Saturday is 17:30 UTC and 12:30 in New York: inside, whatever the caller's zone.
    for now in (
        utc("2026-12-05T17:30"),
        datetime(2026, 12, 5, 12, 30, tzinfo=NEW_YORK),
        datetime(2026, 12, 5, 23, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ):
        assert check_window(saturdays_ist(), now, HOUR).allowed


def test_too_short_for_the_worst_case_then_next_week() -> None:
    now = datetime(2026, 12, 6, 1, 0, tzinfo=IST)
    decision = check_window(saturdays_ist(), now, 2 * HOUR)
    assert decision.reason == "too-short"
    assert decision.current is not None
    assert decision.current.end == datetime(2026, 12, 6, 2, 0, tzinfo=IST)
    assert decision.next_opening is not None
    assert decision.next_opening.start == datetime(2026, 12, 12, 22, 0, tzinfo=IST)


def test_a_worst_case_longer_than_any_window_never_fits() -> None:
    decision = check_window(saturdays_ist(), datetime(2026, 12, 5, 10, tzinfo=IST), 5 * HOUR)
    assert not decision.allowed and decision.next_opening is None
    error = decision.error()
    assert error is not None and "no configured window is long enough for 5 h 00 min" in error.hint


def test_touching_windows_form_one_opening() -> None:
    windows = parse_recurring_windows(
        [
            {"days": ["saturday"], "start": "22:00", "end": "02:00", "tz": "Asia/Kolkata"},
            {"days": "sun", "start": "02:00", "end": "04:00", "tz": "Asia/Kolkata"},
        ],
        where=WHERE,
    )
    decision = check_window(windows, datetime(2026, 12, 5, 23, 0, tzinfo=IST), 5 * HOUR)
    assert decision.allowed, decision.message
    assert decision.current is not None
    assert decision.current.end == datetime(2026, 12, 6, 4, 0, tzinfo=IST)
    assert len(decision.current.windows) == 2


# DST -----------------------------------------------------------------------------------------


def london_saturday_night() -> tuple[RecurringWindow, ...]:
    return parse_recurring_windows(
        [{"days": ["sat"], "start": "22:00", "end": "02:00", "tz": "Europe/London"}], where=WHERE
    )


def test_spring_forward_night_is_an_hour_shorter() -> None:
    # Clocks go forward at 01:00 UTC on Sunday 2026-03-29: 22:00 GMT to 02:00 BST is 3 hours.
    decision = check_window(london_saturday_night(), utc("2026-03-28T22:30"), timedelta(0))
    assert decision.current is not None
    assert decision.current.start == utc("2026-03-28T22:00")
    assert decision.current.end == utc("2026-03-29T01:00")
    assert decision.current.duration == 3 * HOUR
    assert not check_window(london_saturday_night(), utc("2026-03-28T22:30"), 3 * HOUR).allowed


def test_fall_back_night_is_an_hour_longer() -> None:
    # Clocks go back at 01:00 UTC on Sunday 2026-10-25: 22:00 BST to 02:00 GMT is 5 hours.
    decision = check_window(london_saturday_night(), utc("2026-10-24T21:00"), 5 * HOUR)
    assert decision.allowed, decision.message
    assert decision.current is not None and decision.current.duration == 5 * HOUR


def test_a_skipped_wall_time_is_the_moment_of_the_change() -> None:
    # New York skips 02:00-03:00 on 2026-03-08; the change is at 07:00 UTC.
    day = datetime(2026, 3, 8).date()
    clock = datetime(2026, 3, 8, 2, 30).time()
    assert wall_time(day, clock, NEW_YORK, opening=True) == utc("2026-03-08T07:00")
    assert wall_time(day, clock, NEW_YORK, opening=False) == utc("2026-03-08T07:00")


def test_a_repeated_wall_time_never_widens_the_window() -> None:
    # New York shows 01:00-02:00 twice on 2026-11-01 (EDT, then EST).
    day = datetime(2026, 11, 1).date()
    clock = datetime(2026, 11, 1, 1, 30).time()
    assert wall_time(day, clock, NEW_YORK, opening=True) == utc("2026-11-01T06:30")  # EST
    assert wall_time(day, clock, NEW_YORK, opening=False) == utc("2026-11-01T05:30")  # EDT
    windows = parse_recurring_windows(
        [{"days": ["sun"], "start": "01:30", "end": "03:00", "tz": "America/New_York"}],
        where=WHERE,
    )
    decision = check_window(windows, utc("2026-11-01T06:00"), timedelta(0))  # 01:00 EST
    assert (
        not decision.allowed
    )  # the first 01:30 (EDT) has passed, but the window opens at 01:30 EST
    assert decision.next_opening is not None
    assert decision.next_opening.start == utc("2026-11-01T06:30")
    assert decision.next_opening.duration == timedelta(minutes=90)


# Inventory values ----------------------------------------------------------------------------


def test_every_day_and_yaml_sexagesimal_times() -> None:
    # An unquoted 22:00 in YAML 1.1 is the number 1320.
    (window,) = parse_recurring_windows(
        [{"start": 1320, "end": "23:30:15", "tz": "UTC"}], where=WHERE
    )
    assert window.days == tuple(range(7))
    assert window.describe() == "daily 22:00-23:30:15 UTC"
    assert parse_recurring_windows(None, where=WHERE) == ()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"days": ["sat"]}, "must be a list of windows"),
        (["sat 22:00"], "[0] must be a mapping"),
        (
            [{"days": ["sat"], "start": "22:00", "end": "02:00", "zone": "UTC"}],
            "unknown keys: zone",
        ),
        ([{"days": ["sat"], "start": "22:00", "end": "02:00"}], "[0].tz is missing"),
        ([{"days": ["sat"], "start": "22:00", "end": "02:00", "tz": "Asia/Kolkatta"}], "no known"),
        ([{"days": ["caturday"], "start": "22:00", "end": "02:00", "tz": "UTC"}], "not a day"),
        ([{"days": ["sat"], "start": "24:00", "end": "02:00", "tz": "UTC"}], "HH:MM"),
        ([{"days": ["sat"], "start": "22:00", "end": "22:00", "tz": "UTC"}], "same time"),
    ],
)
def test_bad_inventory_windows_name_the_variable_and_the_file(value: object, says: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_recurring_windows(value, where=WHERE)
    assert caught.value.reference == "inventory-variable-invalid"
    assert caught.value.message.startswith("remediate_change_windows")
    assert says in caught.value.message
    assert WHERE in caught.value.message


def test_decision_json_for_the_run_record() -> None:
    decision = check_window(saturdays_ist(), utc("2026-12-05T17:00"), timedelta(minutes=20))
    data = decision.to_json()
    assert data["allowed"] is True and data["reason"] == "inside" and data["reference"] is None
    assert data["worst_case_seconds"] == 1200
    assert data["current"]["end"] == "2026-12-06T02:00:00+05:30"
    refused = check_window(saturdays_ist(), utc("2026-12-05T20:10"), HOUR).to_json()
    assert refused["reference"] == "window-too-short"
