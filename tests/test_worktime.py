"""Working time: due dates and cadences count the owner's hours on their days, in their zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import HubSection, User
from hub.worktime import WorkingTime

MOSCOW = HubSection(timezone="Europe/Moscow")
SECOND = timedelta(seconds=1)


def anna(**fields: object) -> User:
    values: dict[str, object] = {
        "email": "anna@example.com",
        "name": "Анна",
        "working_hours": "09:00-18:00",
    }
    values.update(fields)
    return User(**values)  # type: ignore[arg-type]


def at(text: str, zone: str = "Europe/Moscow") -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


ZONES = st.sampled_from(
    ["UTC", "Europe/Moscow", "Europe/London", "America/New_York", "Australia/Lord_Howe"]
)
MINUTES = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))
DAYS = st.frozensets(st.integers(0, 6), min_size=1)
INSTANTS = st.datetimes(datetime(2024, 1, 1), datetime(2027, 12, 31)).map(
    lambda t: t.replace(microsecond=0, tzinfo=UTC)
)
HOURS_ONLY = st.integers(0, 86399).map(lambda s: timedelta(seconds=s))  # no whole days
DELTAS = st.integers(0, 20 * 86400).map(lambda s: timedelta(seconds=s))


@st.composite
def schedules(draw: st.DrawFn) -> WorkingTime:
    return WorkingTime(ZoneInfo(draw(ZONES)), draw(MINUTES), draw(MINUTES), draw(DAYS))


def test_a_day_after_friday_evening_is_monday_evening():
    hours = WorkingTime.of(anna(), MOSCOW)
    friday = at("2026-11-27T17:00")
    assert hours.add(friday, timedelta(days=1)) == at("2026-11-30T17:00")
    assert hours.add(friday, timedelta(hours=1)) == at("2026-11-27T18:00")  # the closing itself
    assert hours.add(friday, timedelta(hours=2)) == at("2026-11-30T10:00")
    assert hours.elapsed(friday, at("2026-11-29T12:00")) == timedelta(hours=1)


def test_a_start_outside_hours_counts_from_the_next_opening():
    hours = WorkingTime.of(anna(), MOSCOW)
    assert hours.add(at("2026-11-28T11:00"), timedelta(hours=3)) == at("2026-11-30T12:00")
    assert hours.add(at("2026-11-30T07:00"), timedelta(0)) == at("2026-11-30T09:00")


def test_the_users_own_timezone_wins_over_the_hubs():
    hours = WorkingTime.of(anna(timezone="Asia/Yekaterinburg"), MOSCOW)
    assert hours.is_working(at("2026-11-30T09:30", "Asia/Yekaterinburg"))
    assert not hours.is_working(at("2026-11-30T17:30"))  # 19:30 in Yekaterinburg


def test_without_a_user_the_clock_is_the_working_time():
    hours = WorkingTime.of(None, MOSCOW)
    saturday = at("2026-11-28T03:00")
    assert hours.round_the_clock
    assert hours.add(saturday, timedelta(days=1, hours=2)) == saturday + timedelta(hours=26)


def test_without_working_hours_the_working_days_are_whole_days():
    hours = WorkingTime.of(anna(working_hours=None), MOSCOW)
    assert hours.add(at("2026-11-27T23:00"), timedelta(hours=2)) == at("2026-11-30T01:00")


def test_a_working_day_keeps_its_length_across_a_dst_change():
    hours = WorkingTime.of(anna(timezone="Europe/London"), MOSCOW)
    sunday = at("2026-03-29T12:00", "Europe/London")  # clocks went forward at 01:00
    assert hours.add(sunday, timedelta(days=1)) == at("2026-03-30T18:00", "Europe/London")
    weekends = anna(timezone="Europe/London", working_hours=None, working_days=["sat", "sun"])
    whole_days = WorkingTime.of(weekends, MOSCOW)
    saturday, monday = (
        at("2026-03-28T00:00", "Europe/London"),
        at("2026-03-30T00:00", "Europe/London"),
    )
    assert whole_days.elapsed(saturday, monday) == timedelta(hours=47)  # Sunday had 23 hours


def test_a_night_shift_runs_past_midnight_and_belongs_to_the_day_it_starts():
    hours = WorkingTime.of(anna(working_hours="20:00-08:00"), MOSCOW)
    assert hours.day_length == timedelta(hours=12)
    assert hours.is_working(at("2026-11-28T07:00"))  # Friday's shift, on Saturday morning
    assert not hours.is_working(at("2026-11-28T21:00"))
    assert hours.add(at("2026-11-28T07:00"), timedelta(hours=2)) == at("2026-11-30T21:00")


def test_nobody_on_duty_still_has_due_dates_and_cadences_on_the_clock():
    hours = WorkingTime.of(anna(working_days=[]), MOSCOW)
    saturday = at("2026-11-28T03:00")
    assert not hours.is_working(at("2026-11-30T10:00"))
    assert hours.add(saturday, timedelta(hours=5)) == saturday + timedelta(hours=5)
    assert hours.since(saturday, timedelta(days=1)) == saturday - timedelta(days=1)


@settings(max_examples=200, deadline=None)
@given(schedules(), INSTANTS, DELTAS)
def test_elapsed_after_add_is_the_working_time_added(hours, start, delta):
    assert hours.elapsed(start, hours.add(start, delta)) == hours.working(delta)


@settings(max_examples=200, deadline=None)
@given(schedules(), INSTANTS, INSTANTS, DELTAS)
def test_add_never_goes_back_when_the_start_moves_on(hours, one, two, delta):
    early, late = sorted((one, two))
    assert hours.add(early, delta) <= hours.add(late, delta)


@settings(max_examples=200, deadline=None)
@given(schedules(), INSTANTS, HOURS_ONLY, HOURS_ONLY)
def test_add_never_goes_back_when_more_hours_are_added(hours, start, one, two):
    less, more = sorted((one, two))
    assert hours.add(start, less) <= hours.add(start, more)


@settings(max_examples=200, deadline=None)
@given(schedules(), INSTANTS, DELTAS.filter(lambda d: d > timedelta(0)))
def test_a_due_time_falls_inside_working_hours_or_at_a_closing(hours, start, delta):
    due = hours.add(start, delta)
    assert hours.is_working(due) or hours.is_working(due - SECOND)


@settings(max_examples=200, deadline=None)
@given(ZONES, INSTANTS, DELTAS)
def test_round_the_clock_is_plain_clock_arithmetic(zone, start, delta):
    hours = WorkingTime(ZoneInfo(zone))
    assert hours.add(start, delta) == start + delta
    assert hours.elapsed(start, start + delta) == delta
    assert hours.since(start, delta) == start - delta


@settings(max_examples=200, deadline=None)
@given(schedules(), INSTANTS, INSTANTS)
def test_working_time_never_exceeds_the_clock_and_adds_up(hours, one, two):
    start, end = sorted((one, two))
    middle = start + (end - start) / 2
    assert hours.elapsed(start, end) <= end - start
    assert hours.elapsed(start, end) == hours.elapsed(start, middle) + hours.elapsed(middle, end)


@settings(max_examples=200, deadline=None)
@given(schedules(), INSTANTS, INSTANTS, DELTAS)
def test_since_splits_contacts_into_kept_and_broken_cadences(hours, contact, now, delta):
    cut = hours.since(now, delta)
    assert (hours.elapsed(contact, now) > hours.working(delta)) == (contact < cut)
    assert hours.elapsed(cut, now) == hours.working(delta)


@settings(max_examples=200, deadline=None)
@given(schedules(), INSTANTS)
def test_is_working_means_working_time_passes(hours, t):
    assert hours.is_working(t) == (hours.elapsed(t, t + SECOND) > timedelta(0))
