"""The writer's part for deals: created, moved, edited, given, closed, reopened."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, update

from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals.batch import (
    Batch,
    active_users,
    contacts_t,
    deal_of,
    deals_t,
    history_t,
    insert_rows,
    ref,
)
from hub.domain.lead import UTM_FIELDS
from hub.store.ops import allocate_ids


async def create_deals(batch: Batch, run: list[ch.CreateDeal]) -> None:
    ids = await allocate_ids(batch.conn, deals_t, len(run))
    rows, history = [], []
    now, user_id = batch.now, batch.actor.user_id
    for change, deal_id in zip(run, ids, strict=True):
        pipeline = batch.catalog.pipelines_by_id.get(change.pipeline_id)
        stage = batch.catalog.stages_by_id.get(change.stage_id)
        if (
            pipeline is None
            or stage is None
            or stage.id not in {s.id for s in pipeline.stages.values()}
        ):
            batch.refuse(change, "the pipeline has no such stage", "stage")
            continue
        change.id = deal_id
        contact_id = ref(change.contact)
        company_id = ref(change.company)
        rows.append(
            {
                "id": deal_id,
                "title": change.title[:300],
                "pipeline_id": change.pipeline_id,
                "stage_id": change.stage_id,
                "contact_id": contact_id,
                "company_id": company_id,
                "owner_id": change.owner_id,
                "amount": change.amount,
                "currency": change.currency,
                "source": change.source,
                "segment": change.segment,
                "status": "open",
                "loss_reason": None,
                "competitor": None,
                "custom": change.custom,
                "inbox_id": change.inbox_id,
                "created_at": now,
                "updated_at": now,
                "stage_entered_at": now,
                "closed_at": None,
                **{name: change.utm.get(name) for name in UTM_FIELDS},
            }
        )
        history.append(
            {
                "deal_id": deal_id,
                "from_stage_id": None,
                "to_stage_id": change.stage_id,
                "user_id": user_id,
                "changed_at": now,
                "override": None,
            }
        )
        batch.events.append(
            ev.DealCreated(
                subject_id=deal_id,
                title=change.title,
                pipeline=pipeline.key,
                stage=stage.key,
                owner_id=change.owner_id,
                contact_id=contact_id,
                company_id=company_id,
                amount=change.amount,
                source=change.source,
                channel=change.channel,
                lead_id=change.inbox_id,
            )
        )
    if rows:
        await insert_rows(batch.conn, deals_t, rows)
        await insert_rows(batch.conn, history_t, history)


async def _set_deals(
    batch: Batch, params: list[dict[str, Any]], history: list[dict[str, Any]]
) -> None:
    """Write deal updates, grouped by the columns they set."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in params:
        groups.setdefault(tuple(sorted(k for k in values if k != "deal_id")), []).append(values)
    for names, rows in groups.items():
        await batch.conn.execute(
            update(deals_t)
            .where(deals_t.c.id == bindparam("deal_id"))
            .values(updated_at=batch.now, **{n: bindparam(n) for n in names}),
            rows,
        )
    if history:
        await insert_rows(batch.conn, history_t, history)


def _history(
    batch: Batch, deal_id: int, from_stage: int, to_stage: int, override: str | None = None
) -> dict[str, Any]:
    return {
        "deal_id": deal_id,
        "from_stage_id": from_stage,
        "to_stage_id": to_stage,
        "user_id": batch.actor.user_id,
        "changed_at": batch.now,
        "override": override,
    }


