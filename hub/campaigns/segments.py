"""Segments: saved filters over contacts and their deals, compiled to one SQL query.

A segment is written in the config (``[segments.wholesale_samara]``) or sent to the
API as the same structure: every field given narrows it (AND), a list means any of
its values (OR). :func:`contact_ids` turns it into one ``SELECT contacts.id ...``
with ``EXISTS`` subqueries, which the campaign outbox and the preview run inside the
store: contacts are never loaded into Python to be filtered.

=====================  ================================================================
segments               the contact's segment tag is one of these ("опт", "розница")
cities                 the contact's city (case does not matter)
companies              the name of the contact's company
sources                the contact has a deal from one of these sources ("Сайт", "Email")
owners                 the contact is owned by one of these users (emails)
pipeline, stages       the contact has an open deal in this pipeline, at one of these stages
won_since, won_until   the contact has a deal won in this period (dates, inclusive)
won_amount_min         deals won (in the period, if given) add up to at least this
active_since           an activity (call, mail, form) on or after this date
inactive_since         no activity on or after this date (clients to wake up)
has_phone, has_email   the contact has (true) or lacks (false) a phone / an email
consent                the contact agreed to advertising on this channel (sms | email)
=====================  ================================================================
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, or_, select

from hub.campaigns.audience import Audience
from hub.store.models import Activity, Company, Consent, Contact, ContactPoint, Deal
from hub.store.ops import Catalog

contacts_t = Contact.__table__
points_t = ContactPoint.__table__
deals_t = Deal.__table__
companies_t = Company.__table__
activities_t = Activity.__table__
consents_t = Consent.__table__


class UnknownInSegment(ValueError):
    """The segment names a pipeline, stage or user the hub does not have."""


def spellings(values: list[str]) -> list[str]:
    """How people type a city or a name: "самара" also finds "Самара" and "САМАРА".
    (SQLite's lower() knows only ASCII, so the case is not folded in the store.)"""
    found = set()
    for value in values:
        value = " ".join(value.split())
        found.update({value, value.lower(), value.upper(), value.capitalize(), value.title()})
    return sorted(found)


def _day_start(day: date, zone: Any) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def contact_ids(audience: Audience, catalog: Catalog, *, zone: Any = UTC) -> Select[Any]:
    """``SELECT contacts.id`` of everyone in ``audience``; dates are days in ``zone``."""
    where: list[ColumnElement[bool]] = []
    c = contacts_t.c
    if audience.segments:
        where.append(c.segment.in_(audience.segments))
    if audience.cities:
        where.append(c.city.in_(spellings(audience.cities)))
    if audience.companies:
        names = [name.lower() for name in audience.companies]
        where.append(
            exists().where(
                companies_t.c.id == c.company_id, func.lower(companies_t.c.name).in_(names)
            )
        )
    if audience.owners:
        ids = []
        for email in audience.owners:
            user_id = catalog.user_ids.get(email.lower())
            if user_id is None:
                raise UnknownInSegment(f"owners: no user {email}")
            ids.append(user_id)
        where.append(c.owner_id.in_(ids))
    deal = deals_t.c
    if audience.sources:
        where.append(exists().where(deal.contact_id == c.id, deal.source.in_(audience.sources)))
    if audience.pipeline is not None:
        pipeline = catalog.pipelines.get(audience.pipeline)
        if pipeline is None:
            raise UnknownInSegment(f"pipeline: no pipeline {audience.pipeline}")
        open_deal = [
            deal.contact_id == c.id,
            deal.status == "open",
            deal.pipeline_id == pipeline.id,
        ]
        if audience.stages:
            stage_ids = []
            for key in audience.stages:
                stage = pipeline.stages.get(key)
                if stage is None:
                    raise UnknownInSegment(f"stages: {audience.pipeline} has no stage {key}")
                stage_ids.append(stage.id)
            open_deal.append(deal.stage_id.in_(stage_ids))
        where.append(exists().where(*open_deal))
    won_period: list[ColumnElement[bool]] = []
    if audience.won_since is not None:
        won_period.append(deal.closed_at >= _day_start(audience.won_since, zone))
    if audience.won_until is not None:
        won_period.append(deal.closed_at < _day_start(audience.won_until + timedelta(days=1), zone))
    if audience.won_amount_min is not None:
        total = (
            select(func.coalesce(func.sum(deal.amount), 0))
            .where(deal.contact_id == c.id, deal.status == "won", *won_period)
            .scalar_subquery()
        )
        where.append(total >= audience.won_amount_min)
    elif won_period:
        where.append(exists().where(deal.contact_id == c.id, deal.status == "won", *won_period))
    act = activities_t.c
    if audience.active_since is not None:
        where.append(
            exists().where(
                act.contact_id == c.id, act.occurred_at >= _day_start(audience.active_since, zone)
            )
        )
    if audience.inactive_since is not None:
        where.append(
            not_(
                exists().where(
                    act.contact_id == c.id,
                    act.occurred_at >= _day_start(audience.inactive_since, zone),
                )
            )
        )
    for kind, wanted in (("phone", audience.has_phone), ("email", audience.has_email)):
        if wanted is None:
            continue
        has = exists().where(points_t.c.contact_id == c.id, points_t.c.kind == kind)
        where.append(has if wanted else not_(has))
    if audience.consent is not None:
        where.append(agreed(audience.consent))
    return select(c.id).where(and_(*where) if where else True)


def agreed(channel: str) -> ColumnElement[bool]:
    """The contact agreed to advertising on ``channel`` and has not withdrawn it."""
    return exists().where(
        consents_t.c.contact_id == contacts_t.c.id,
        consents_t.c.channel == channel,
        consents_t.c.granted.is_(True),
    )


def withdrew(channel: str) -> ColumnElement[bool]:
    """The contact opted out of ``channel`` (an unsubscribe, a STOP, a hard bounce)."""
    return exists().where(
        consents_t.c.contact_id == contacts_t.c.id,
        consents_t.c.channel == channel,
        consents_t.c.granted.is_(False),
    )


def either(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return or_(*conditions)
