"""The deal store's one writer: guards see every batch, every change has its event, and a
refused or interrupted batch leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.context import Hub
from hub.deals import SYSTEM, Actor, NotFound, Refusal, Refused
from hub.deals import changes as ch
from hub.deals import events as ev
from hub.domain.normalize import phone_point
from hub.hookspecs import hookimpl
from hub.store.models import Base, Contact, Deal, DomainEvent, Task, User
from hub.store.types import utcnow
from tests.conftest import make_hub, make_settings
from tests.test_plugins import plugins_section

ROOT = Path(__file__).resolve().parent.parent


class NoDealsOnFriday:
    """A company's own rule: a stage move needs a reason; a note must not shout."""

    def __init__(self, config: Any, hub: Hub) -> None:
        self.batches: list[tuple[list[str], str]] = []

    @hookimpl
    def hub_guard(self, changes, actor):  # type: ignore[no-untyped-def]
        self.batches.append(([c.kind for c in changes], actor.kind))
        for change in changes:
            if isinstance(change, ch.MoveStage) and not change.override:
                yield Refusal(change, "Этап «Договор» требует: сумма, дата договора", "stage")
            if isinstance(change, ch.AddNote) and change.body.isupper():
                yield Refusal(change, "Заметка не должна быть капслоком", "text")


async def _hub(store_url: str, **extra: Any) -> Hub:
    hub = make_hub(make_settings(store_url, **extra.pop("settings", {})), **extra)
    await hub.start()
    return hub


async def _deal(hub: Hub, actor: Actor = SYSTEM, owner: int | None = None) -> ch.CreateDeal:
    assert hub.catalog is not None
    pipeline = hub.catalog.pipelines["sales"]
    contact = ch.CreateContact(
        name="Ирина Волкова", owner_id=owner, points=[phone_point("+79125550102", "RU")]
    )
    deal = ch.CreateDeal(
        title="Поставка",
        pipeline_id=pipeline.id,
        stage_id=pipeline.entry_stage.id,
        contact=contact,
        owner_id=owner,
    )
    await hub.deals.apply([contact, deal], actor)
    return deal


async def _snapshot(hub: Hub) -> dict[str, int]:
    async with hub.store.read() as conn:
        return {
            t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one()
            for t in Base.metadata.sorted_tables
        }


async def test_hook_hub_guard_refusing_one_change_of_three_changes_nothing_and_gives_every_reason(
    store_url,
):
    hub = await _hub(
        store_url,
        settings=plugins_section("friday"),
        extra={"friday": NoDealsOnFriday},
    )
    try:
        deal = await _deal(hub)
        before = await _snapshot(hub)
        batch = [
            ch.AddNote(deal=deal.id, body="Клиент просит скидку"),
            ch.MoveStage(deal=deal.id, stage="proposal"),
            ch.AddNote(deal=deal.id, body="СРОЧНО"),
        ]
        with pytest.raises(Refused) as refused:
            await hub.deals.apply(batch, Actor.user(3, "olga@example.com", "head"))
        assert [r.reason for r in refused.value.refusals] == [
            "Этап «Договор» требует: сумма, дата договора",
            "Заметка не должна быть капслоком",
        ]
        assert {r.guard for r in refused.value.refusals} == {"friday"}
        assert await _snapshot(hub) == before
        guard = hub.plugins.records["friday"].instance
        assert guard.batches[-1] == (["add_note", "move_stage", "add_note"], "user")
        # With the reason the rule asks for, the same move goes through.
        await hub.deals.apply(
            [ch.MoveStage(deal=deal.id, stage="proposal", override="договор подписан")], SYSTEM
        )
    finally:
        await hub.stop()


async def test_the_lead_pipeline_is_guarded_too(aiohttp_client, store_url):
    from hub.app import build_app

    hub = make_hub(
        make_settings(store_url, **plugins_section("friday")), extra={"friday": NoDealsOnFriday}
    )
    client = await aiohttp_client(build_app(hub))
    response = await client.post("/forms/contact", data={"name": "Анна", "phone": "+79120000001"})
    assert response.status == 202
    guard = hub.plugins.records["friday"].instance
    for _ in range(200):
        if guard.batches:
            break
        await asyncio.sleep(0.05)
    kinds, actor = guard.batches[0]
    assert actor == "lead_pipeline"
    assert {"create_contact", "create_deal", "add_task", "record_lead"} <= set(kinds)