async def reopen(batch: Batch, run: list[ch.Reopen]) -> None:
    params, history = [], []
    owners = await active_users(
        batch, (c.owner_id for c in run if not isinstance(c.owner_id, ch._Unset))
    )
    for change in run:
        deal = await deal_of(batch, change.deal)
        pipeline = batch.pipeline(deal["pipeline_id"])
        if deal["status"] == "open":
            batch.refuse(change, f"deal {deal['id']} is open, there is nothing to reopen")
            continue
        stage = pipeline.stages.get(change.stage) if change.stage else pipeline.entry_stage
        if stage is None or stage.kind != "open":
            batch.refuse(change, f"pipeline {pipeline.name!r} has no open stage {change.stage!r}")
            continue
        values: dict[str, Any] = {
            "deal_id": deal["id"],
            "status": "open",
            "stage_id": stage.id,
            "stage_entered_at": batch.now,
            "closed_at": None,
            "loss_reason": None,
            "competitor": None,
        }
        if not isinstance(change.owner_id, ch._Unset):
            if change.owner_id is not None and change.owner_id not in owners:
                batch.refuse(change, f"no active user {change.owner_id}", "owner")
                continue
            values["owner_id"] = change.owner_id
        from_stage = batch.stage(deal["stage_id"])
        history.append(_history(batch, deal["id"], from_stage.id, stage.id))
        params.append(values)
        deal.update({k: v for k, v in values.items() if k != "deal_id"})
        batch.events.append(
            ev.DealReopened(
                subject_id=deal["id"],
                pipeline=pipeline.key,
                from_stage=from_stage.key,
                to_stage=stage.key,
                owner_id=deal["owner_id"],
                lead_id=change.inbox_id,
                channel=change.channel,
            )
        )
    await _set_deals(batch, params, history)


async def move_stage(batch: Batch, run: list[ch.MoveStage]) -> None:
    params, history = [], []
    for change in run:
        deal = await deal_of(batch, change.deal)
        pipeline = batch.pipeline(deal["pipeline_id"])
        stage = pipeline.stages.get(change.stage)
        if stage is None:
            batch.refuse(
                change, f"pipeline {pipeline.name!r} has no stage {change.stage!r}", "stage"
            )
            continue
        if deal["status"] != "open":
            batch.refuse(change, f"deal {deal['id']} is closed; reopen it first", "stage")
            continue
        if stage.kind != "open":
            verb = "won" if stage.kind == "won" else "lost"
            batch.refuse(change, f"a deal is closed as {verb} with its own action", "stage")
            continue
        if stage.id == deal["stage_id"]:
            batch.refuse(change, f"the deal is already at stage {stage.name!r}", "stage")
            continue
        from_stage = batch.stage(deal["stage_id"])
        params.append({"deal_id": deal["id"], "stage_id": stage.id, "stage_entered_at": batch.now})
        history.append(_history(batch, deal["id"], from_stage.id, stage.id, change.override))
        deal.update(stage_id=stage.id, stage_entered_at=batch.now)
        batch.events.append(
            ev.DealStageChanged(
                subject_id=deal["id"],
                pipeline=pipeline.key,
                from_stage=from_stage.key,
                to_stage=stage.key,
                owner_id=deal["owner_id"],
                override=change.override,
            )
        )
    await _set_deals(batch, params, history)


_DEAL_FIELDS = ("title", "amount", "currency", "segment")


async def set_deal_fields(batch: Batch, run: list[ch.SetDealFields]) -> None:
    params = []
    for change in run:
        deal = await deal_of(batch, change.deal)
        changed: dict[str, Any] = {}
        for name in _DEAL_FIELDS:
            value = getattr(change, name)
            if not isinstance(value, ch._Unset) and value != deal[name]:
                changed[name] = value
        if not isinstance(change.custom, ch._Unset):
            custom = dict(deal["custom"] or {})
            for key, value in change.custom.items():
                if value is None:
                    custom.pop(key, None)
                else:
                    custom[key] = value
            if custom != (deal["custom"] or {}):
                changed["custom"] = custom
        if changed:
            params.append({"deal_id": deal["id"], **changed})
            deal.update(changed)
        batch.events.append(ev.DealUpdated(subject_id=deal["id"], changed=changed))
    await _set_deals(batch, params, [])


