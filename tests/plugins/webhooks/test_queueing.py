"""Webhooks are queued by ``hub_react`` in the writer's transaction: one outbox row per
event and subscribed endpoint, with the event, or none at all."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from hub.context import Hub
from hub.deals import SYSTEM, Refusal, Refused
from hub.deals import changes as ch
from hub.domain.normalize import phone_point
from hub.hookspecs import hookimpl
from hub.store.models import DomainEvent, Notification
from plugins.webhooks import Webhooks
from tests.conftest import make_hub, make_settings
from tests.plugins.webhooks.conftest import endpoint, make_plugin

ENDPOINTS = [
    endpoint("erp", events=["deal.*"]),
    endpoint("bi"),  # every event
    endpoint("tasks", events=["task.*"]),
    endpoint("paused", enabled=False),
]


class RefusesBigDeals:
    def __init__(self, config: Any, hub: Hub) -> None:
        pass

    @hookimpl
    def hub_guard(self, changes):  # type: ignore[no-untyped-def]
        for change in changes:
            if isinstance(change, ch.CreateDeal) and (change.amount or 0) > 1_000_000:
                yield Refusal(change, "Сделка больше миллиона требует согласования", "amount")


async def _hub(store_url: str) -> Hub:
    settings = make_settings(
        store_url, plugins={"webhooks": {"endpoints": ENDPOINTS}, "refuses": {}}
    )
    # No sender: these tests read what the writer queued, before a sender claims it.
    hub = make_hub(
        settings, extra={"webhooks": Webhooks, "refuses": RefusesBigDeals}, start_workers=False
    )
    await hub.start()
    return hub


def _deal(hub: Hub, amount: str = "1500.50") -> list[ch.Change]:
    assert hub.catalog is not None
    pipeline = hub.catalog.pipelines["sales"]
    contact = ch.CreateContact(name="Ирина Волкова", points=[phone_point("+79125550102", "RU")])
    deal = ch.CreateDeal(
        title="Поставка",
        pipeline_id=pipeline.id,
        stage_id=pipeline.entry_stage.id,
        contact=contact,
        amount=Decimal(amount),
    )
    return [contact, deal]


async def _outbox(hub: Hub) -> list[Any]:
    async with hub.store.read() as conn:
        return list(await conn.execute(select(Notification).order_by(Notification.key)))


async def _events(hub: Hub) -> dict[str, int]:
    async with hub.store.read() as conn:
        rows = await conn.execute(select(DomainEvent.type, DomainEvent.id))
        return dict(rows.all())


async def test_a_created_deal_queues_one_webhook_per_subscribed_endpoint(store_url):
    hub = await _hub(store_url)
    try:
        contact, deal = _deal(hub)
        await hub.deals.apply([contact, deal], SYSTEM)
        events = await _events(hub)
        outbox = await _outbox(hub)
    finally:
        await hub.stop()

    deal_event, contact_event = events["deal.created"], events["contact.created"]
    assert sorted(row.key for row in outbox) == sorted(
        [
            f"webhook:bi:{contact_event}",
            f"webhook:bi:{deal_event}",
            f"webhook:erp:{deal_event}",  # "deal.*" takes deal.created, not contact.created
        ]
    )  # nothing for "tasks" (task.* only) or "paused" (enabled = false)
    row = next(r for r in outbox if r.key == f"webhook:erp:{deal_event}")
    assert (row.notifier, row.address, row.template, row.state) == (
        "webhooks",
        "erp",
        None,
        "queued",
    )
    assert row.event_type == "deal.created"
    assert row.deal_id == deal.id
    assert row.queued_by == "rule:webhooks"
    body = row.context
    assert body["type"] == "deal.created"
    assert body["timestamp"].endswith("Z")
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert body["data"]["id"] == deal.id
    assert body["data"]["subject"] == "deal"
    assert body["data"]["title"] == "Поставка"
    assert body["data"]["amount"] == "1500.50"  # a decimal stays exact, as a string
    assert body["data"]["contact_id"] == contact.id


async def test_webhooks_are_queued_in_the_transaction_of_their_event(store_url):
    hub = await _hub(store_url)

    class RolledBack(Exception):
        pass

    async def write_then_fail() -> None:
        async with hub.store.write() as conn:
            await hub.deals.apply_in(conn, _deal(hub), SYSTEM)
            queued = list(await conn.execute(select(Notification.key)))
            assert len(queued) == 3  # inside the transaction, with the events
            raise RolledBack

    try:
        with pytest.raises(RolledBack):
            await write_then_fail()
        assert await _events(hub) == {}
        assert await _outbox(hub) == []
    finally:
        await hub.stop()


async def test_a_refused_batch_queues_no_webhook(store_url):
    hub = await _hub(store_url)
    try:
        with pytest.raises(Refused):
            await hub.deals.apply(_deal(hub, amount="2000000"), SYSTEM)
        assert await _outbox(hub) == []
    finally:
        await hub.stop()


async def test_a_task_event_reaches_the_endpoints_subscribed_to_tasks(store_url):
    hub = await _hub(store_url)
    try:
        contact, deal = _deal(hub)
        await hub.deals.apply([contact, deal], SYSTEM)
        task = ch.AddTask(
            title="Позвонить", due_at=datetime(2026, 11, 26, 9, 0, tzinfo=UTC), deal=deal.id
        )
        await hub.deals.apply([task], SYSTEM)
        task_event = (await _events(hub))["task.created"]
        rows = {r.key: r for r in await _outbox(hub) if r.event_type == "task.created"}
    finally:
        await hub.stop()
    assert sorted(rows) == [f"webhook:bi:{task_event}", f"webhook:tasks:{task_event}"]
    body = rows[f"webhook:tasks:{task_event}"].context
    assert body["data"]["due_at"] == "2026-11-26T09:00:00Z"
    assert rows[f"webhook:tasks:{task_event}"].deal_id == deal.id


def _event(event_id: int, event_type: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event_type,
        "subject": event_type.split(".")[0],
        "subject_id": 1,
        "payload": {},
        "occurred_at": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    }


def test_wildcards_match_whole_event_types():
    plugin = make_plugin(
        endpoint("deals", events=["deal.*"]),
        endpoint("created", events=["*.created"]),
        endpoint("exact", events=["deal.won", "deal.lost"]),
    )
    subscribed = plugin.subscriptions.endpoints_for
    assert subscribed("deal.created") == ("deals", "created")
    assert subscribed("deal.won") == ("deals", "exact")
    assert subscribed("task.created") == ("created",)
    assert subscribed("dealer.created") == ("created",)  # "deal.*" is not "deal*"
    assert subscribed("deal") == ()
    assert subscribed("lead.received") == ()


def test_events_no_endpoint_wants_get_no_reaction():
    plugin = make_plugin(endpoint("deals", events=["deal.*"]))
    assert plugin.hub_react([_event(1, "task.created"), _event(2, "note.added")]) == []
    assert make_plugin().hub_react([_event(1, "deal.created")]) == []


def test_one_reaction_carries_every_webhook_of_a_batch():
    plugin = make_plugin(endpoint("a"), endpoint("b", events=["deal.*"]))
    [reaction] = plugin.hub_react([_event(1, "deal.created"), _event(2, "task.created")])
    assert reaction.rule == "webhooks"
    assert [c.key for c in reaction.changes] == [
        "webhook:a:1",
        "webhook:b:1",
        "webhook:a:2",
    ]


def test_the_body_is_plain_json_whatever_the_event_holds():
    plugin = make_plugin(endpoint("bi"))
    event = _event(5, "deal.updated")
    event["payload"] = {"changed": {"amount": Decimal("10.10"), 3: None}, "v": 1}
    [reaction] = plugin.hub_react([event])
    assert reaction.changes[0].context == {
        "type": "deal.updated",
        "timestamp": "2026-11-25T12:00:00Z",
        "data": {"id": 1, "subject": "deal", "changed": {"amount": "10.10", "3": None}, "v": 1},
    }
