"""Who owns a deal. First match wins:

1. the contact's (or the open deal's) owner, while active (decided by the lead pipeline,
   which asks this module only for clients without one);
2. the first ``[[assignment.rules]]`` entry whose conditions (pipeline, source, city,
   segment, channel) all hold: round-robin among its ``to`` managers;
3. round-robin among all active managers.

Round-robin skips a manager outside their working hours or at their
``max_open_deals``; if that leaves nobody, it falls back to everyone in the
group who is active, so a lead never waits without an owner. Each rotation
position is a durable counter, so restarts and several hub processes continue
one rotation. Every assignment names the rule that decided it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import AssignmentRule, Settings
from hub.domain.lead import Lead
from hub.store.models import Deal, User
from hub.worktime import WorkingTime

ROUND_ROBIN = "assign.round_robin"


@dataclass(frozen=True, slots=True)
class Assignment:
    owner_id: int | None
    rule: str  # contact_owner | rule:<name> | round_robin | unassigned, "+ fallback" when forced


@dataclass(frozen=True, slots=True)
class Request:
    """One deal whose client has no active owner yet: the lead and its pipeline."""

    lead: Lead
    pipeline: str


@dataclass(slots=True)
class _Manager:
    id: int
    email: str
    hours: WorkingTime
    limit: int | None
    open_deals: int = 0

    def on_duty(self, now: datetime) -> bool:
        return self.hours.is_working(now)

    def has_room(self) -> bool:
        return self.limit is None or self.open_deals < self.limit


def _matches(rule: AssignmentRule, request: Request) -> bool:
    lead = request.lead
    checks = [
        (rule.pipeline, request.pipeline),
        (rule.source, lead.source),
        (rule.city, lead.city),
        (rule.segment, lead.segment),
        (rule.channel, lead.channel),
    ]
    return all(
        want is None or (have is not None and want.strip().lower() == have.strip().lower())
        for want, have in checks
    )


class Assigner:
    def __init__(self, settings: Settings, managers: list[_Manager], active: set[int]) -> None:
        self.settings = settings
        self.managers = managers
        self.by_email = {m.email: m for m in managers}
        self.active = active

    @classmethod
    async def load(cls, conn: AsyncConnection, settings: Settings) -> Assigner:
        users = User.__table__
        rows = (
            await conn.execute(
                select(users.c.id, users.c.email, users.c.role, users.c.active).order_by(users.c.id)
            )
        ).all()
        configured = {u.email: u for u in settings.users}
        managers = []
        for row in rows:
            if not row.active or row.role != "manager":
                continue
            user = configured.get(row.email)
            managers.append(
                _Manager(
                    id=row.id,
                    email=row.email,
                    hours=WorkingTime.of(user, settings),
                    limit=user.max_open_deals if user else None,
                )
            )
        limited = [m for m in managers if m.limit is not None]
        if limited:
            # Counted up to each limit, not in full: every batch asks, and a full
            # count grows with the store (a manager with 20,000 open deals).
            deals = Deal.__table__
            counts = [
                select(literal(m.id).label("owner_id"), func.count().label("open")).select_from(
                    select(deals.c.id)
                    .where(deals.c.owner_id == m.id, deals.c.status == "open")
                    .limit(m.limit)
                    .subquery()
                )
                for m in limited
            ]
            found = dict((await conn.execute(union_all(*counts))).all())
            for manager in limited:
                manager.open_deals = found.get(manager.id, 0)
        return cls(settings, managers, {row.id for row in rows if row.active})

    def _group(self, request: Request) -> tuple[str, str, list[_Manager]]:
        """(counter, rule label, managers) for a request without an owner."""
        for rule in self.settings.assignment.rules:
            if _matches(rule, request):
                group = [self.by_email[e] for e in rule.to if e in self.by_email]
                if group:
                    return f"assign.rule.{rule.name}", f"rule:{rule.name}", group
        return ROUND_ROBIN, "round_robin", self.managers

    async def assign(
        self,
        requests: Sequence[Request],
        reserve: Callable[[str, int], Awaitable[int]],
        now: datetime,
    ) -> list[Assignment]:
        results: list[Assignment | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        groups: dict[str, tuple[str, list[_Manager]]] = {}
        for index, request in enumerate(requests):
            counter, label, group = self._group(request)
            if not group:
                results[index] = Assignment(None, "unassigned")
                continue
            pending.setdefault(counter, []).append(index)
            groups[counter] = (label, group)
        for counter, indexes in pending.items():
            label, group = groups[counter]
            position = await reserve(counter, len(indexes))
            for index in indexes:
                manager, forced = self._next(group, position, now)
                position += 1
                manager.open_deals += 1
                results[index] = Assignment(
                    manager.id, label + (" + fallback: nobody on duty with room" if forced else "")
                )
        return [r for r in results if r is not None]

    @staticmethod
    def _next(group: list[_Manager], position: int, now: datetime) -> tuple[_Manager, bool]:
        size = len(group)
        for step in range(size):
            manager = group[(position + step) % size]
            if manager.on_duty(now) and manager.has_room():
                return manager, False
        return group[position % size], True
