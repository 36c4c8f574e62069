"""Who owns a new deal: the contact's existing owner, else round-robin among managers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.models import User

ROUND_ROBIN = "assign.round_robin"


@dataclass(frozen=True, slots=True)
class Assignment:
    owner_id: int | None
    rule: str  # contact_owner | round_robin | unassigned


class Assigner:
    """Assigns owners for one batch of leads.

    The round-robin position is a durable counter, bumped once per batch by the
    number of leads that need it, so restarts and several hub processes continue
    the same rotation instead of starting again from the first manager.
    """

    def __init__(self, managers: list[int], active: set[int], start: int) -> None:
        self._managers = managers
        self.active = active
        self._next = start

    @classmethod
    async def for_batch(
        cls,
        conn: AsyncConnection,
        owners: list[int | None],
        reserve: Callable[[str, int], Awaitable[int]],
    ) -> Assigner:
        """Prepare to assign a batch whose contacts have ``owners`` (None for new ones).

        ``reserve(counter, n)`` bumps the durable round-robin counter by ``n`` and
        returns where it stood.
        """
        users = User.__table__
        rows = (
            await conn.execute(
                select(users.c.id, users.c.role, users.c.active).order_by(users.c.id)
            )
        ).all()
        active = {row.id for row in rows if row.active}
        managers = [row.id for row in rows if row.active and row.role == "manager"]
        needed = sum(1 for owner in owners if owner is None or owner not in active)
        start = await reserve(ROUND_ROBIN, needed) if managers and needed else 0
        return cls(managers, active, start)

    def assign(self, contact_owner: int | None) -> Assignment:
        if contact_owner is not None and contact_owner in self.active:
            return Assignment(contact_owner, "contact_owner")
        if not self._managers:
            return Assignment(None, "unassigned")
        owner = self._managers[self._next % len(self._managers)]
        self._next += 1
        return Assignment(owner, "round_robin")
