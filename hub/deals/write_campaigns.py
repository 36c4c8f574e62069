"""The writer's part for consent and campaigns: the latest word on consent, a campaign's
draft and states, and its outbox written in one statement when it starts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    String,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    not_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.campaigns.outbox import FIRST_ASK
from hub.campaigns.segments import agreed, contacts_t, points_t, withdrew
from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals.batch import Batch, ref
from hub.store.models import Campaign, CampaignMessage, Consent
from hub.store.ops import allocate_ids, upsert

consents_t = Consent.__table__
campaigns_t = Campaign.__table__
messages_t = CampaignMessage.__table__

# Why a contact of the segment gets nothing, in the order they are checked.
SKIP_REASONS = ("opted_out", "no_consent", "no_address", "bouncing", "same_address")


async def set_consents(batch: Batch, run: list[ch.SetConsent]) -> None:
    """Record each contact's word per channel. The same word again (a re-import, a second
    form) changes nothing: the first record of it, with its source and time, stands."""
    contact_ids = sorted({cid for change in run if (cid := ref(change.contact)) is not None})
    known = {
        (contact_id, channel): granted
        for contact_id, channel, granted in await batch.conn.execute(
            select(consents_t.c.contact_id, consents_t.c.channel, consents_t.c.granted).where(
                consents_t.c.contact_id.in_(contact_ids)
            )
        )
    }
    latest: dict[tuple[int, str], ch.SetConsent] = {}
    for change in run:
        contact_id = ref(change.contact)
        assert contact_id is not None
        key = (contact_id, change.channel)
        if known.get(key) == change.granted:
            continue
        known[key] = change.granted
        latest[key] = change
        kind = ev.ConsentGiven if change.granted else ev.ConsentWithdrawn
        batch.events.append(
            kind(subject_id=contact_id, channel=change.channel, source=change.source)
        )
    rows = [
        {
            "contact_id": contact_id,
            "channel": channel,
            "granted": change.granted,
            "source": change.source[:100],
            "recorded_at": batch.now,
        }
        for (contact_id, channel), change in latest.items()
    ]
    await upsert(
        batch.conn,
        consents_t,
        rows,
        key=["contact_id", "channel"],
        update_columns=["granted", "source", "recorded_at"],
    )


async def create_campaigns(batch: Batch, run: list[ch.CreateCampaign]) -> None:
    taken = set(
        (
            await batch.conn.execute(
                select(campaigns_t.c.name).where(campaigns_t.c.name.in_([c.name for c in run]))
            )
        ).scalars()
    )
    for change in run:
        if change.name in taken:
            batch.refuse(change, f"кампания «{change.name}» уже есть", "name")
    if batch.refusals:
        return
    ids = await allocate_ids(batch.conn, campaigns_t, len(run))
    rows = []
    for change, campaign_id in zip(run, ids, strict=True):
        change.id = campaign_id
        rows.append(
            {
                "id": campaign_id,
                "name": change.name,
                "channel": change.channel,
                "gateway": change.gateway,
                "segment": change.segment,
                "audience": change.audience,
                "subject": change.subject,
                "text": change.text,
                "html": change.html,
                "service": change.service,
                "rate": change.rate,
                "quiet_hours": change.quiet_hours,
                "start_at": change.start_at,
                "state": "draft",
                "created_by": f"{batch.actor.kind}:{batch.actor.name}"[:100],
                "created_at": batch.now,
            }
        )
        batch.events.append(
            ev.CampaignCreated(
                subject_id=campaign_id,
                name=change.name,
                channel=change.channel,
                segment=change.segment,
                service=change.service,
            )
        )
    await batch.conn.execute(insert(campaigns_t), rows)


async def _campaign(batch: Batch, change: ch.Change, campaign_id: int) -> dict[str, Any] | None:
    row = (
        await batch.conn.execute(select(campaigns_t).where(campaigns_t.c.id == campaign_id))
    ).first()
    if row is None:
        batch.refuse(change, f"нет кампании {campaign_id}", "campaign_id")
        return None
    return row._asdict()


async def start_campaigns(batch: Batch, run: list[ch.StartCampaign]) -> None:
    for change in run:
        campaign = await _campaign(batch, change, change.campaign_id)
        if campaign is None:
            continue
        if campaign["state"] != "draft":
            batch.refuse(change, f"кампания уже запущена ({campaign['state']})", "state")
            continue
        await batch.conn.execute(_outbox(batch, campaign, change.recipients))
        counts = await batch.conn.execute(
            select(messages_t.c.skip_reason, func.count())
            .where(messages_t.c.campaign_id == campaign["id"])
            .group_by(messages_t.c.skip_reason)
        )
        for reason, count in counts.all():
            if reason is None:
                change.queued = count
            else:
                change.skipped[reason] = count
        await batch.conn.execute(
            update(campaigns_t)
            .where(campaigns_t.c.id == campaign["id"])
            .values(state="running", started_at=batch.now)
        )
        batch.events.append(
            ev.CampaignStarted(
                subject_id=campaign["id"], queued=change.queued, skipped=dict(change.skipped)
            )
        )


def _outbox(batch: Batch, campaign: dict[str, Any], recipients: Any) -> Any:
    """``INSERT INTO campaign_messages SELECT ...``: every contact of the segment, with its
    address, its idempotency key and, for those it must not reach, why."""
    channel = campaign["channel"]
    kind = "phone" if channel == "sms" else "email"
    c = contacts_t.c
    address = (
        select(points_t.c.normalized)
        .where(points_t.c.contact_id == c.id, points_t.c.kind == kind)
        .order_by(points_t.c.id)
        .limit(1)
        .scalar_subquery()
    )
    people = (
        select(
            c.id.label("contact_id"),
            address.label("address"),
            withdrew(channel).label("opted_out"),
            agreed(channel).label("agreed"),
            c.custom.label("custom"),
        )
        .where(c.id.in_(recipients))
        .subquery("people")
    )
    p = people.c
    bounced = _bouncing(batch, p.custom, p.address) if channel == "email" else literal(False)
    checks = [(p.opted_out, "opted_out")]
    if not campaign["service"]:
        checks.append((not_(p.agreed), "no_consent"))
    checks += [(p.address.is_(None), "no_address"), (bounced, "bouncing")]
    checked = select(
        p.contact_id,
        p.address,
        case(*[(cond, literal(name)) for cond, name in checks], else_=None).label("reason"),
    ).subquery("checked")
    k = checked.c
    # The same address twice (a couple sharing a phone, a contact entered twice): the
    # oldest contact it may go to gets it, once.
    ranked = select(
        k.contact_id,
        k.address,
        k.reason,
        func.row_number()
        .over(partition_by=[k.address, k.reason], order_by=k.contact_id)
        .label("n"),
    ).subquery("ranked")
    r = ranked.c
    reason = case(
        (r.reason.is_not(None), r.reason),
        (r.n > 1, literal("same_address")),
        else_=None,
    )
    prefix = f"campaign:{campaign['id']}:contact:"
    rows = select(
        (literal(prefix) + cast(r.contact_id, String) + literal(f":{channel}")).label("key"),
        literal(campaign["id"]).label("campaign_id"),
        r.contact_id,
        literal(campaign["gateway"]).label("gateway"),
        r.address,
        case((reason.is_(None), literal("queued")), else_=literal("skipped")).label("state"),
        reason.label("skip_reason"),
        literal(0).label("attempts"),
        literal(max(campaign["start_at"] or batch.now, batch.now), messages_t.c.due_at.type).label(
            "due_at"
        ),
    ).where(text("1 = 1"))  # SQLite reads "SELECT ... ON CONFLICT" only after a WHERE
    columns = [
        "key",
        "campaign_id",
        "contact_id",
        "gateway",
        "address",
        "state",
        "skip_reason",
        "attempts",
        "due_at",
    ]
    dialect_insert = pg_insert if batch.conn.dialect.name == "postgresql" else sqlite_insert
    # A key already there (a start retried after a timeout) stays as it was.
    return dialect_insert(messages_t).from_select(columns, rows).on_conflict_do_nothing()


def _bouncing(batch: Batch, custom: Any, address: Any) -> Any:
    """The address is among the contact's ``bouncing_emails`` (set by a hard bounce)."""
    if batch.conn.dialect.name == "postgresql":
        # JSONB's ? operator: the array holds the address as one of its strings.
        emails = cast(custom, JSONB).op("->")(literal("bouncing_emails"))
        return emails.op("?", is_comparison=True)(address)
    each = func.json_each(custom, "$.bouncing_emails").table_valued("value")
    return exists().where(each.c.value == address)