async def test_every_change_kind_writes_its_event_in_the_same_transaction(store_url):
    hub = await _hub(store_url)
    try:
        async with hub.store.read() as conn:
            anna = (
                await conn.execute(select(User.id).where(User.email == "anna@example.com"))
            ).scalar_one()
        assert hub.catalog is not None
        pipeline = hub.catalog.pipelines["sales"]
        company = ch.CreateCompany(name="ООО «Ромашка»", name_key="romashka", tax_id=None)
        contact = ch.CreateContact(
            name="Ирина", company=company, points=[phone_point("+79125550102", "RU")]
        )
        other = ch.CreateContact(name="Ирина В.", points=[phone_point("+79125550103", "RU")])
        deal = ch.CreateDeal(
            title="Плитка",
            pipeline_id=pipeline.id,
            stage_id=pipeline.entry_stage.id,
            contact=contact,
            owner_id=anna,
        )
        task = ch.AddTask(title="Позвонить", due_at=utcnow() + timedelta(hours=1), deal=deal)
        first = [
            company,
            contact,
            other,
            deal,
            task,
            ch.AddNote(deal=deal, body="Заметка"),
            ch.LogActivity(activity="call", summary="Звонок", deal=deal, result="ок"),
            ch.LogActivity(
                activity="call",
                summary="Пропущенный звонок",
                deal=deal,
                result="missed",
                payload={"call": {"number": "+79123456789", "extension": "101"}},
            ),
            ch.FlagDuplicate(
                contact=other, other=contact, score=0.8, reasons=["имя"], origin="scan"
            ),
            ch.RepeatInquiry(deal=deal),
            ch.RecordLead(
                inbox_id=1,
                channel="api",
                decision="new_contact",
                contact=contact,
                deal=deal,
                task=task,
                owner_id=anna,
                assigned_by="test",
            ),
        ]
        applied = await hub.deals.apply(first, SYSTEM)
        # One event per change, and the missed call's call.missed beside its activity.logged
        assert len(applied.events) == len(first) + 1
        assert deal.id is not None and task.id is not None
        talked = first[6]
        assert isinstance(talked, ch.LogActivity) and talked.id is not None
        recording = ch.AttachRecording(activity=talked.id, provider="zadarma", recording_id="1.2")
        await hub.deals.apply([recording], SYSTEM)
        second: list[ch.Change] = [
            ch.UpdateContact(contact=contact.id, city="Пермь"),  # type: ignore[arg-type]
            ch.MoveStage(deal=deal.id, stage="proposal"),
            ch.SetDealFields(deal=deal.id, amount=None, segment="опт"),
            ch.AssignOwner(deal=deal.id, owner_id=None),
            ch.RescheduleTask(task=task.id, due_at=utcnow() + timedelta(days=2)),
            ch.CompleteTask(task=task.id, result="готово"),
            ch.CloseWon(deal=deal.id),
            ch.Reopen(deal=deal.id),
            ch.CloseLost(deal=deal.id, reason="Дорого"),
        ]
        await hub.deals.apply(second, SYSTEM)
        async with hub.store.read() as conn:
            pair = (
                await conn.execute(
                    select(func.min(DomainEvent.subject_id)).where(
                        DomainEvent.type == "contact.possible_duplicate"
                    )
                )
            ).scalar_one()
        assert pair is not None
        async with hub.store.read() as conn:
            pair_id = (
                await conn.execute(
                    select(func.min(Base.metadata.tables["duplicate_candidates"].c.id))
                )
            ).scalar_one()
        merge = ch.MergeContacts(keep=contact.id, other=other.id)  # type: ignore[arg-type]
        await hub.deals.apply([ch.DismissDuplicate(pair_id=pair_id), merge], SYSTEM)
        await hub.deals.apply([ch.Unmerge(merge_id=merge.id)], SYSTEM)  # type: ignore[arg-type]
        found = ch.OpenViolation(
            rule="overdue_task",
            subject="task",
            subject_id=task.id,
            owner_id=anna,
            severity="red",
            detail="просрочена",
        )
        stale = ch.OpenViolation(
            rule="stage_expired",
            subject="deal",
            subject_id=deal.id,
            owner_id=anna,
            severity="red",
            detail="долго",
        )
        other_rule = ch.OpenViolation(
            rule="no_task",
            subject="deal",
            subject_id=deal.id,
            owner_id=anna,
            severity="red",
            detail="нет задачи",
        )
        await hub.deals.apply([found, stale, other_rule], SYSTEM)
        await hub.deals.apply(
            [
                ch.ResolveViolation(
                    violation_id=found.id, rule="overdue_task", subject="task", subject_id=task.id
                )
            ],  # type: ignore[arg-type]
            SYSTEM,
        )
        campaign = ch.CreateCampaign(
            name="Семинар",
            channel="sms",
            gateway="smsru",
            segment="all",
            audience={},
            text="Приглашаем на семинар",
        )
        await hub.deals.apply(
            [
                ch.SetConsent(contact=contact.id, channel="sms", granted=True, source="api"),
                ch.SetConsent(contact=other.id, channel="sms", granted=False, source="api"),
                campaign,
            ],  # type: ignore[arg-type]
            SYSTEM,
        )
        start = ch.StartCampaign(campaign_id=campaign.id, recipients=select(Contact.id))  # type: ignore[arg-type]
        await hub.deals.apply([start], SYSTEM)
        assert start.queued == 1
        await hub.deals.apply(
            [ch.SetCampaignState(campaign_id=campaign.id, state="paused")],  # type: ignore[arg-type]
            SYSTEM,
        )
        merge_co = ch.MergeCompanies(keep=company.id, other=company.id)  # type: ignore[arg-type]
        with pytest.raises(Refused, match="into itself"):
            await hub.deals.apply([merge_co], SYSTEM)
        async with hub.store.read() as conn:
            written = [
                (t, p)
                for t, p in await conn.execute(
                    select(DomainEvent.type, DomainEvent.payload).order_by(DomainEvent.id)
                )
            ]
        kinds = {t for t, _ in written}
        every = set(ev.EVENTS) - {"companies.merged", "companies.unmerged"}
        assert every <= kinds, every - kinds
        for event_type, payload in written:
            assert payload["v"] == ev.EVENTS[event_type].version
            assert payload["actor"] == {"kind": "system", "name": "hub", "user_id": None}
    finally:
        await hub.stop()


