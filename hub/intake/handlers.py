"""Channels whose events are not leads: a call, a delivery report, a reply to a thread.

The intake worker hands a lead channel's events to the lead pipeline. A channel whose
events need their own handling (a call is ringing, then ended, then missed) returns a
:class:`Handler` from ``hub_intake_handler``; the worker calls it for each of the
channel's events, in the batch's transaction, inside a savepoint of its own, so a
handler that raises fails that one event (retried with backoff, then dead, as any
event) and the others of the batch stand. What the handler returns is stored as the
event's ``result`` (``hub inbox show``). A handler writes the CRM only through the
deal store's writer (``hub.deals.apply_in(event.conn, changes, actor, event.now)``)
and may hand the lead pipeline a lead of its own: at once (:meth:`Stored.lead`, when it
needs the decision: whom to tell about an unknown caller's missed call), or by returning
:class:`AsLead`, which files the event as a lead with the rest of the batch, in the
pipeline's one bulk run (a mailbox's hundred new letters cost one run, not a hundred).

A handler that also has ``handle_batch(events)`` (:class:`BatchHandler`) is given all its
channel's events of a batch at once, in one savepoint, and returns an outcome per event
(an exception fails that event alone, and it must have written nothing for it); when the
call raises, the worker hands the events to ``handle`` one by one instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.deals import StoreReader
from hub.domain.lead import Lead


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored event of a handled channel, in the worker's transaction."""

    id: int
    channel: str
    payload: dict[str, Any]
    received_at: datetime
    now: datetime
    conn: AsyncConnection  # the batch's transaction: write through the writer with it
    run_lead: Callable[[int, Lead, datetime], Awaitable[dict[str, Any]]]

    @property
    def store(self) -> StoreReader:
        """The store as this transaction sees it, read-only."""
        return StoreReader(self.conn)

    async def lead(self, lead: Lead) -> dict[str, Any]:
        """Run the lead pipeline over ``lead`` as if this event were it; its decision."""
        return await self.run_lead(self.id, lead, self.received_at)


@dataclass(frozen=True, slots=True)
class AsLead:
    """File the event as ``lead``, with the batch's other leads; its result is the lead's
    decision with ``result`` added."""

    lead: Lead
    result: dict[str, Any] = field(default_factory=dict)


class Handler(Protocol):
    async def handle(self, event: Stored) -> dict[str, Any] | AsLead:
        """File ``event``; what it did (JSON), kept as the event's result, or the lead it is."""
        ...


class BatchHandler(Handler, Protocol):
    async def handle_batch(
        self, events: Sequence[Stored]
    ) -> list[dict[str, Any] | AsLead | BaseException]:
        """File ``events`` together; one outcome per event, in their order."""
        ...
