"""The built-in stage rules on the example pipelines: stage by stage, required fields, why a
deal was lost, an amount when won, a task before leaving the first stage; on every path."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.app import build_app
from hub.context import Hub
from hub.deals import SYSTEM, Actor, Refused
from hub.deals import changes as ch
from hub.domain.normalize import phone_point
from hub.store.models import Deal, DomainEvent, StageChange, Task, User
from hub.store.types import utcnow
from rules.stage_rules import StageRules
from tests.conftest import ROOT, make_hub, make_settings

EXAMPLE = tomllib.loads((ROOT / "config.example.toml").read_text())
HEAD_TOKEN = {"Authorization": "Bearer head-token-0123456789"}
ANNA_TOKEN = {"Authorization": "Bearer anna-token-0123456789"}


def example_settings(url: str) -> Any:
    return make_settings(
        url,
        pipelines=EXAMPLE["pipelines"],
        catalog=EXAMPLE["catalog"],
        plugins={"webforms": {"forms": {"contact": {"rate_limit": 100}}}, "stage_rules": {}},
    )


async def started(url: str) -> Hub:
    hub = make_hub(example_settings(url), extra={"stage_rules": StageRules})
    await hub.start()
    return hub


async def a_deal(hub: Hub, *, with_task: bool = True, **fields: Any) -> int:
    """A new deal of anna's in the example sales pipeline, with a call task."""
    async with hub.store.read() as conn:
        anna = (
            await conn.execute(select(User.id).where(User.email == "anna@example.com"))
        ).scalar_one()
    assert hub.catalog is not None
    sales = hub.catalog.pipelines["sales"]
    contact = ch.CreateContact(
        name="Ирина Волкова", owner_id=anna, points=[phone_point("+79125550102", "RU")]
    )
    deal = ch.CreateDeal(
        title="Плитка",
        pipeline_id=sales.id,
        stage_id=sales.entry_stage.id,
        contact=contact,
        owner_id=anna,
        **fields,
    )
    batch: list[ch.Change] = [contact, deal]
    if with_task:
        batch.append(ch.AddTask(title="Позвонить", due_at=utcnow() + timedelta(days=1), deal=deal))
    await hub.deals.apply(batch, SYSTEM)
    assert deal.id is not None
    return deal.id


async def refused(hub: Hub, changes: list[ch.Change], actor: Actor = SYSTEM) -> list[str]:
    before = await counts(hub)
    with pytest.raises(Refused) as caught:
        await hub.deals.apply(changes, actor)
    assert await counts(hub) == before  # a refusal changes nothing
    return [r.reason for r in caught.value.refusals]


async def counts(hub: Hub) -> tuple[int, ...]:
    found = []
    async with hub.store.read() as conn:
        for table in (StageChange, DomainEvent, Task):
            found.append((await conn.execute(select(func.count()).select_from(table))).scalar_one())
        found.append((await conn.execute(select(func.sum(Deal.stage_id)))).scalar_one())
    return tuple(found)


async def test_a_deal_moves_stage_by_stage_back_anywhere_and_only_by_allowed_jumps(store_url):
    hub = await started(store_url)
    try:
        deal = await a_deal(hub, segment="опт")
        assert await refused(hub, [ch.MoveStage(deal=deal, stage="objections")]) == [
            "Нельзя перескочить этапы: из «Новая сделка» сразу в «Возражения обрабатываем». "
            "Следующий этап — «Собрать требования»"
        ]
        await hub.deals.apply([ch.MoveStage(deal=deal, stage="qualified")], SYSTEM)
        await hub.deals.apply([ch.MoveStage(deal=deal, stage="new")], SYSTEM)  # back: allowed
        # The example pipeline lets a new deal go straight to a proposal (jumps), with an amount.
        await hub.deals.apply(
            [ch.SetDealFields(deal=deal, amount=90000), ch.MoveStage(deal=deal, stage="proposal")],
            SYSTEM,
        )
        assert await refused(hub, [ch.CloseWon(deal=deal)]) == [
            "Выиграть сделку можно с этапа «Договор обсуждаем», а она на этапе «Направить КП»"
        ]
    finally:
        await hub.stop()


async def test_a_stage_names_every_field_it_needs_and_the_same_batch_may_fill_them(store_url):
    hub = await started(store_url)
    try:
        deal = await a_deal(hub, segment="опт", amount=90000)
        for stage in ("qualified", "proposal", "objections"):
            await hub.deals.apply([ch.MoveStage(deal=deal, stage=stage)], SYSTEM)
        assert await refused(hub, [ch.MoveStage(deal=deal, stage="contract")]) == [
            "Этап «Договор обсуждаем» требует: email клиента, contract_date"
        ]
        async with hub.store.read() as conn:
            contact = (await conn.execute(select(Deal.contact_id))).scalar_one()
        await hub.deals.apply(
            [
                ch.UpdateContact(contact=contact, add_points=[_email("irina@romashka.ru")]),
                ch.SetDealFields(deal=deal, custom={"contract_date": "2026-12-01"}),
                ch.MoveStage(deal=deal, stage="contract"),
            ],
            SYSTEM,
        )
    finally:
        await hub.stop()