async def assign_owner(batch: Batch, run: list[ch.AssignOwner]) -> None:
    params, contacts = [], []
    owners = await active_users(batch, (c.owner_id for c in run))
    for change in run:
        deal = await deal_of(batch, change.deal)
        if change.owner_id is not None and change.owner_id not in owners:
            batch.refuse(change, f"no active user {change.owner_id} to own the deal", "owner")
            continue
        before = deal["owner_id"]
        params.append({"deal_id": deal["id"], "owner_id": change.owner_id})
        if change.with_contact and deal["contact_id"] is not None:
            contacts.append({"contact_id": deal["contact_id"], "owner": change.owner_id})
        deal["owner_id"] = change.owner_id
        batch.events.append(
            ev.DealOwnerChanged(
                subject_id=deal["id"], from_owner_id=before, to_owner_id=change.owner_id
            )
        )
    await _set_deals(batch, params, [])
    if contacts:
        await batch.conn.execute(
            update(contacts_t)
            .where(contacts_t.c.id == bindparam("contact_id"))
            .values(owner_id=bindparam("owner"), updated_at=batch.now),
            contacts,
        )


async def close_won(batch: Batch, run: list[ch.CloseWon]) -> None:
    def values(change: ch.CloseWon) -> dict[str, Any]:
        return {} if isinstance(change.amount, ch._Unset) else {"amount": change.amount}

    def event(change: ch.CloseWon, deal: dict[str, Any], moved: dict[str, str]) -> ev.Event:
        return ev.DealWon(
            **moved,
            amount=deal["amount"],
            currency=deal["currency"],
            owner_id=deal["owner_id"],
            override=change.override,
        )

    await _close(batch, run, "won", values, event)


async def close_lost(batch: Batch, run: list[ch.CloseLost]) -> None:
    def values(change: ch.CloseLost) -> dict[str, Any]:
        return {"loss_reason": change.reason, "competitor": change.competitor}

    def event(change: ch.CloseLost, deal: dict[str, Any], moved: dict[str, str]) -> ev.Event:
        return ev.DealLost(
            **moved,
            reason=change.reason,
            competitor=change.competitor,
            owner_id=deal["owner_id"],
            override=change.override,
        )

    await _close(batch, run, "lost", values, event)


async def _close(batch: Batch, run: list[Any], kind: str, values: Any, event: Any) -> None:
    """Close each deal of ``run`` at its pipeline's ``kind`` (won or lost) stage."""
    params, history = [], []
    for change in run:
        deal = await deal_of(batch, change.deal)
        pipeline = batch.pipeline(deal["pipeline_id"])
        if deal["status"] != "open":
            batch.refuse(change, f"deal {deal['id']} is already closed ({deal['status']})")
            continue
        stage = next((s for s in pipeline.stages.values() if s.kind == kind), None)
        if stage is None:
            batch.refuse(change, f"pipeline {pipeline.name!r} has no {kind} stage")
            continue
        update_values = {
            "status": kind,
            "stage_id": stage.id,
            "stage_entered_at": batch.now,
            "closed_at": batch.now,
            **values(change),
        }
        from_stage = batch.stage(deal["stage_id"])
        history.append(_history(batch, deal["id"], from_stage.id, stage.id, change.override))
        params.append({"deal_id": deal["id"], **update_values})
        deal.update(update_values)
        moved = {
            "subject_id": deal["id"],
            "pipeline": pipeline.key,
            "from_stage": from_stage.key,
            "stage": stage.key,
        }
        batch.events.append(event(change, deal, moved))
    await _set_deals(batch, params, history)


async def repeat_inquiry(batch: Batch, run: list[ch.RepeatInquiry]) -> None:
    # Writes no row of its own: the request is the activity logged beside it.
    for change in run:
        if isinstance(change.deal, ch.CreateDeal):  # created earlier in this batch
            owner_id, contact_id = change.deal.owner_id, ref(change.deal.contact)
        else:
            deal = await deal_of(batch, change.deal)
            owner_id, contact_id = deal["owner_id"], deal["contact_id"]
        batch.events.append(
            ev.DealRepeatInquiry(
                subject_id=ref(change.deal),
                owner_id=owner_id,
                contact_id=contact_id,
                lead_id=change.inbox_id,
                channel=change.channel,
            )
        )
