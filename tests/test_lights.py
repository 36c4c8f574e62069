"""Every open deal shows red, yellow or green, with the reasons a manager acts on."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from hub import lights
from hub.app import build_app
from hub.context import Hub
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.store.types import utcnow
from rules.stage_rules import StageRules
from tests.conftest import make_hub, wait_for
from tests.test_stage_rules import HEAD_TOKEN, a_deal, example_settings


async def colours(hub: Hub, ids: list[int], **later: float) -> dict[int, lights.Light]:
    assert hub.catalog is not None
    now = utcnow() + timedelta(**later)
    async with hub.store.read() as conn:
        return await lights.lights(conn, ids, hub.catalog, now, hub.settings.hub.timezone)


def later_today() -> object:
    """A time between now and the end of today in the hub's zone (Europe/Moscow)."""
    now = utcnow()
    local = now.astimezone(ZoneInfo("Europe/Moscow"))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return now + (midnight - local) / 2


async def test_a_deal_is_red_for_an_overdue_or_missing_task_yellow_for_today_else_green(
    store_url,
):
    hub = make_hub(example_settings(store_url), extra={"stage_rules": StageRules})
    await hub.start()
    try:
        green = await a_deal(hub)  # its task is due tomorrow
        overdue = await a_deal(hub)
        await hub.deals.apply(
            [ch.AddTask(title="Перезвонить", due_at=utcnow() - timedelta(hours=1), deal=overdue)],
            SYSTEM,
        )
        no_task = await a_deal(hub, with_task=False)
        today = await a_deal(hub, with_task=False)
        await hub.deals.apply(
            [ch.AddTask(title="Отправить КП", due_at=later_today(), deal=today)],  # type: ignore[arg-type]
            SYSTEM,
        )
        closed = await a_deal(hub)
        await hub.deals.apply([ch.CloseLost(deal=closed, reason="Дорого")], SYSTEM)
        found = await colours(hub, [green, overdue, no_task, today, closed])
        assert found[green] == lights.Light("green", [])
        assert found[overdue] == lights.Light("red", ["просрочена задача"])
        assert found[no_task] == lights.Light("red", ["нет открытой задачи"])
        assert found[today] == lights.Light("yellow", ["задача на сегодня"])
        assert closed not in found  # a closed deal has no light
    finally:
        await hub.stop()


async def test_a_deal_turns_red_past_its_stage_limit_and_when_nobody_called_in_the_cadence(
    store_url,
):
    hub = make_hub(example_settings(store_url), extra={"stage_rules": StageRules})
    await hub.start()
    try:
        # Stage «Новая сделка»: time limit 2 days, a call at least every day.
        deal = await a_deal(hub)
        await hub.deals.apply(
            [ch.AddTask(title="Звонок", due_at=utcnow() + timedelta(days=9), deal=deal)], SYSTEM
        )
        later = await colours(hub, [deal], days=1.5)
        assert later[deal].colour == "red"
        assert later[deal].reasons == [
            "просрочена задача",
            "нет звонка, письма или встречи дольше, чем 1 дн. (этап «Новая сделка»)",
        ]
        await hub.deals.apply(
            [
                ch.LogActivity(
                    activity="call",
                    summary="Созвонились",
                    deal=deal,
                    occurred_at=utcnow() + timedelta(days=1.4),
                )
            ],
            SYSTEM,
        )
        async with hub.store.read() as conn:
            from sqlalchemy import select

            from hub.store.models import Task

            first = (await conn.execute(select(Task.id).order_by(Task.id))).scalars().first()
        await hub.deals.apply([ch.CompleteTask(task=first, result="ок")], SYSTEM)  # type: ignore[arg-type]
        soon = await colours(hub, [deal], days=1.5)
        assert soon[deal] == lights.Light(
            "yellow", ["срок на этапе «Новая сделка» истекает в течение суток"]
        )
        gone = await colours(hub, [deal], days=2.2)
        assert "срок на этапе «Новая сделка» истёк" in gone[deal].reasons
    finally:
        await hub.stop()


async def test_the_api_filters_deals_by_light_and_shows_the_reasons(aiohttp_client, store_url):
    hub = make_hub(example_settings(store_url), extra={"stage_rules": StageRules})
    client = await aiohttp_client(build_app(hub))
    for phone in ("+7 912 345-67-89", "+7 912 345-67-90"):
        await client.post("/forms/contact", data={"name": "Клиент", "phone": phone})

    async def two() -> list[dict[str, object]] | None:
        page = await (await client.get("/api/v1/deals", headers=HEAD_TOKEN)).json()
        return page["items"] if len(page["items"]) == 2 else None

    first, second = await wait_for(two)
    task = (await (await client.get(f"/api/v1/deals/{first['id']}", headers=HEAD_TOKEN)).json())[
        "tasks"
    ][0]
    done = await client.post(f"/api/v1/tasks/{task['id']}/complete", json={}, headers=HEAD_TOKEN)
    assert done.status == 200
    red = await (await client.get("/api/v1/deals?light=red", headers=HEAD_TOKEN)).json()
    assert [d["id"] for d in red["items"]] == [first["id"]]
    assert red["items"][0]["light"] == {"colour": "red", "reasons": ["нет открытой задачи"]}
    green = await (await client.get("/api/v1/deals?light=green", headers=HEAD_TOKEN)).json()
    assert [d["id"] for d in green["items"]] == [second["id"]]
    card = await (await client.get(f"/api/v1/deals/{first['id']}", headers=HEAD_TOKEN)).json()
    assert card["light"]["colour"] == "red"
    assert (await client.get("/api/v1/deals?light=blue", headers=HEAD_TOKEN)).status == 400


async def test_the_cadence_light_counts_the_owners_working_days_not_the_clock(store_url):
    # Anna works one day a week, three days from now: two days without a call are no
    # working time at all for her, so her deal is not red for cadence; on the clock it is.
    from hub.config import WEEKDAYS
    from hub.worktime import Team

    day = WEEKDAYS[(utcnow().astimezone(ZoneInfo("Europe/Moscow")).weekday() + 3) % 7]
    settings = example_settings(store_url)
    anna = next(u for u in settings.users if u.email == "anna@example.com")
    anna.working_hours, anna.working_days, anna.timezone = "09:00-18:00", [day], "Europe/Moscow"
    hub = make_hub(settings, extra={"stage_rules": StageRules})
    await hub.start()
    try:
        deal = await a_deal(hub)
        await hub.deals.apply(
            [ch.AddTask(title="Звонок", due_at=utcnow() + timedelta(days=9), deal=deal)], SYSTEM
        )
        assert hub.catalog is not None
        team = Team.of_catalog(settings, hub.catalog)
        later = utcnow() + timedelta(days=2)
        async with hub.store.read() as conn:
            worked = await lights.lights(conn, [deal], hub.catalog, later, "Europe/Moscow", team)
            clock = await lights.lights(conn, [deal], hub.catalog, later, "Europe/Moscow")
        cadence = "нет звонка, письма или встречи дольше, чем 1 дн. (этап «Новая сделка»)"
        assert cadence not in worked[deal].reasons
        assert cadence in clock[deal].reasons
    finally:
        await hub.stop()
