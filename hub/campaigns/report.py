"""What a campaign came to: delivery, cost, opt-outs, and the deals of its recipients.

A deal counts for the campaign when its recipient created it, reopened it or won it
within ``attribution_days`` after their own message was sent (the outbox row is the
link from the contact to the campaign). Every figure is one aggregate query over the
campaign's outbox, however many recipients it had.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, and_, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.models import CampaignMessage, Consent, Deal, DomainEvent

messages_t = CampaignMessage.__table__
deals_t = Deal.__table__
consents_t = Consent.__table__
events_t = DomainEvent.__table__

TOP_FAILURES = 10


def _within(conn: AsyncConnection, when: Any, sent_at: Any, days: int) -> ColumnElement[bool]:
    """``when`` falls in the ``days`` after ``sent_at``."""
    if conn.dialect.name == "sqlite":
        # Stored as ISO text: datetime() shifts it, and the texts compare in time order.
        until = func.strftime("%Y-%m-%d %H:%M:%f", sent_at, f"+{days} days")
    else:
        until = sent_at + literal(timedelta(days=days), Interval())
    return and_(when >= sent_at, when <= until)


async def figures(conn: AsyncConnection, campaign: dict[str, Any], days: int) -> dict[str, Any]:
    m, d = messages_t.c, deals_t.c
    mine = m.campaign_id == campaign["id"]
    sent = (
        await conn.execute(
            select(
                func.count(m.sent_at),
                func.coalesce(func.sum(m.parts), 0),
                func.sum(m.cost),
            ).where(mine)
        )
    ).one()
    failures = (
        await conn.execute(
            select(m.error, func.count())
            .where(mine, m.state == "failed")
            .group_by(m.error)
            .order_by(func.count().desc())
            .limit(TOP_FAILURES)
        )
    ).all()
    reached = [mine, m.sent_at.is_not(None)]
    opted_out = (
        await conn.execute(
            select(func.count(func.distinct(m.contact_id))).where(
                *reached,
                consents_t.c.contact_id == m.contact_id,
                consents_t.c.channel == campaign["channel"],
                consents_t.c.granted.is_(False),
                consents_t.c.recorded_at >= m.sent_at,
            )
        )
    ).scalar_one()
    theirs = [*reached, d.contact_id == m.contact_id]
    created = (
        await conn.execute(
            select(func.count(func.distinct(d.id))).where(
                *theirs, _within(conn, d.created_at, m.sent_at, days)
            )
        )
    ).scalar_one()
    reopened = (
        await conn.execute(
            select(func.count(func.distinct(d.id))).where(
                *theirs,
                events_t.c.type == "deal.reopened",
                events_t.c.subject == "deal",
                events_t.c.subject_id == d.id,
                _within(conn, events_t.c.occurred_at, m.sent_at, days),
            )
        )
    ).scalar_one()
    won_count, won_amount = (
        await conn.execute(
            select(func.count(func.distinct(d.id)), func.coalesce(func.sum(d.amount), 0)).where(
                *theirs, d.status == "won", _within(conn, d.closed_at, m.sent_at, days)
            )
        )
    ).one()
    return {
        "sent": sent[0],
        "sms_parts": sent[1] if campaign["channel"] == "sms" else None,
        "cost": sent[2],
        "failures": {error or "": count for error, count in failures},
        "opted_out": opted_out,
        "attribution_days": days,
        "deals_created": created,
        "deals_reopened": reopened,
        "deals_won": won_count,
        "won_amount": won_amount,
    }