async def test_a_win_needs_an_amount_and_a_loss_a_listed_reason_and_its_competitor(store_url):
    hub = await started(store_url)
    try:
        deal = await a_deal(hub, segment="опт")
        await hub.deals.apply([ch.MoveStage(deal=deal, stage="qualified")], SYSTEM)
        assert await refused(hub, [ch.CloseLost(deal=deal, reason="")]) == [
            "Укажите причину проигрыша: Дорого, Выбрали конкурента, Нет бюджета, Не отвечает, "
            "Неактуально, Дубль"
        ]
        assert (await refused(hub, [ch.CloseLost(deal=deal, reason="Погода")]))[0].startswith(
            "Причины «Погода» нет в списке"
        )
        assert await refused(hub, [ch.CloseLost(deal=deal, reason="Выбрали конкурента")]) == [
            "Причина «Выбрали конкурента» требует указать конкурента"
        ]
        await hub.deals.apply(
            [ch.CloseLost(deal=deal, reason="Выбрали конкурента", competitor="Керама")], SYSTEM
        )
        other = await a_deal(hub, segment="опт", amount=None)
        await hub.deals.apply([ch.MoveStage(deal=other, stage="qualified")], SYSTEM)
        # Every reason at once: won from the wrong stage, and without an amount.
        assert await refused(hub, [ch.CloseWon(deal=other)]) == [
            "Выиграть сделку можно с этапа «Договор обсуждаем», "
            "а она на этапе «Собрать требования»",
            "Сделку нельзя выиграть без суммы: укажите сумму",
        ]
    finally:
        await hub.stop()


async def test_a_deal_does_not_leave_its_first_stage_without_an_open_task(store_url):
    hub = await started(store_url)
    try:
        deal = await a_deal(hub, segment="опт")
        async with hub.store.read() as conn:
            task = (await conn.execute(select(Task.id))).scalar_one()
        assert await refused(
            hub,
            [
                ch.CompleteTask(task=task, result="не дозвонились"),
                ch.MoveStage(deal=deal, stage="qualified"),
            ],
        ) == ["Прежде чем уйти с этапа «Новая сделка», поставьте задачу по сделке"]
        await hub.deals.apply(
            [
                ch.CompleteTask(task=task, result="дозвонились"),
                ch.AddTask(title="Выслать КП", due_at=utcnow() + timedelta(days=1), deal=deal),
                ch.MoveStage(deal=deal, stage="qualified"),
            ],
            SYSTEM,
        )
    finally:
        await hub.stop()


async def test_a_head_skips_a_rule_with_a_reason_kept_in_history_and_a_manager_cannot(store_url):
    hub = await started(store_url)
    try:
        deal = await a_deal(hub)
        async with hub.store.read() as conn:
            users = dict((await conn.execute(select(User.email, User.id))).all())
        anna = Actor.user(users["anna@example.com"], "anna@example.com", "manager")
        olga = Actor.user(users["olga@example.com"], "olga@example.com", "head")
        skip = ch.MoveStage(deal=deal, stage="objections", override="клиент сам выбрал")
        reasons = await refused(hub, [skip], anna)
        assert reasons[-1] == "Обойти правило может руководитель или администратор, а не manager"
        empty = ch.MoveStage(deal=deal, stage="objections", override=" ")
        assert await refused(hub, [empty], olga) == ["Чтобы обойти правило, укажите причину"]
        await hub.deals.apply(
            [ch.MoveStage(deal=deal, stage="objections", override="клиент сам выбрал")], olga
        )
        async with hub.store.read() as conn:
            kept = (
                await conn.execute(select(StageChange.override).order_by(StageChange.id.desc()))
            ).first()
            event = (
                await conn.execute(
                    select(DomainEvent.payload).where(DomainEvent.type == "deal.stage_changed")
                )
            ).scalar_one()
        assert kept == ("клиент сам выбрал",)
        assert event["override"] == "клиент сам выбрал"
        assert event["actor"]["name"] == "olga@example.com"
        # A loss reason is never skipped.
        no_reason = ch.CloseLost(deal=deal, reason="", override="срочно")
        assert (await refused(hub, [no_reason], olga))[0].startswith("Укажите причину проигрыша")
    finally:
        await hub.stop()


async def test_the_rules_hold_on_the_api_and_for_a_plugin_alike(aiohttp_client, store_url):
    hub = make_hub(example_settings(store_url), extra={"stage_rules": StageRules})
    client = await aiohttp_client(build_app(hub))
    response = await client.post(
        "/forms/contact", data={"name": "Иван Петров", "phone": "+7 912 345-67-89"}
    )
    assert response.status == 202
    from tests.conftest import wait_for

    async def deal_id() -> int | None:
        page = await (await client.get("/api/v1/deals", headers=HEAD_TOKEN)).json()
        return page["items"][0]["id"] if page["items"] else None

    deal = await wait_for(deal_id)
    api = await client.post(
        f"/api/v1/deals/{deal}/stage", json={"stage": "qualified"}, headers=HEAD_TOKEN
    )
    assert api.status == 422
    problem = await api.json()
    assert problem["reasons"] == [
        {
            "reason": "Этап «Собрать требования» требует: сегмент",
            "change": "move_stage",
            "guard": "stage_rules",
        }
    ]
    plugin = Actor.plugin("crm_sync")
    with pytest.raises(Refused, match="требует: сегмент"):
        await hub.deals.apply([ch.MoveStage(deal=deal, stage="qualified")], plugin)
    patched = await client.patch(
        f"/api/v1/deals/{deal}", json={"segment": "Розница"}, headers=HEAD_TOKEN
    )
    assert patched.status == 200
    moved = await client.post(
        f"/api/v1/deals/{deal}/stage", json={"stage": "qualified"}, headers=HEAD_TOKEN
    )
    assert moved.status == 200, await moved.text()


def _email(address: str) -> Any:
    from hub.domain.normalize import email_point

    return email_point(address)