async def set_campaign_states(batch: Batch, run: list[ch.SetCampaignState]) -> None:
    allowed = {
        "paused": {"running"},
        "running": {"paused"},
        "finished": {"running"},
        "cancelled": {"draft", "running", "paused"},
    }
    for change in run:
        campaign = await _campaign(batch, change, change.campaign_id)
        if campaign is None:
            continue
        if campaign["state"] not in allowed[change.state]:
            batch.refuse(
                change, f"кампания «{campaign['name']}» {campaign['state']}: нельзя {change.state}"
            )
            continue
        values: dict[str, Any] = {"state": change.state}
        if change.state in ("finished", "cancelled"):
            values["finished_at"] = batch.now
        await batch.conn.execute(
            update(campaigns_t).where(campaigns_t.c.id == campaign["id"]).values(**values)
        )
        if change.state == "cancelled":
            await batch.conn.execute(
                update(messages_t)
                .where(messages_t.c.campaign_id == campaign["id"], messages_t.c.state == "queued")
                .values(state="skipped", skip_reason="cancelled")
            )
        batch.events.append(
            ev.CampaignStateChanged(
                subject_id=campaign["id"], state=change.state, was=campaign["state"]
            )
        )


async def settle_held(batch: Batch, run: list[ch.SettleHeldMessages]) -> None:
    for change in run:
        campaign = await _campaign(batch, change, change.campaign_id)
        if campaign is None:
            continue
        where = [messages_t.c.campaign_id == campaign["id"], messages_t.c.state == "review"]
        if change.message_ids is not None:
            where.append(messages_t.c.id.in_(change.message_ids))
        if change.resend:
            values: dict[str, Any] = {"state": "queued", "due_at": batch.now, "error": None}
        else:
            values = {
                "state": "sent",
                "sent_at": batch.now,
                "due_at": batch.now + FIRST_ASK,
                "error": "отмечено отправленным вручную",
            }
        rows = await batch.conn.execute(
            update(messages_t)
            .where(*where)
            .values(claimed_by=None, lease_until=None, **values)
            .returning(messages_t.c.id)
        )
        change.settled = sorted(rows.scalars())
        if not change.settled:
            continue
        batch.events.append(
            ev.CampaignHeldSettled(
                subject_id=campaign["id"], messages=len(change.settled), resend=change.resend
            )
        )
        if change.resend and campaign["state"] == "finished":
            await batch.conn.execute(
                update(campaigns_t)
                .where(campaigns_t.c.id == campaign["id"])
                .values(state="running", finished_at=None)
            )
            batch.events.append(
                ev.CampaignStateChanged(subject_id=campaign["id"], state="running", was="finished")
            )
