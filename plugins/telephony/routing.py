"""Where a PBX sends a ringing caller: their owner's extension, else the default route.

The answer never waits past the deadline: the lookup runs as a task of its own,
and when it has not answered by ``route_deadline`` (a slow store, a pool
waiting for a connection) or fails, the PBX gets the default route at once. The
late lookup is left to finish rather than cancelled (a cancelled statement can
cost its connection), and past :data:`MAX_IN_FLIGHT` late lookups the store is
not asked at all until they drain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Select, and_, case, select

from hub.deals import StoreReader
from hub.store.models import Contact, ContactPoint, User
from plugins.telephony.card import best_first, number_params, phone_points

log = structlog.get_logger("plugins.telephony")
MAX_IN_FLIGHT = 100


@dataclass(frozen=True, slots=True)
class Owner:
    """The owner of the contact calling: ``extension`` is None when they cannot take it."""

    email: str | None
    extension: str | None


def _owners() -> Select[Any]:
    routable = and_(User.active.is_(True), User.extension.is_not(None), User.extension != "")
    return (
        select(User.email, User.extension, User.active)
        .select_from(ContactPoint)
        .join(Contact, Contact.id == ContactPoint.contact_id)
        .outerjoin(User, User.id == Contact.owner_id)
        .where(phone_points())
        .order_by(case((routable, 1), else_=0).desc(), *best_first(limited=False))
        .limit(1)
    )


OWNERS = _owners()


async def find_owner(reader: StoreReader, e164: str) -> Owner | None:
    """The owner of the contact with this number (one whose owner can take calls first);
    ``None`` for a number nobody has. One indexed query."""
    row = (await reader.execute(OWNERS, number_params(e164))).first()
    if row is None:
        return None
    extension = row.extension if row.active and row.extension else None
    return Owner(row.email, extension)


class Router:
    """Answers routes within a deadline; ``lookup`` finds the owner of a normalized number."""

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[Owner | None]],
        default_route: str,
        deadline: float,
    ) -> None:
        self.lookup = lookup
        self.default_route = default_route
        self.deadline = deadline
        self.late: set[asyncio.Task[Owner | None]] = set()

    def default(self, reason: str, known: bool = False, owner: str | None = None) -> dict[str, Any]:
        return {
            "extension": self.default_route,
            "owner": owner,
            "known": known,
            "route": "default",
            "reason": reason,
        }

    async def route(self, e164: str) -> dict[str, Any]:
        if len(self.late) >= MAX_IN_FLIGHT:
            return self.default("deadline")
        task = asyncio.create_task(self.lookup(e164), name="telephony-route")
        done, _ = await asyncio.wait({task}, timeout=self.deadline)
        if not done:
            self.late.add(task)
            task.add_done_callback(self._late_done)
            log.warning("route_past_deadline", deadline_ms=round(self.deadline * 1000))
            return self.default("deadline")
        try:
            owner = task.result()
        except Exception:
            log.exception("route_lookup_failed")
            return self.default("unavailable")
        if owner is None:
            return self.default("unknown")
        if owner.extension is None:
            return self.default("no_extension", known=True, owner=owner.email)
        return {"extension": owner.extension, "owner": owner.email, "known": True, "route": "owner"}

    def _late_done(self, task: asyncio.Task[Owner | None]) -> None:
        self.late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("late_route_lookup_failed", error=repr(task.exception()))

    async def close(self) -> None:
        for task in list(self.late):
            task.cancel()
        await asyncio.gather(*self.late, return_exceptions=True)
        self.late.clear()
