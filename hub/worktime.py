"""Working time: a manager's hours on their days, in their time zone.

A due date or a contact cadence counts the owner's working time, not the clock:
with ``09:00-18:00`` on weekdays, a call promised a day after Friday 17:00 is due
Monday 17:00. A duration's whole days are whole working days (``1d`` is one working
day's length, nine hours here), the rest is hours inside working hours.

Everything goes in and out as aware UTC datetimes; working hours are wall-clock
times in the user's zone (else the hub's), so a day of 09:00-18:00 stays nine hours
across a DST change. A shift that ends at or before it starts (``20:00-08:00``)
runs past midnight and belongs to the day it starts on. A user without
``working_hours`` works whole days on their ``working_days``; without a user the
clock is the working time. A user with no working days is never on duty, and their
deals' due dates and cadences run on the clock: nobody's absence stops the count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from hub.config import WEEKDAYS

if TYPE_CHECKING:
    from hub.config import HubSection, Settings, User

DAY = timedelta(days=1)
ZERO = timedelta(0)
_EVERY_DAY = frozenset(range(7))


@dataclass(frozen=True, slots=True)
class WorkingTime:
    zone: ZoneInfo
    opens: time = time(0)
    closes: time = time(0)  # on the next day when not after ``opens`` (00:00: midnight)
    days: frozenset[int] = _EVERY_DAY  # Monday is 0

    @classmethod
    def of(cls, user: User | None, hub: HubSection | Settings) -> WorkingTime:
        """The working time of ``user``; ``hub`` is the settings or their ``[hub]`` section."""
        section: Any = getattr(hub, "hub", hub)
        zone = ZoneInfo(user.timezone if user and user.timezone else section.timezone)
        if user is None:
            return cls(zone)
        days = frozenset(WEEKDAYS.index(d) for d in user.working_days)
        if not user.working_hours:
            return cls(zone, days=days)
        start, end = user.working_hours.split("-")
        closes = time(0) if end == "24:00" else time.fromisoformat(end)
        return cls(zone, time.fromisoformat(start), closes, days)

    @property
    def round_the_clock(self) -> bool:
        """Whether working time is clock time (``is_working`` aside, for nobody on duty)."""
        every_hour = self.days == _EVERY_DAY and self.opens == self.closes == time(0)
        return every_hour or not self.days

    @property
    def day_length(self) -> timedelta:
        """How long one working day is on the wall clock (``1d`` of a cadence or a due date)."""
        if self.round_the_clock:
            return DAY
        on = datetime.combine(date.min, self.opens)
        off = datetime.combine(date.min, self.closes)
        return off - on if off > on else off + DAY - on

    def working(self, delta: timedelta) -> timedelta:
        """The working time ``delta`` stands for: its whole days as working days."""
        if delta <= ZERO:
            return ZERO
        return delta.days * self.day_length + (delta - timedelta(days=delta.days))

    def is_working(self, t: datetime) -> bool:
        if not self.days:
            return False
        if self.round_the_clock:
            return True
        opens, closes = next(self._forward(t))
        return opens <= t < closes

    def add(self, start: datetime, delta: timedelta) -> datetime:
        """When ``delta`` of working time after ``start`` is up (a task's due time).

        A start outside working hours counts from the next opening; a result that
        fills a day exactly is that day's closing, not the next opening.
        """
        left = self.working(delta)
        if self.round_the_clock:
            return (start + left).astimezone(UTC)
        for opens, closes in self._forward(start):
            opens = max(opens, start)
            if left <= closes - opens:
                return (opens + left).astimezone(UTC)
            left -= closes - opens
        raise AssertionError("unreachable: working time never ends")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """The working time between two instants (none when ``end`` is not after ``start``)."""
        if end <= start:
            return ZERO
        if self.round_the_clock:
            return end - start
        total = ZERO
        for opens, closes in self._forward(start):
            if opens >= end:
                break
            total += min(closes, end) - max(opens, start)
        return total

    def since(self, end: datetime, delta: timedelta) -> datetime:
        """The earliest instant from which no more than ``delta`` of working time passes by
        ``end``: a contact older than this broke a cadence of ``delta``.

        ``elapsed(t, end) > working(delta)`` exactly when ``t < since(end, delta)``.
        """
        left = self.working(delta)
        if self.round_the_clock:
            return (end - left).astimezone(UTC)
        for opens, closes in self._backward(end):
            closes = min(closes, end)
            if left < closes - opens:
                return (closes - left).astimezone(UTC)
            left -= closes - opens
        raise AssertionError("unreachable: working time never ends")

    def _shift(self, day: date) -> tuple[datetime, datetime] | None:
        if day.weekday() not in self.days:
            return None
        closing_day = day if self.closes > self.opens else day + DAY
        opens = datetime.combine(day, self.opens, self.zone).astimezone(UTC)
        closes = datetime.combine(closing_day, self.closes, self.zone).astimezone(UTC)
        return (opens, closes) if closes > opens else None

    def _forward(self, t: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The working intervals that end after ``t``, in order (UTC)."""
        day = t.astimezone(self.zone).date() - DAY  # a night shift from yesterday may be on
        last = None
        while True:
            shift = self._shift(day)
            day += DAY
            if shift is None or shift[1] <= t:
                continue
            opens, closes = shift
            if last is not None and opens < last:  # a DST change may make two shifts touch
                opens = last
            last = closes
            if closes > opens:
                yield opens, closes

    def _backward(self, t: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The working intervals that start before ``t``, latest first (UTC)."""
        day = t.astimezone(self.zone).date()
        first = None
        while True:
            shift = self._shift(day)
            day -= DAY
            if shift is None or shift[0] >= t:
                continue
            opens, closes = shift
            if first is not None and closes > first:
                closes = first
            first = opens
            if closes > opens:
                yield opens, closes


@dataclass(frozen=True, slots=True)
class Team:
    """Each owner's working time by user id; anyone not configured works by ``default``."""

    default: WorkingTime
    by_owner: dict[int, WorkingTime]

    @classmethod
    def of_catalog(cls, settings: Settings, catalog: Any) -> Team:
        """The team from the configured users and the store's ids of them (the catalog)."""
        default = WorkingTime.of(None, settings)
        by_owner = {}
        for user in settings.users:
            user_id = catalog.user_ids.get(user.email) if catalog is not None else None
            hours = WorkingTime.of(user, settings)
            if user_id is not None and hours != default:
                by_owner[user_id] = hours
        return cls(default, by_owner)

    @classmethod
    def clock(cls) -> Team:
        """Everyone on the clock: round the clock, every day."""
        return cls(WorkingTime(ZoneInfo("UTC")), {})

    def of(self, owner_id: int | None) -> WorkingTime:
        return self.by_owner.get(owner_id, self.default) if owner_id is not None else self.default

    def schedules(self) -> dict[WorkingTime, list[int]]:
        """The owners who do not work by ``default``, grouped by their working time."""
        out: dict[WorkingTime, list[int]] = {}
        for owner_id, hours in sorted(self.by_owner.items()):
            out.setdefault(hours, []).append(owner_id)
        return out
