"""Daily digests and escalations: each manager hears about their own day, the head about the
team and the funnel, once a day whatever restarts; an old violation reaches the head once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from hub import scheduler
from hub.context import Hub
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.hookspecs import hookimpl
from hub.notify import Message, Recipient, Sent
from hub.store import Store
from hub.store.models import Notification
from hub.store.types import utcnow
from rules.digests import Digests
from tests.conftest import TEAM, make_hub, make_settings, wait_for

MOSCOW = ZoneInfo("Europe/Moscow")
ANNA, DMITRY, OLGA = "anna@example.com", "dmitry@example.com", "olga@example.com"


class Inbox:
    """A notifier that keeps what it was given, addressed by email."""

    name = "fake"
    retry_for = timedelta(hours=24)
    resend_interrupted = False
    concurrency = 4

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def address(self, recipient: Recipient) -> str | None:
        return recipient.email

    async def send(self, message: Message) -> Sent:
        self.sent.append(message)
        return Sent(provider_id=f"p{len(self.sent)}")

    def to(self, email: str) -> list[Message]:
        return [m for m in self.sent if m.address == email]


INBOX = Inbox()


class InboxPlugin:
    @hookimpl
    def hub_notifiers(self) -> list[Inbox]:
        return [INBOX]


async def started(store_url: str, **config: Any) -> Hub:
    INBOX.sent.clear()
    settings = make_settings(store_url, plugins={"digests": config, "inbox": {}})
    hub = make_hub(settings, extra={"digests": Digests, "inbox": InboxPlugin}, start_workers=False)
    await hub.start()
    return hub


def digests(hub: Hub) -> Digests:
    plugin = hub.plugins.records["digests"].instance
    assert isinstance(plugin, Digests)
    return plugin


async def drain(hub: Hub) -> None:
    from hub.notify.sender import Sender

    await Sender(
        hub.store, hub.notifiers, hub.templates, hub.settings.notifications, hub.metrics
    ).drain()


async def outbox(hub: Hub) -> list[dict[str, Any]]:
    async with hub.store.read() as conn:
        rows = await conn.execute(select(Notification.__table__).order_by(Notification.id))
        return [dict(r._mapping) for r in rows]


def tomorrow_morning() -> datetime:
    """A 09:00 in Moscow a day or two ahead: the digest's slot, with the store seeded
    relative to it (a digest describes the store as of its slot when that is later)."""
    return scheduler.last_slot(utcnow() + timedelta(days=2), time(9), MOSCOW)


async def write(hub: Hub, changes: list[ch.Change], at: datetime) -> None:
    async with hub.store.write() as conn:
        await hub.deals.apply_in(conn, changes, SYSTEM, at)


async def deal(
    hub: Hub,
    owner: str,
    title: str,
    at: datetime,
    *,
    amount: int | None = None,
    task: str | None = "Позвонить",
    due: timedelta = timedelta(days=1),
) -> int:
    """A new deal of ``owner`` in the sales pipeline created ``at``, with a task due then."""
    assert hub.catalog is not None
    owner_id = hub.catalog.user_ids[owner]
    sales = hub.catalog.pipelines["sales"]
    contact = ch.CreateContact(name=f"Клиент {title}", owner_id=owner_id)
    created = ch.CreateDeal(
        title=title,
        pipeline_id=sales.id,
        stage_id=sales.entry_stage.id,
        contact=contact,
        owner_id=owner_id,
        amount=Decimal(amount) if amount is not None else None,
    )
    batch: list[ch.Change] = [contact, created]
    if task:
        batch.append(ch.AddTask(title=task, due_at=at + due, deal=created))
    await write(hub, batch, at)
    assert created.id is not None
    return created.id


async def violation(
    hub: Hub, owner: str, deal_id: int, at: datetime, rule: str = "cadence_broken", **kw: Any
) -> int:
    assert hub.catalog is not None
    opened = ch.OpenViolation(
        rule=rule,
        subject="deal",
        subject_id=deal_id,
        owner_id=hub.catalog.user_ids[owner],
        severity=kw.get("severity", "red"),
        detail=kw.get("detail", "нет звонка, письма или встречи дольше, чем 1 дн."),
    )
    await write(hub, [opened], at)
    assert opened.id is not None
    return opened.id


async def test_annas_digest_lists_her_overdue_task_and_red_deal_and_not_dmitrys(store_url):
    hub = await started(store_url)
    try:
        slot = tomorrow_morning()
        tile = await deal(
            hub, ANNA, "Плитка", slot - timedelta(days=3), amount=1250000, due=timedelta(days=1)
        )
        later = timedelta(hours=6)  # 14:00 in Moscow, today there
        await deal(
            hub, ANNA, "Кафель", slot - timedelta(hours=1), task="Отправить договор", due=later
        )
        await deal(hub, DMITRY, "Трубы", slot - timedelta(days=2), task="Перезвонить в ЖКХ")
        await violation(hub, ANNA, tile, slot - timedelta(days=2))

        result = await digests(hub).manager_digest(slot, "Europe/Moscow")
        assert result == {"managers": 2, "queued": 2, "skipped": 0}
        await drain(hub)

        (mine,) = INBOX.to(ANNA)
        assert mine.subject == f"Дела на {slot:%d.%m.%Y}: красных сделок 1, просроченных задач 1"
        text = mine.text
        assert "Анна Смирнова, дела на" in text
        assert "- «Плитка», 1\u202f250\u202f000 ₽, этап «Новая сделка»: просрочена задача" in text
        assert "- «Позвонить» по сделке «Плитка»: просрочена на 2 дн." in text
        assert "нет звонка, письма или встречи дольше, чем 1 дн. — сделка «Плитка», с" in text
        assert "- 14:00 «Отправить договор» по сделке «Кафель»" in text  # due today, her time
        assert f"/deals/{tile}" in text
        assert "Трубы" not in text and "Перезвонить в ЖКХ" not in text
        telegram = mine.blocks["telegram"]
        assert f'<a href="http://127.0.0.1:8080/api/v1/deals/{tile}">Плитка</a>' in telegram
        assert "<table" not in telegram and "<br" not in telegram
        assert "<table" in mine.html and "<td>Плитка</td>" not in mine.html

        (his,) = INBOX.to(DMITRY)
        assert "Перезвонить в ЖКХ" in his.text and "Плитка" not in his.text
        assert INBOX.to(OLGA) == []  # the head gets the head's digest, not a manager's
    finally:
        await hub.stop()


async def test_the_heads_digest_counts_violations_per_manager_funnel_conversions_and_losses(
    store_url,
):
    hub = await started(store_url)
    try:
        now = tomorrow_morning() + timedelta(minutes=30)  # 09:30, the head's time
        day = timedelta(days=1)
        tile = await deal(hub, ANNA, "Плитка", now - 3 * day, amount=1250000)
        await deal(hub, ANNA, "Кафель", now - 2 * day, amount=300000)
        pipes = await deal(hub, DMITRY, "Трубы", now - 5 * day, amount=500000)
        await write(hub, [ch.MoveStage(deal=pipes, stage="proposal")], now - 4 * day)
        won = await deal(hub, DMITRY, "Бассейн", now - 20 * day, amount=700000)
        for step, stage in enumerate(("proposal", "contract")):
            await write(hub, [ch.MoveStage(deal=won, stage=stage)], now - (15 - step) * day)
        await write(hub, [ch.CloseWon(deal=won)], now - 10 * day)
        lost = [
            (100000, "Дорого", None, 5),
            (200000, "Дорого", None, 6),
            (400000, "Выбрали конкурента", "Керамин", 7),
            (900000, "Дорого", None, 40),  # lost before the last 30 days: not counted
        ]
        for amount, reason, competitor, ago in lost:
            lost_id = await deal(hub, ANNA, f"Потеря {ago}", now - (ago + 5) * day, amount=amount)
            await write(
                hub,
                [ch.CloseLost(deal=lost_id, reason=reason, competitor=competitor)],
                now - ago * day,
            )
        await violation(hub, ANNA, tile, now - 3 * day)
        await violation(
            hub, ANNA, tile, now - 1 * day, rule="no_task", detail="нет открытой задачи"
        )
        await violation(hub, DMITRY, pipes, now - 2 * day)

        assert await digests(hub).head_digest(now, "Europe/Moscow") == {"heads": 1, "queued": 1}
        (row,) = await outbox(hub)
        assert row["address"] == OLGA and row["template"] == "digest_head"
        context = row["context"]
        by_manager = [(v["name"], v["count"], v["age"]) for v in context["violations"]]
        assert by_manager == [("Анна Смирнова", 2, "3 дн."), ("Дмитрий Соколов", 1, "2 дн.")]
        sales, wholesale = context["funnel"]
        assert [(s["stage"], s["count"]) for s in sales["stages"]] == [
            ("Новая сделка", 2),
            ("Направить КП", 1),
            ("Договор обсуждаем", 0),
        ]
        assert [Decimal(a["amount"]) for a in sales["stages"][0]["amounts"]] == [1550000]
        assert wholesale["count"] == 0
        steps = [
            (c["source"], c["entered"], c["reached"]) for c in context["conversions"][0]["steps"]
        ]
        # Entered "new" in 30 days: 2 of anna's open, pipes, won, 3 lost; went on: pipes, won.
        assert steps == [
            ("Новая сделка", 7, 2),
            ("Направить КП", 2, 1),
            ("Договор обсуждаем", 1, 1),
        ]
        assert context["won"]["count"] == 1
        assert [(r["reason"], r["count"]) for r in context["lost"]] == [
            ("Дорого", 2),
            ("Выбрали конкурента", 1),
        ]
        assert context["lost"][1]["competitors"] == [{"name": "Керамин", "count": 1}]

        await drain(hub)
        (message,) = INBOX.to(OLGA)
        assert "нарушений 3, проиграно за 30 дн. 3, выиграно 1" in message.subject
        text = message.text
        assert "- Анна Смирнова: 2, самое старое — 3 дн." in text
        assert "- Новая сделка: 2, 1\u202f550\u202f000 ₽" in text
        assert "- Новая сделка → Направить КП: 2 из 7 (29%)" in text
        assert "Выиграно за 30 дн.: 1 на 700\u202f000 ₽" in text
        assert "Проиграно за 30 дн.: 3 на 700\u202f000 ₽" in text
        assert "- Дорого: 2" in text and "- Выбрали конкурента: 1 (Керамин 1)" in text
        assert "<table" in message.html and "<b>Воронка</b>" in message.blocks["telegram"]
    finally:
        await hub.stop()


async def test_the_same_days_digest_run_twice_or_by_a_second_process_is_queued_once(store_url):
    hub = await started(store_url)
    try:
        slot = tomorrow_morning()
        await deal(hub, ANNA, "Плитка", slot - timedelta(days=3))
        await digests(hub).manager_digest(slot, "Europe/Moscow")
        await digests(hub).manager_digest(slot + timedelta(hours=3), "Europe/Moscow")  # a rerun
        second = Digests(Digests.Config(), hub.view)  # another process, its own plugin
        await second.manager_digest(slot, "Europe/Moscow")
        keys = [r["key"] for r in await outbox(hub)]
        assert keys == [f"digest:manager:{ANNA}:{slot.astimezone(MOSCOW).date()}:fake:{ANNA}"]
        await drain(hub)
        assert len(INBOX.to(ANNA)) == 1

        await digests(hub).manager_digest(slot + timedelta(days=1), "Europe/Moscow")
        assert len(await outbox(hub)) == 2  # the next day has a digest of its own
    finally:
        await hub.stop()


async def test_a_manager_with_nothing_to_do_gets_no_digest_unless_skip_empty_is_off(store_url):
    hub = await started(store_url)
    try:
        slot = tomorrow_morning()
        await deal(hub, ANNA, "Плитка", slot - timedelta(days=3))  # dmitry has nothing
        result = await digests(hub).manager_digest(slot, "Europe/Moscow")
        assert result == {"managers": 2, "queued": 1, "skipped": 1}
        assert [r["address"] for r in await outbox(hub)] == [ANNA]

        chatty = Digests(Digests.Config(skip_empty=False), hub.view)
        await chatty.manager_digest(slot, "Europe/Moscow")
        await drain(hub)
        (his,) = INBOX.to(DMITRY)
        assert "Срочных дел нет." in his.text
    finally:
        await hub.stop()


async def test_escalation_tells_the_head_once_about_an_old_violation_and_not_a_fresh_one(
    store_url,
):
    hub = await started(store_url)
    try:
        t0 = utcnow()
        tile = await deal(hub, ANNA, "Плитка", t0 - timedelta(days=1), amount=90000)
        pipes = await deal(hub, DMITRY, "Трубы", t0 - timedelta(days=1))
        old = await violation(hub, ANNA, tile, t0)
        await violation(hub, ANNA, tile, t0, rule="deal_no_segment", severity="yellow")
        fresh = await violation(hub, DMITRY, pipes, t0 + timedelta(hours=3))
        plugin = digests(hub)

        first = await plugin.escalate(t0 + timedelta(hours=4, minutes=1))
        assert first == {"violations": 1, "queued": 1}
        await drain(hub)
        (message,) = INBOX.sent
        assert message.address == OLGA
        assert message.subject == "Не исправлено за 4 ч.: нет контакта с клиентом — «Плитка»"
        assert message.link is not None and message.link.endswith(f"/deals/{tile}")
        assert "Ответственный: Анна Смирнова." in message.text
        assert "Сделка: «Плитка», 90\u202f000 ₽, этап «Новая сделка»." in message.text

        # The next run looks only at what turned old since the previous one.
        assert await plugin.escalate(t0 + timedelta(hours=4, minutes=16)) == {
            "violations": 1,  # within the margin of one run: queued again, stored once
            "queued": 1,
        }
        assert await plugin.escalate(t0 + timedelta(hours=5)) == {"violations": 0, "queued": 0}
        await drain(hub)
        assert len(INBOX.sent) == 1

        # The fresh one turns four hours old; a restarted process tells it once too.
        assert (await plugin.escalate(t0 + timedelta(hours=7, minutes=5)))["violations"] == 1
        restarted = Digests(Digests.Config(), hub.view)
        await restarted.escalate(t0 + timedelta(hours=7, minutes=10))
        await drain(hub)
        assert [m.key.split(":")[1] for m in INBOX.sent] == [str(old), str(fresh)]
        assert len(await outbox(hub)) == 2
    finally:
        await hub.stop()


def test_one_digest_job_per_timezone_at_nine_local_and_escalation_can_be_off():
    team = [{**TEAM[0], "timezone": "Asia/Yekaterinburg"}, *TEAM[1:]]
    settings = make_settings("sqlite+aiosqlite:///unused.db", users=team)
    plugin = Digests(Digests.Config(escalate_after="0s"), SimpleNamespace(settings=settings))
    jobs = {j.name: (j.daily_at, j.timezone, j.every) for j in plugin.hub_jobs()}
    assert jobs == {
        "digests.manager.Asia/Yekaterinburg": (time(9), "Asia/Yekaterinburg", None),
        "digests.manager.Europe/Moscow": (time(9), "Europe/Moscow", None),
        "digests.head.Europe/Moscow": (time(9, 30), "Europe/Moscow", None),
    }
    on = Digests(Digests.Config(), SimpleNamespace(settings=settings))
    assert any(j.every == timedelta(minutes=15) for j in on.hub_jobs())


async def test_a_claimed_daily_slot_is_not_run_again_and_three_days_down_run_the_latest_once(
    store_url, monkeypatch
):
    one, two = Store(store_url), Store(store_url)
    await one.upgrade()
    try:
        at = time(9)
        monday = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # 10:00 in Moscow
        slot = scheduler.last_slot(monday, at, MOSCOW)
        assert slot == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
        assert await scheduler.claim_slot(one, "digest", slot, monday)
        assert not await scheduler.claim_slot(two, "digest", slot, monday + timedelta(minutes=1))

        # Down from Monday until Thursday noon: one run, for Thursday's slot.
        thursday = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
        monkeypatch.setattr(scheduler, "utcnow", lambda: thursday)
        runs: list[datetime] = []

        async def job(slot: datetime) -> None:
            runs.append(slot)

        for store in (two, one):  # two processes start; only one runs the slot
            task = asyncio.create_task(scheduler.daily(store, "digest", at, MOSCOW, job))
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert runs == [datetime(2026, 11, 26, 6, 0, tzinfo=UTC)]
    finally:
        await one.close()
        await two.close()


async def test_a_started_hub_sends_the_latest_missed_digest_once_and_not_again_after_a_restart(
    store_url,
):
    async def running() -> Hub:
        settings = make_settings(
            store_url,
            plugins={"digests": {}, "inbox": {}},
            notifications={"poll_every": "0.05s"},
            rules={"audit_every": "0s"},
        )
        hub = make_hub(settings, extra={"digests": Digests, "inbox": InboxPlugin})
        await hub.start()
        return hub

    hub = await started(store_url)  # no jobs running: the store is filled first
    try:
        await deal(hub, ANNA, "Плитка", utcnow() - timedelta(days=3))
    finally:
        await hub.stop()
    # The hub was down at 09:00 today (or yesterday's, before nine): the digest of that slot
    # runs at start-up, once, and the sender delivers it.
    hub = await running()
    try:
        await wait_for(lambda: asyncio.sleep(0, INBOX.to(ANNA)))
        slot = scheduler.last_slot(utcnow(), time(9), MOSCOW)
        (message,) = INBOX.to(ANNA)
        assert message.key == f"digest:manager:{ANNA}:{slot.astimezone(MOSCOW).date()}:fake:{ANNA}"
    finally:
        await hub.stop()
    hub = await running()
    try:
        await asyncio.sleep(0.5)
        assert len(INBOX.to(ANNA)) == 1
        assert len([r for r in await outbox(hub) if r["address"] == ANNA]) == 1
    finally:
        await hub.stop()
