"""The notification outbox: queued with the event that caused it, delivered once, retried when
the channel asks, failed when it refuses, held for review when a crash leaves it unknown."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from hub.cli import main
from hub.context import Hub
from hub.deals import SYSTEM, Reaction, Refused
from hub.deals import changes as ch
from hub.hookspecs import hookimpl
from hub.notify import Message, Recipient, RetryLater, Sent, Undeliverable
from hub.notify.outbox import INTERRUPTED
from hub.store.models import Notification
from hub.store.types import utcnow
from tests.conftest import make_hub, make_settings
from tests.test_stage_rules import a_deal

TEMPLATE = """\
{% block subject %}Новая сделка «{{ deal.title }}»{% endblock %}
{% block text %}{{ recipient }}, у вас новая сделка «{{ deal.title }}» на {{ deal.amount | money }}.
{{ link }}{% endblock %}
{% block html %}<p>{{ recipient }}, у вас новая сделка <b>{{ deal.title }}</b></p>{% endblock %}
{% block telegram %}<b>{{ deal.title }}</b>{% endblock %}
"""


class Inbox:
    """A notifier that keeps what it was given; ``script`` scripts failures by address."""

    name = "fake"
    retry_for = timedelta(hours=24)
    resend_interrupted = False
    concurrency = 4

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.script: dict[str, list[Exception]] = {}

    def address(self, recipient: Recipient) -> str | None:
        return recipient.email

    async def send(self, message: Message) -> Sent:
        failures = self.script.get(message.address)
        if failures:
            raise failures.pop(0)
        self.sent.append(message)
        return Sent(provider_id=f"p{len(self.sent)}")


INBOX = Inbox()


class NewDealAlerts:
    """Tells a new deal's owner about it, through whatever notifiers reach them."""

    def __init__(self, config: Any, hub: Any) -> None:
        self.hub = hub

    @hookimpl
    def hub_notifiers(self) -> list[Inbox]:
        return [INBOX]

    @hookimpl
    def hub_react(self, events: list[dict[str, Any]]) -> list[Reaction]:
        out = []
        for event in events:
            if event["type"] != "deal.created":
                continue
            payload = event["payload"]
            deal = {"id": event["subject_id"], "owner_id": payload["owner_id"]}
            out.append(
                Reaction(
                    "new_deal_alert",
                    self.hub.notifications.queue(
                        to=["owner"],
                        template="new_deal",
                        context={"deal": {"title": payload["title"], "amount": payload["amount"]}},
                        key=f"new_deal:{event['id']}",
                        now=event["occurred_at"],
                        deal=deal,
                        event_type=event["type"],
                    ),
                )
            )
        return out


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "new_deal.j2").write_text(TEMPLATE, encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def fresh_inbox() -> None:
    INBOX.sent.clear()
    INBOX.script.clear()


async def started(store_url: str, templates: Path, **notifications: Any) -> Hub:
    settings = make_settings(
        store_url,
        notifications={"templates_dir": str(templates), "poll_every": "0.05s", **notifications},
        plugins={"alerts": {}},
    )
    hub = make_hub(settings, extra={"alerts": NewDealAlerts}, start_workers=False)
    await hub.start()
    return hub


async def outbox(hub: Hub) -> list[dict[str, Any]]:
    async with hub.store.read() as conn:
        rows = await conn.execute(select(Notification.__table__).order_by(Notification.id))
        return [dict(r._mapping) for r in rows]


def sender(hub: Hub) -> Any:
    from hub.notify.sender import Sender

    return Sender(hub.store, hub.notifiers, hub.templates, hub.settings.notifications, hub.metrics)


async def test_hook_hub_react_queues_a_new_deals_notification_in_the_same_transaction(
    store_url, templates
):
    hub = await started(store_url, templates)
    try:
        deal_id = await a_deal(hub, amount=1250000)
        rows = await outbox(hub)
        assert len(rows) == 1
        row = rows[0]
        assert (row["notifier"], row["address"], row["state"]) == (
            "fake",
            "anna@example.com",
            "queued",
        )
        assert row["deal_id"] == deal_id
        assert row["queued_by"] == "rule:new_deal_alert"
        assert row["context"]["link"].endswith(f"/deals/{deal_id}")

        # A batch the writer refuses queues nothing either.
        contact = ch.CreateContact(name="Пётр")
        sales = hub.catalog.pipelines["sales"]
        with pytest.raises(Refused):
            await hub.deals.apply(
                [
                    contact,
                    ch.CreateDeal(
                        title="X", pipeline_id=sales.id, stage_id=999999, contact=contact
                    ),
                ],
                SYSTEM,
            )
        assert len(await outbox(hub)) == 1
    finally:
        await hub.stop()


async def test_the_owner_gets_the_rendered_message_once_and_it_is_recorded_as_sent(
    store_url, templates
):
    hub = await started(store_url, templates)
    try:
        await a_deal(hub, amount=1250000)
        await sender(hub).drain()
        assert len(INBOX.sent) == 1
        message = INBOX.sent[0]
        assert message.subject == "Новая сделка «Плитка»"
        assert message.text.startswith(
            "Анна Смирнова, у вас новая сделка «Плитка» на 1\u202f250\u202f000 ₽"
        )
        assert "<b>Плитка</b>" in message.html
        assert message.blocks["telegram"] == "<b>Плитка</b>"
        (row,) = await outbox(hub)
        assert (row["state"], row["provider_id"], row["attempts"]) == ("sent", "p1", 1)
        await sender(hub).drain()  # nothing is due any more
        assert len(INBOX.sent) == 1
    finally:
        await hub.stop()


async def test_a_title_with_markup_is_escaped_in_html_and_plain_in_text(store_url, templates):
    hub = await started(store_url, templates)
    try:
        deal = await a_deal(hub)
        await hub.deals.apply([ch.SetDealFields(deal=deal, title="<Плитка & клей>")], SYSTEM)
        async with hub.store.write() as conn:  # re-render the queued one with the new title
            await conn.execute(
                update(Notification.__table__).values(
                    context={"deal": {"title": "<Плитка & клей>"}, "recipient": "Анна"}
                )
            )
        await sender(hub).drain()
        message = INBOX.sent[0]
        assert "«<Плитка & клей>»" in message.subject
        assert "<b>&lt;Плитка &amp; клей&gt;</b>" in message.html
    finally:
        await hub.stop()


async def test_a_transient_failure_is_retried_after_the_wait_the_channel_asked_for(
    store_url, templates
):
    hub = await started(store_url, templates)
    try:
        INBOX.script["anna@example.com"] = [RetryLater("429", after=timedelta(seconds=30))]
        await a_deal(hub)
        before = utcnow()
        await sender(hub).drain()
        (row,) = await outbox(hub)
        assert row["state"] == "queued"
        assert row["last_error"] == "429"
        assert row["due_at"] >= before + timedelta(seconds=29)
        assert INBOX.sent == []
        async with hub.store.write() as conn:  # the wait passes
            await conn.execute(update(Notification.__table__).values(due_at=before))
        await sender(hub).drain()
        (row,) = await outbox(hub)
        assert (row["state"], row["attempts"]) == ("sent", 2)
        assert len(INBOX.sent) == 1
    finally:
        await hub.stop()


async def test_a_refused_address_fails_at_once_and_retry_sends_it_again(
    store_url, templates, tmp_path
):
    hub = await started(store_url, templates)
    try:
        INBOX.script["anna@example.com"] = [Undeliverable("550 no such mailbox")]
        await a_deal(hub)
        await sender(hub).drain()
        (row,) = await outbox(hub)
        assert (row["state"], row["last_error"]) == ("failed", "550 no such mailbox")
    finally:
        await hub.stop()
    config = write_config(tmp_path, store_url)
    listed = await cli(config, "notifications", "list", "--failed")
    assert listed.exit_code == 0, listed.output
    assert "550 no such mailbox" in listed.output
    assert "failed: 1" in listed.output
    places = await cli(config, "notifications", "destinations")
    assert places.exit_code == 0, places.output
    (line,) = [x for x in places.output.splitlines() if x.startswith("fake")]
    assert "anna@example.com" in line and "never" in line and "550 no such mailbox" in line
    again = await cli(config, "notifications", "retry", str(row["id"]))
    assert again.exit_code == 0, again.output
    assert f"queued again: {row['id']}" in again.output
    hub = await started(store_url, templates)
    try:
        await sender(hub).drain()
        (row,) = await outbox(hub)
        assert row["state"] == "sent"
        assert len(INBOX.sent) == 1
    finally:
        await hub.stop()


async def test_a_transient_failure_past_the_retry_window_gives_up(store_url, templates):
    hub = await started(store_url, templates)
    try:
        INBOX.script["anna@example.com"] = [RetryLater("timeout")] * 5
        await a_deal(hub)
        async with hub.store.write() as conn:  # queued two days ago, tried twice already
            await conn.execute(
                update(Notification.__table__).values(
                    created_at=utcnow() - timedelta(days=2), attempts=2
                )
            )
        await sender(hub).drain()
        (row,) = await outbox(hub)
        assert row["state"] == "failed"
        assert row["last_error"] == "gave up after 3 attempts: timeout"
    finally:
        await hub.stop()


async def test_a_send_cut_off_by_a_crash_is_held_for_review_not_sent_twice(store_url, templates):
    hub = await started(store_url, templates, lease="1s")
    try:
        await a_deal(hub)
        async with hub.store.write() as conn:  # a process claimed it, then died
            await conn.execute(
                update(Notification.__table__).values(
                    state="sending", claimed_by="dead", lease_until=utcnow() - timedelta(seconds=1)
                )
            )
        running = sender(hub)
        task = asyncio.create_task(running.run())
        await asyncio.sleep(0.3)
        running.stop()
        await task
        (row,) = await outbox(hub)
        assert (row["state"], row["last_error"]) == ("review", INTERRUPTED)
        assert INBOX.sent == []
    finally:
        await hub.stop()


async def test_a_send_cut_off_is_sent_again_where_the_receiver_drops_repeats(
    store_url, templates, monkeypatch
):
    monkeypatch.setattr(Inbox, "resend_interrupted", True)
    hub = await started(store_url, templates, lease="1s")
    try:
        await a_deal(hub)
        async with hub.store.write() as conn:
            await conn.execute(
                update(Notification.__table__).values(
                    state="sending", claimed_by="dead", lease_until=utcnow() - timedelta(seconds=1)
                )
            )
        running = sender(hub)
        task = asyncio.create_task(running.run())
        for _ in range(50):
            if INBOX.sent:
                break
            await asyncio.sleep(0.05)
        running.stop()
        await task
        (row,) = await outbox(hub)
        assert row["state"] == "sent"
        assert len(INBOX.sent) == 1
    finally:
        await hub.stop()


async def test_a_notification_in_quiet_hours_waits_until_they_end_in_the_users_timezone(
    store_url, templates
):
    # Europe/Moscow is UTC+3 all year: 22:00 UTC is 01:00 in Moscow, quiet until 09:00 (06:00 UTC).
    hub = await started(store_url, templates, quiet_hours="21:00-09:00")
    try:
        night = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
        queued = hub.notifications.queue(
            to=["owner"],
            template="new_deal",
            context={},
            key="night",
            now=night,
            deal={"id": 1, "owner_id": hub.catalog.user_ids["anna@example.com"]},
        )
        assert [q.not_before for q in queued] == [datetime(2026, 11, 25, 6, 0, tzinfo=UTC)]
        evening = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)  # 20:00 in Moscow: not quiet
        queued = hub.notifications.queue(
            to=["owner"],
            template="new_deal",
            context={},
            key="evening",
            now=evening,
            deal={"id": 1, "owner_id": hub.catalog.user_ids["anna@example.com"]},
        )
        assert [q.not_before for q in queued] == [None]
    finally:
        await hub.stop()


