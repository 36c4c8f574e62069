"""A stage's actions on enter (``on_enter`` in the pipeline config): entering a stage closes
the deal's open tasks, gives its owner a task due in their working time and tells people,
by any path that moves the deal, in the move's transaction."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from hub.context import Hub
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.domain.normalize import email_point
from hub.store.models import Deal, DomainEvent
from hub.store.types import utcnow
from tests.test_stage_rules import a_deal
from tests.test_triggers import EXAMPLE, deal_row, outbox, stage_of, started, tasks_of


def pipelines_with(**on_enter: list[dict[str, Any]]) -> dict[str, Any]:
    """The example pipelines with ``on_enter`` actions on sales stages (by stage key)."""
    pipelines = copy.deepcopy(EXAMPLE["pipelines"])
    for stage in pipelines["sales"]["stages"]:
        if stage["key"] in on_enter:
            stage["on_enter"] = on_enter[stage["key"]]
    return pipelines


PROPOSAL = pipelines_with(
    proposal=[{"close_tasks": True}, {"task": "Отправить КП клиенту", "due": "1h"}]
)


async def move_at(hub: Hub, moment: datetime, changes: list[ch.Change]) -> None:
    async with hub.store.write() as conn:
        await hub.deals.apply_in(conn, changes, SYSTEM, moment)


async def test_entering_a_stage_closes_open_tasks_and_sets_a_task_due_in_working_time(store_url):
    hub = await started(store_url, pipelines=PROPOSAL)
    try:
        deal = await a_deal(hub, amount=240000)
        (call,) = await tasks_of(hub, deal)
        # Wednesday 17:30 in Moscow; anna works 09:00-18:00: half an hour today is left,
        # so an hour's task is due at 09:30 on Thursday.
        await move_at(
            hub,
            datetime(2026, 11, 25, 14, 30, tzinfo=UTC),
            [ch.MoveStage(deal=deal, stage="proposal")],
        )
        closed, new = await tasks_of(hub, deal)
        assert closed["id"] == call["id"]
        assert closed["done_at"] == datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
        assert closed["result"] == "Закрыта автоматически: сделка перешла на этап «Направить КП»"
        assert new["title"] == "Отправить КП клиенту"
        assert new["done_at"] is None
        assert new["owner_id"] == (await deal_row(hub, deal))["owner_id"]
        assert new["due_at"] == datetime(2026, 11, 26, 6, 30, tzinfo=UTC)  # 09:30 Moscow
        async with hub.store.read() as conn:
            created = (
                await conn.execute(
                    select(DomainEvent.payload)
                    .where(DomainEvent.type == "task.created")
                    .order_by(DomainEvent.id.desc())
                )
            ).first()
        assert created is not None
        assert created[0]["actor"]["name"] == "stage:sales.proposal"
    finally:
        await hub.stop()


async def test_a_friday_evening_move_is_due_on_monday_morning(store_url):
    hub = await started(store_url, pipelines=PROPOSAL)
    try:
        deal = await a_deal(hub, amount=240000)
        friday = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)  # 17:30 Moscow
        await move_at(hub, friday, [ch.MoveStage(deal=deal, stage="proposal")])
        new = (await tasks_of(hub, deal))[-1]
        assert new["due_at"] == datetime(2026, 11, 30, 6, 30, tzinfo=UTC)  # Monday 09:30
    finally:
        await hub.stop()


async def test_a_task_added_with_the_move_stays_open(store_url):
    hub = await started(store_url, pipelines=PROPOSAL)
    try:
        deal = await a_deal(hub, amount=240000)
        mine = ch.AddTask(title="Согласовать скидку", due_at=utcnow(), deal=deal)
        await hub.deals.apply([mine, ch.MoveStage(deal=deal, stage="proposal")], SYSTEM)
        tasks = {t["title"]: t for t in await tasks_of(hub, deal)}
        assert tasks["Позвонить"]["done_at"] is not None
        assert tasks["Согласовать скидку"]["done_at"] is None
        assert tasks["Отправить КП клиенту"]["done_at"] is None
    finally:
        await hub.stop()


async def test_a_deal_entering_the_contract_stage_queues_a_message_to_the_head(store_url):
    pipelines = pipelines_with(contract=[{"notify": ["head"], "via": ["pager"]}])
    hub = await started(store_url, pipelines=pipelines)
    try:
        deal = await a_deal(hub, amount=750000, segment="Опт")
        async with hub.store.read() as conn:
            contact = (await conn.execute(select(Deal.contact_id).where(Deal.id == deal))).scalar()
        await hub.deals.apply(
            [
                ch.UpdateContact(contact=contact, add_points=[email_point("irina@romashka.ru")]),
                ch.SetDealFields(deal=deal, custom={"contract_date": "2026-12-01"}),
                *(ch.MoveStage(deal=deal, stage=s) for s in ("qualified", "proposal")),
            ],
            SYSTEM,
        )
        assert await outbox(hub) == []  # nothing on the stages before
        await hub.deals.apply(
            [ch.MoveStage(deal=deal, stage=s) for s in ("objections", "contract")], SYSTEM
        )
        assert await stage_of(hub, deal) == "contract"
        async with hub.store.read() as conn:
            entered = (
                await conn.execute(
                    select(DomainEvent.id)
                    .where(DomainEvent.type == "deal.stage_changed")
                    .order_by(DomainEvent.id.desc())
                )
            ).scalar()
        (row,) = await outbox(hub)
        assert row["key"] == f"stage:sales.contract:0:event:{entered}:pager:olga@example.com"
        assert (row["template"], row["queued_by"]) == ("stage_entered", "rule:stage:sales.contract")
        assert row["context"]["stage"] == {"key": "contract", "name": "Договор обсуждаем"}
        assert row["context"]["from_stage_name"] == "Возражения обрабатываем"
        assert row["context"]["deal"]["amount"] == "750000.00"
    finally:
        await hub.stop()


async def test_a_new_deal_enters_its_first_stage_and_one_placed_further_does_not(store_url):
    pipelines = pipelines_with(
        new=[{"notify": ["owner"], "template": "deal_created"}],
        qualified=[{"task": "Выяснить потребность", "due": "1d"}],
    )
    hub = await started(store_url, pipelines=pipelines)
    try:
        deal = await a_deal(hub)
        (row,) = await outbox(hub)
        assert (row["address"], row["template"], row["deal_id"]) == (
            "anna@example.com",
            "deal_created",
            deal,
        )
        assert hub.catalog is not None
        sales = hub.catalog.pipelines["sales"]
        imported = ch.CreateDeal(
            title="Сделка из старой CRM",
            pipeline_id=sales.id,
            stage_id=sales.stages["qualified"].id,
            contact=None,
            owner_id=hub.catalog.user_ids["dmitry@example.com"],
            segment="Опт",
        )
        await hub.deals.apply([imported], SYSTEM)
        assert imported.id is not None
        assert await tasks_of(hub, imported.id) == []
        assert len(await outbox(hub)) == 1
    finally:
        await hub.stop()


async def test_a_lost_deal_has_its_open_tasks_closed(store_url):
    hub = await started(store_url, pipelines=pipelines_with(lost=[{"close_tasks": True}]))
    try:
        deal = await a_deal(hub)
        await hub.deals.apply(
            [ch.CloseLost(deal=deal, reason="Выбрали конкурента", competitor="Керама")], SYSTEM
        )
        (task,) = await tasks_of(hub, deal)
        assert task["result"] == "Закрыта автоматически: сделка перешла на этап «Проиграли»"
    finally:
        await hub.stop()
