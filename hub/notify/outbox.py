"""The notification outbox's delivery bookkeeping: claim, record, recover, list, retry.

Rows are queued only by the writer (:mod:`hub.deals.write_notify`), with their
cause. Delivering them moves a row through its states, each move one short
transaction, so a crash at any point leaves every row in a state that says what
is known about it:

``queued`` → claimed: ``sending`` (with the claiming process and a lease) →
``sent`` | ``queued`` again (a transient failure, due after a backoff) |
``failed`` (permanent, or retried past the notifier's ``retry_for``).
A ``sending`` row whose lease ran out was cut off by a crash: ``queued`` again
where the receiver drops repeats, else ``review``.

On PostgreSQL several hub processes claim with ``FOR UPDATE SKIP LOCKED``, so
each row is sent by one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from hub.store import Store
from hub.store.claims import claim_due
from hub.store.models import Notification

notifications_t = Notification.__table__

INTERRUPTED = "cut off by a crash or restart: unknown whether it was delivered"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: ``state`` sent | queued (retry at ``due_at``) | failed."""

    id: int
    state: str
    error: str | None = None
    provider_id: str | None = None
    due_at: datetime | None = None


async def claim(
    store: Store,
    *,
    notifier: str,
    worker: str,
    limit: int,
    now: datetime,
    lease: timedelta,
) -> list[dict[str, Any]]:
    """Take up to ``limit`` due rows of ``notifier`` for ``worker``, oldest due first."""
    return await claim_due(
        store,
        notifications_t,
        notifications_t.c.notifier == notifier,
        worker=worker,
        limit=limit,
        now=now,
        lease=lease,
    )


async def due_notifiers(store: Store, *, now: datetime, among: list[str]) -> list[str]:
    """The notifiers with rows due now."""
    if not among:
        return []
    async with store.read() as conn:
        rows = await conn.execute(
            select(notifications_t.c.notifier)
            .where(
                notifications_t.c.state == "queued",
                notifications_t.c.due_at <= now,
                notifications_t.c.notifier.in_(among),
            )
            .distinct()
        )
        return [name for (name,) in rows.all()]


async def record(store: Store, outcomes: Iterable[Outcome], *, worker: str, now: datetime) -> int:
    """Write what attempts came to; a row another process took over meanwhile is left alone.
    Returns how many rows were recorded."""
    done = 0
    async with store.write() as conn:
        for outcome in outcomes:
            values: dict[str, Any] = {
                "state": outcome.state,
                "claimed_by": None,
                "lease_until": None,
                "last_error": outcome.error[:500] if outcome.error else None,
            }
            if outcome.state == "sent":
                values.update(sent_at=now, provider_id=outcome.provider_id)
            if outcome.due_at is not None:
                values["due_at"] = outcome.due_at
            result = await conn.execute(
                update(notifications_t)
                .where(
                    notifications_t.c.id == outcome.id,
                    notifications_t.c.state == "sending",
                    notifications_t.c.claimed_by == worker,
                )
                .values(**values)
            )
            done += result.rowcount or 0
    return done


async def recover(store: Store, *, now: datetime, resend: Mapping[str, bool]) -> dict[str, int]:
    """Resolve sends whose lease ran out (the process died mid-send): queued again for the
    notifiers in ``resend`` marked True, held for ``review`` for the others."""
    counts = {"queued": 0, "review": 0}
    expired = and_(notifications_t.c.state == "sending", notifications_t.c.lease_until < now)
    again = [name for name, yes in resend.items() if yes]
    async with store.write() as conn:
        if again:
            result = await conn.execute(
                update(notifications_t)
                .where(expired, notifications_t.c.notifier.in_(again))
                .values(state="queued", claimed_by=None, lease_until=None, due_at=now)
            )
            counts["queued"] = result.rowcount or 0
        result = await conn.execute(
            update(notifications_t)
            .where(expired, notifications_t.c.notifier.not_in(again) if again else expired)
            .values(state="review", claimed_by=None, lease_until=None, last_error=INTERRUPTED)
        )
        counts["review"] = result.rowcount or 0
    return counts


async def listing(
    store: Store, *, states: Iterable[str] | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest notifications, optionally only in ``states``."""
    query = select(notifications_t).order_by(notifications_t.c.id.desc()).limit(limit)
    if states:
        query = query.where(notifications_t.c.state.in_(list(states)))
    async with store.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def counts(store: Store) -> dict[str, int]:
    async with store.read() as conn:
        rows = await conn.execute(
            select(notifications_t.c.state, func.count()).group_by(notifications_t.c.state)
        )
        return dict(rows.all())


async def retry(store: Store, notification_id: int, *, now: datetime) -> str | None:
    """Send a failed or held notification again, now. Returns its state before, or None if
    there is no such notification; a queued, sending or sent one is left as it is."""
    async with store.write() as conn:
        state = (
            await conn.execute(
                select(notifications_t.c.state).where(notifications_t.c.id == notification_id)
            )
        ).scalar_one_or_none()
        if state in ("failed", "review"):
            await conn.execute(
                update(notifications_t)
                .where(
                    notifications_t.c.id == notification_id,
                    or_(notifications_t.c.state == "failed", notifications_t.c.state == "review"),
                )
                .values(state="queued", due_at=now, last_error=None, attempts=0)
            )
    return state


async def destinations(store: Store) -> list[dict[str, Any]]:
    """Each notifier's destinations (a chat, a mailbox, a webhook endpoint) with their last
    delivery and what has waited or failed since: which ones are in trouble."""
    t = notifications_t
    async with store.read() as conn:
        last_sent = {
            (notifier, address): sent
            for notifier, address, sent in await conn.execute(
                select(t.c.notifier, t.c.address, func.max(t.c.sent_at))
                .where(t.c.state == "sent")
                .group_by(t.c.notifier, t.c.address)
            )
        }
        rows = await conn.execute(
            select(
                t.c.notifier,
                t.c.address,
                t.c.state,
                func.count(),
                func.min(t.c.created_at),
                func.max(t.c.id),
            )
            .where(t.c.state != "sent")
            .group_by(t.c.notifier, t.c.address, t.c.state)
        )
        unsent: dict[tuple[str, str], dict[str, Any]] = {}
        newest: dict[tuple[str, str], int] = {}
        for notifier, address, state, n, oldest, top in rows:
            entry = unsent.setdefault((notifier, address), {"oldest_unsent": oldest})
            entry[state] = n
            entry["oldest_unsent"] = min(entry["oldest_unsent"], oldest)
            if state in ("failed", "queued", "review"):
                newest[(notifier, address)] = max(newest.get((notifier, address), 0), top)
        errors = (
            dict(
                (
                    await conn.execute(
                        select(t.c.id, t.c.last_error).where(t.c.id.in_(newest.values()))
                    )
                ).all()
            )
            if newest
            else {}
        )
    out = []
    for key in sorted(set(last_sent) | set(unsent)):
        entry = unsent.get(key, {})
        out.append(
            {
                "notifier": key[0],
                "address": key[1],
                "last_sent": last_sent.get(key),
                "queued": entry.get("queued", 0) + entry.get("sending", 0),
                "failed": entry.get("failed", 0),
                "review": entry.get("review", 0),
                "oldest_unsent": entry.get("oldest_unsent"),
                "last_error": errors.get(newest.get(key)),
            }
        )
    return out
