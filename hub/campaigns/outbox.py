"""The campaign outbox's delivery bookkeeping: claim, book the pace, record, recover.

Rows are written only by the writer, when a campaign starts
(:mod:`hub.deals.write_campaigns`). Sending moves each through its states, every
move a short transaction, so a crash at any moment leaves each row saying what is
known of it:

``queued`` → ``sending`` (claimed, with the process and a lease) → ``sent`` (the
provider's id) → ``delivered`` | ``failed``; a transient failure puts it back to
``queued`` with a later ``due_at``. ``due_at`` is when a row next needs the hub: a
queued one to be sent, a sent one to have its delivery report asked for (where the
provider's callback has not brought it). A ``sending`` row whose lease ran out was cut off
by a crash: the gateway is asked whether the message reached it (``find``), and the
row becomes ``sent``, ``queued`` again (it never arrived) or ``review`` (nobody can
tell: a person decides, nobody gets it twice).

On PostgreSQL several hub processes claim with ``FOR UPDATE SKIP LOCKED`` and book
their sends on one clock per gateway (``gateway_pace``), so they share its rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select, update

from hub.campaigns.gateway import DeliveryReport
from hub.store import Store
from hub.store.claims import claim_due, update_picked
from hub.store.models import Campaign, CampaignMessage, GatewayPace
from hub.store.ops import upsert

messages_t = CampaignMessage.__table__
# A delivery report rarely comes within the first minute: asking sooner wastes a request.
FIRST_ASK = timedelta(minutes=1)
campaigns_t = Campaign.__table__
pace_t = GatewayPace.__table__


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: ``state`` sent | queued (retry at ``due_at``) | failed."""

    id: int
    state: str
    error: str | None = None
    provider_id: str | None = None
    parts: int | None = None
    cost: Decimal | None = None
    due_at: datetime | None = None


async def running(store: Store, gateways: Sequence[str], now: datetime) -> list[dict[str, Any]]:
    """Running campaigns on ``gateways`` with messages due, oldest campaign first."""
    async with store.read() as conn:
        rows = await conn.execute(
            select(campaigns_t.c.id, campaigns_t.c.gateway, campaigns_t.c.rate)
            .where(
                campaigns_t.c.state == "running",
                campaigns_t.c.gateway.in_(gateways),
                select(messages_t.c.id)
                .where(
                    messages_t.c.campaign_id == campaigns_t.c.id,
                    messages_t.c.state == "queued",
                    messages_t.c.due_at <= now,
                )
                .exists(),
            )
            .order_by(campaigns_t.c.id)
        )
        return [r._asdict() for r in rows]


async def claim(
    store: Store,
    *,
    campaign_id: int,
    worker: str,
    limit: int,
    now: datetime,
    lease: timedelta,
) -> list[dict[str, Any]]:
    """Take up to ``limit`` due rows of the campaign for ``worker``, in order."""
    return await claim_due(
        store,
        messages_t,
        messages_t.c.campaign_id == campaign_id,
        worker=worker,
        limit=limit,
        now=now,
        lease=lease,
    )


async def book(store: Store, gateway: str, *, count: int, rate: float, now: datetime) -> datetime:
    """Book ``count`` sends on ``gateway``'s clock at ``rate`` per second: returns when the
    first may go (the rest follow 1/rate apart). Every process books on the same row."""
    async with store.write() as conn:
        await upsert(conn, pace_t, [{"gateway": gateway, "next_at": now}], key=["gateway"])
        query = select(pace_t.c.next_at).where(pace_t.c.gateway == gateway)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        next_at = (await conn.execute(query)).scalar_one()
        # An idle gateway does not bank sends for a burst later: it starts from now.
        start = max(next_at, now)
        await conn.execute(
            update(pace_t)
            .where(pace_t.c.gateway == gateway)
            .values(next_at=start + timedelta(seconds=count / rate))
        )
    return start


async def release(store: Store, rows: Iterable[tuple[int, datetime]], *, worker: str) -> None:
    """Hand claimed rows back, due later (quiet hours at the recipient's)."""
    params = [{"row_id": row_id, "due": due} for row_id, due in rows]
    if not params:
        return
    async with store.write() as conn:
        await conn.execute(
            update(messages_t)
            .where(
                messages_t.c.id == bindparam("row_id"),
                messages_t.c.state == "sending",
                messages_t.c.claimed_by == worker,
            )
            .values(
                state="queued",
                due_at=bindparam("due"),
                claimed_by=None,
                lease_until=None,
                attempts=messages_t.c.attempts - 1,
            ),
            params,
        )