async def test_head_and_named_users_are_each_notified_once(store_url, templates):
    hub = await started(store_url, templates)
    try:
        queued = hub.notifications.queue(
            to=["head", "user:olga@example.com", "user:dmitry@example.com", "chat:sales"],
            template="new_deal",
            context={},
            key="k",
            now=utcnow(),
        )
        assert sorted(q.address for q in queued) == ["dmitry@example.com", "olga@example.com"]
        assert len({q.key for q in queued}) == 2
    finally:
        await hub.stop()


async def cli(config: Path, *args: str) -> Any:
    # The CLI runs its own event loop: off this test's loop, as from a shell.
    return await asyncio.to_thread(CliRunner().invoke, main, ["--config", str(config), *args])


def write_config(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(f'[store]\nurl = "{store_url}"\n', encoding="utf-8")
    return path


class BrokenRule:
    """A third party's rule with a bug, and one whose change the store cannot take."""

    def __init__(self, config: Any, hub: Any) -> None:
        pass

    @hookimpl
    def hub_react(self, events: list[dict[str, Any]]) -> list[Reaction]:
        if any(e["type"] == "deal.created" for e in events):
            raise ZeroDivisionError("a bug in a rule")
        return []


class ImpossibleRule:
    def __init__(self, config: Any, hub: Any) -> None:
        pass

    @hookimpl
    def hub_react(self, events: list[dict[str, Any]]) -> list[Reaction]:
        bad = ch.QueueNotification(key=None, notifier="fake", address="x", template=None)  # type: ignore[arg-type]
        return [Reaction("impossible", [bad]) for e in events if e["type"] == "deal.created"]


async def test_a_crashing_rule_costs_neither_the_write_nor_the_other_rules(store_url, templates):
    settings = make_settings(
        store_url,
        notifications={"templates_dir": str(templates)},
        plugins={"alerts": {}, "broken": {}, "impossible": {}},
    )
    hub = make_hub(
        settings,
        extra={"alerts": NewDealAlerts, "broken": BrokenRule, "impossible": ImpossibleRule},
        start_workers=False,
    )
    await hub.start()
    try:
        from structlog.testing import capture_logs

        with capture_logs() as logs:
            deal_id = await a_deal(hub)
        assert deal_id is not None  # the deal was written
        assert len(await outbox(hub)) == 1  # the working rule still queued its notification
        crashed = [e for e in logs if e["event"] == "rule_crashed"]
        # One from the rule that raised, one from the change the writer could not write.
        assert sorted(str(e.get("plugin") or e.get("rule")) for e in crashed) == [
            "broken",
            "impossible",
        ]
    finally:
        await hub.stop()