async def test_every_change_kind_has_a_writer_and_every_event_a_documented_section():
    from hub.deals.writer import _WRITERS

    assert set(_WRITERS) == set(ch.ALL)
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for event_type, cls in ev.EVENTS.items():
        assert f"`{event_type}`" in guide, f"docs/plugins.md does not list {event_type}"
        for name in cls.__dataclass_fields__:
            if name != "subject_id":
                assert name in guide, f"docs/plugins.md does not name {event_type}'s {name}"


async def test_a_manager_actor_cannot_touch_another_managers_deal_on_any_path(store_url):
    hub = await _hub(store_url)
    try:
        async with hub.store.read() as conn:
            users = dict((await conn.execute(select(User.email, User.id))).all())
        deal = await _deal(hub, owner=users["dmitry@example.com"])
        anna = Actor.user(users["anna@example.com"], "anna@example.com", "manager")
        for change in [
            ch.MoveStage(deal=deal.id, stage="proposal"),  # type: ignore[arg-type]
            ch.AddNote(deal=deal.id, body="x"),  # type: ignore[arg-type]
            ch.AddTask(title="x", due_at=utcnow(), deal=deal.id),  # type: ignore[arg-type]
        ]:
            with pytest.raises(NotFound):
                await hub.deals.apply([change], anna)
        async with hub.store.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(Task))).scalar_one() == 0
            assert (await conn.execute(select(Deal.stage_id))).scalar_one() == (
                hub.catalog.pipelines["sales"].entry_stage.id  # type: ignore[union-attr]
            )
    finally:
        await hub.stop()


KILLED_BEFORE_COMMIT = """
import asyncio, os, signal, sys
from hub.deals import SYSTEM
from hub.deals import writer as writer_module
from hub.deals.changes import AddNote
from tests.conftest import make_hub, make_settings

original = writer_module.DealWriter.apply_in

async def then_die(self, conn, changes, actor, now=None):
    applied = await original(self, conn, changes, actor, now)
    # Every statement of the batch has run; the transaction is not committed yet.
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    return applied

async def main():
    hub = make_hub(make_settings(sys.argv[1]))
    await hub.start()
    writer_module.DealWriter.apply_in = then_die
    await hub.deals.apply([AddNote(deal=int(sys.argv[2]), body="не дойдёт")], SYSTEM)

asyncio.run(main())
"""


async def test_a_process_killed_between_write_and_commit_leaves_neither_change_nor_event(
    store_url,
):
    hub = await _hub(store_url)
    try:
        deal = await _deal(hub)
    finally:
        await hub.stop()
    before = await _snapshot_of(store_url)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", textwrap.dedent(KILLED_BEFORE_COMMIT), store_url, str(deal.id)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -9, result.stderr[-2000:]
    assert "written" in result.stdout
    after = await _snapshot_of(store_url)
    assert after["notes"] == before["notes"] == 0
    assert after["domain_events"] == before["domain_events"]


async def _snapshot_of(store_url: str) -> dict[str, int]:
    hub = make_hub(make_settings(store_url))
    try:
        return await _snapshot(hub)
    finally:
        await hub.store.close()


async def test_a_repeat_in_the_same_batch_joins_the_deal_the_batch_creates(store_url):
    from hub.domain.lead import Lead
    from hub.leads import LeadPipeline

    hub = make_hub(make_settings(store_url), start_workers=False)
    await hub.start()
    try:
        assert hub.catalog is not None
        pipeline = LeadPipeline(hub.catalog, hub.settings, hub.reserve, hub.deals)
        now = utcnow()
        plans = [
            pipeline.plan(n, Lead(channel="webforms", name="Елена", phones=["+79260000000"]), now)
            for n in (1, 2)
        ]
        async with hub.store.write() as conn:
            results = await pipeline.run(conn, plans, now)
        assert [r["decision"] for r in results] == ["new_contact", "added_to_open_deal"]
        assert results[0]["deal_id"] == results[1]["deal_id"]
        async with hub.store.read() as conn:
            owner = (
                await conn.execute(
                    select(DomainEvent.payload).where(DomainEvent.type == "deal.repeat_inquiry")
                )
            ).scalar_one()["owner_id"]
        assert owner == results[0]["owner_id"] is not None
    finally:
        await hub.stop()