async def record(store: Store, outcomes: Sequence[Outcome], *, worker: str, now: datetime) -> int:
    """Write what attempts came to, in one transaction; a row another process took over
    meanwhile is left alone. Returns how many rows were recorded."""
    if not outcomes:
        return 0
    params = [
        {
            "row_id": o.id,
            "new_state": o.state,
            "new_error": o.error[:500] if o.error else None,
            "new_provider_id": o.provider_id,
            "new_parts": o.parts,
            "new_cost": o.cost,
            "new_sent_at": now if o.state == "sent" else None,
            "new_due_at": now + FIRST_ASK if o.state == "sent" else o.due_at or now,
        }
        for o in outcomes
    ]
    async with store.write() as conn:
        result = await conn.execute(
            update(messages_t)
            .where(
                messages_t.c.id == bindparam("row_id"),
                messages_t.c.state == "sending",
                messages_t.c.claimed_by == worker,
            )
            .values(
                state=bindparam("new_state"),
                error=bindparam("new_error"),
                provider_id=bindparam("new_provider_id"),
                parts=bindparam("new_parts"),
                cost=bindparam("new_cost"),
                sent_at=bindparam("new_sent_at"),
                due_at=bindparam("new_due_at"),
                claimed_by=None,
                lease_until=None,
            ),
            params,
        )
        return result.rowcount or 0


async def interrupted(
    store: Store, *, now: datetime, gateways: Sequence[str]
) -> list[dict[str, Any]]:
    """Rows whose lease ran out: a process died while sending them."""
    async with store.read() as conn:
        rows = await conn.execute(
            select(messages_t).where(
                messages_t.c.state == "sending",
                messages_t.c.lease_until < now,
                messages_t.c.gateway.in_(gateways),
            )
        )
        return [dict(r._mapping) for r in rows]


async def resolve(
    store: Store, row_id: int, *, state: str, lease_until: datetime, **values: Any
) -> bool:
    """Settle an interrupted row as ``state`` unless another process already did."""
    async with store.write() as conn:
        result = await conn.execute(
            update(messages_t)
            .where(
                messages_t.c.id == row_id,
                messages_t.c.state == "sending",
                messages_t.c.lease_until == lease_until,
            )
            .values(state=state, claimed_by=None, lease_until=None, **values)
        )
        return bool(result.rowcount)


async def delivered(
    store: Store, gateway: str, reports: Sequence[DeliveryReport], now: datetime
) -> int:
    """Move rows the gateway reports on to ``delivered`` / ``failed`` (a report for a row
    already final, or arriving twice, changes nothing)."""
    if not reports:
        return 0
    params = [
        {
            "pid": r.provider_id,
            "new_state": r.state,
            "new_error": r.error[:500] if r.error else None,
            "at": (r.at or now) if r.state == "delivered" else None,
        }
        for r in reports
        if r.state in ("delivered", "failed")
    ]
    if not params:
        return 0
    settle = (
        update(messages_t)
        .where(
            messages_t.c.gateway == gateway,
            messages_t.c.provider_id == bindparam("pid"),
            messages_t.c.state.in_(("sent", "sending", "review")),
        )
        .values(
            state=bindparam("new_state"),
            error=bindparam("new_error"),
            delivered_at=bindparam("at"),
        )
    )
    settled = 0
    async with store.write() as conn:
        # One statement a report: executemany's rowcount is not told on every driver.
        for one in params:
            settled += (await conn.execute(settle, one)).rowcount or 0
    return settled


async def to_ask(
    store: Store,
    gateway: str,
    *,
    now: datetime,
    since: datetime,
    again: timedelta,
    limit: int,
) -> list[str]:
    """Provider ids of up to ``limit`` messages sent since ``since`` whose report is due to
    be asked for; each one's next ask moves ``again`` on, so another process (or the next
    round) asks about the next ones."""
    due = (
        select(messages_t.c.id)
        .where(
            messages_t.c.gateway == gateway,
            messages_t.c.state == "sent",
            messages_t.c.due_at <= now,
            messages_t.c.sent_at >= since,
            messages_t.c.provider_id.is_not(None),
        )
        .order_by(messages_t.c.due_at)
        .limit(limit)
    )
    rows = await update_picked(
        store, messages_t, due, {"due_at": now + again}, messages_t.c.provider_id
    )
    return [pid for (pid,) in rows]


async def finish_done(store: Store, now: datetime) -> list[int]:
    """Running campaigns with nothing left to send are finished; returns their ids."""
    left = (
        select(messages_t.c.id)
        .where(
            messages_t.c.campaign_id == campaigns_t.c.id,
            messages_t.c.state.in_(("queued", "sending")),
        )
        .exists()
    )
    async with store.read() as conn:
        rows = await conn.execute(
            select(campaigns_t.c.id).where(campaigns_t.c.state == "running", ~left)
        )
        return [campaign_id for (campaign_id,) in rows]


def counts_query(campaign_id: int) -> Any:
    return (
        select(messages_t.c.state, messages_t.c.skip_reason, func.count())
        .where(messages_t.c.campaign_id == campaign_id)
        .group_by(messages_t.c.state, messages_t.c.skip_reason)
    )
