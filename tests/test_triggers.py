"""Triggers from the config on the example pipelines: after an event, a condition in CEL,
then actions (notify, a task in the owner's working time, close tasks, set fields, move a
stage through the guards), written with the event in one transaction as ``rule:trigger:NAME``."""

from __future__ import annotations

import time
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from structlog.testing import capture_logs

from hub.config import ConfigError
from hub.context import Hub
from hub.deals import SYSTEM, Refused
from hub.deals import changes as ch
from hub.deals.writer import MAX_REACTION_DEPTH
from hub.hookspecs import hookimpl
from hub.notify import Message, Recipient, Sent
from hub.notify.templates import Templates
from hub.store.models import Deal, DomainEvent, Notification, Task
from rules.stage_rules import StageRules
from rules.triggers import Triggers, compile_condition
from tests.conftest import ROOT, TEAM, make_hub, make_settings, wait_for
from tests.test_stage_rules import a_deal

EXAMPLE = tomllib.loads((ROOT / "config.example.toml").read_text())
MOSCOW_HOURS = {"working_hours": "09:00-18:00", "timezone": "Europe/Moscow"}


class Pager:
    """A notifier that reaches people by email address and chats by name."""

    name = "pager"
    retry_for = timedelta(hours=1)
    resend_interrupted = False
    concurrency = 1

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def address(self, recipient: Recipient) -> str | None:
        if recipient.email:
            return recipient.email
        return f"#{recipient.name}" if recipient.name else None

    async def send(self, message: Message) -> Sent:
        self.sent.append(message)
        return Sent(provider_id=str(len(self.sent)))


class PagerPlugin:
    """The smallest notifier plugin: one ``hub_notifiers`` hook."""

    def __init__(self) -> None:
        self.pager = Pager()

    @hookimpl
    def hub_notifiers(self) -> list[Pager]:
        return [self.pager]


# The example pipelines with their stages' on_enter actions taken out, for tests of triggers
# alone.
WITHOUT_STAGE_ACTIONS = {
    key: {**p, "stages": [{k: v for k, v in s.items() if k != "on_enter"} for s in p["stages"]]}
    for key, p in EXAMPLE["pipelines"].items()
}


def trigger_settings(url: str, *rules: dict[str, Any], pipelines: Any = None) -> Any:
    users = [{**TEAM[0], **MOSCOW_HOURS}, *TEAM[1:]]
    return make_settings(
        url,
        users=users,
        pipelines=pipelines or EXAMPLE["pipelines"],
        catalog=EXAMPLE["catalog"],
        plugins={
            "webforms": {"forms": {"contact": {"rate_limit": 100}}},
            "stage_rules": {},
            "pager": {},
            "triggers": {"rules": list(rules)},
        },
    )


def built(settings: Any) -> Hub:
    """A hub with the stage rules, the triggers and the pager; the outbox is not sent."""
    return make_hub(
        settings,
        extra={"stage_rules": StageRules, "triggers": Triggers, "pager": PagerPlugin},
        start_workers=False,
    )


async def started(url: str, *rules: dict[str, Any], pipelines: Any = None) -> Hub:
    hub = built(trigger_settings(url, *rules, pipelines=pipelines))
    await hub.start()
    return hub


async def outbox(hub: Hub) -> list[dict[str, Any]]:
    async with hub.store.read() as conn:
        rows = await conn.execute(select(Notification.__table__).order_by(Notification.id))
        return [dict(r._mapping) for r in rows]


async def event_id(hub: Hub, kind: str) -> int:
    async with hub.store.read() as conn:
        found = await conn.execute(
            select(DomainEvent.id).where(DomainEvent.type == kind).order_by(DomainEvent.id.desc())
        )
        return found.scalars().first()  # type: ignore[return-value]


async def tasks_of(hub: Hub, deal: int) -> list[dict[str, Any]]:
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(Task.__table__).where(Task.deal_id == deal).order_by(Task.id)
        )
        return [dict(r._mapping) for r in rows]


async def deal_row(hub: Hub, deal: int) -> dict[str, Any]:
    async with hub.store.read() as conn:
        row = (await conn.execute(select(Deal.__table__).where(Deal.id == deal))).one()
        return dict(row._mapping)


async def stage_of(hub: Hub, deal: int) -> str:
    assert hub.catalog is not None
    return hub.catalog.stages_by_id[(await deal_row(hub, deal))["stage_id"]].key


LOST_TO_COMPETITOR = {
    "name": "lost_to_competitor",
    "on": "deal.lost",
    "when": 'event.payload.reason == "Выбрали конкурента"',
    "actions": [{"notify": ["head"], "via": ["pager"]}],
}


async def test_a_deal_lost_to_a_competitor_queues_a_message_to_the_head(store_url):
    hub = await started(store_url, LOST_TO_COMPETITOR)
    try:
        deal = await a_deal(hub, segment="Розница", amount=650000)
        await hub.deals.apply(
            [ch.CloseLost(deal=deal, reason="Выбрали конкурента", competitor="Керама")], SYSTEM
        )
        lost = await event_id(hub, "deal.lost")
        (row,) = await outbox(hub)
        assert row["key"] == f"trigger:lost_to_competitor:event:{lost}:pager:olga@example.com"
        assert (row["notifier"], row["address"], row["template"]) == (
            "pager",
            "olga@example.com",
            "deal_lost",
        )
        assert (row["event_type"], row["deal_id"], row["queued_by"]) == (
            "deal.lost",
            deal,
            "rule:trigger:lost_to_competitor",
        )
        context = row["context"]
        assert context["trigger"] == "lost_to_competitor"
        assert context["deal"]["title"] == "Плитка"
        assert context["deal"]["owner"] == "Анна Смирнова"
        assert context["contact"]["name"] == "Ирина Волкова"
        assert context["event"]["payload"]["competitor"] == "Керама"
        assert context["from_stage_name"] == "Новая сделка"
        assert context["recipient"] == "Ольга Кузнецова"
        assert context["link"].endswith(f"/deals/{deal}")
        # What the head reads: the built-in template, in Russian.
        shown = Templates().render(row["template"], row["context"])
        assert shown["subject"] == "Сделка проиграна: Плитка"
        assert "Ушла к конкуренту: Керама." in shown["text"]
        assert "<b>Керама</b>" in shown["telegram"] and "<br" not in shown["telegram"]
    finally:
        await hub.stop()


async def test_a_condition_decides_by_the_deal_and_the_event(store_url):
    hub = await started(
        store_url,
        {
            "name": "big_deal_lost_on_price",
            "on": ["deal.lost"],
            "when": 'deal.amount > 100000.0 && event.payload.reason == "Дорого"',
            "actions": [{"notify": ["head"]}],
        },
    )
    try:
        big_on_price = await a_deal(hub, amount=150000)
        small_on_price = await a_deal(hub, amount=90000)
        big_no_budget = await a_deal(hub, amount=300000)
        await hub.deals.apply(
            [
                ch.CloseLost(deal=big_on_price, reason="Дорого"),
                ch.CloseLost(deal=small_on_price, reason="Дорого"),
                ch.CloseLost(deal=big_no_budget, reason="Нет бюджета"),
            ],
            SYSTEM,
        )
        assert [(r["deal_id"], r["address"]) for r in await outbox(hub)] == [
            (big_on_price, "olga@example.com")
        ]
    finally:
        await hub.stop()


async def test_a_condition_failing_on_an_event_is_false_and_logged_once_by_name(store_url):
    hub = await started(
        store_url,
        {
            "name": "tender",
            "on": "deal.created",
            "when": 'deal.custom.tender_no != ""',
            "actions": [{"notify": ["head"]}],
        },
    )
    try:
        with capture_logs() as logs:
            await a_deal(hub)  # no custom field tender_no: the condition cannot say
            await a_deal(hub)
            tender = await a_deal(hub, custom={"tender_no": "0173100012526000042"})
        failed = [e for e in logs if e["event"] == "trigger_condition_failed"]
        assert [e["trigger"] for e in failed] == ["tender"]
        assert [r["deal_id"] for r in await outbox(hub)] == [tender]
    finally:
        await hub.stop()


def test_a_condition_that_does_not_compile_stops_start_up_naming_the_trigger(sqlite_url):
    fine = {"name": "won", "on": "deal.won", "actions": [{"notify": ["head"]}]}
    broken = {
        "name": "big_deal",
        "on": "deal.stage_changed",
        "when": "deal.amount >",
        "actions": [{"notify": ["head"]}],
    }
    typo = {**broken, "name": "typo", "when": "dael.amount > 500000.0"}
    with pytest.raises(ConfigError) as caught:
        built(trigger_settings(sqlite_url, fine, broken, typo))
    message = str(caught.value)
    assert len(message.splitlines()) == 2, message
    assert message.splitlines()[0] == (
        "plugins.triggers.rules.1.when: trigger 'big_deal': does not compile: "
        "line 1, column 14: Syntax error: mismatched input '<EOF>'"
    )
    assert (
        "plugins.triggers.rules.2.when: trigger 'typo': unknown name 'dael': "
        "a condition sees event, deal, contact" in message
    )


def test_actions_are_checked_against_the_pipelines_and_the_team(sqlite_url):
    bad = {
        "name": "bad",
        "on": "deal.created",
        "actions": [
            {"move_to": "signed"},
            {"notify": ["user:nobody@example.com"]},
            {"task": "Позвонить", "notify": ["owner"]},
            {"set": {"stage": "won"}},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        built(trigger_settings(sqlite_url, bad))
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("plugins.triggers.rules.0.actions.0.move_to: no open stage 'signed'")
    assert lines[1] == (
        "plugins.triggers.rules.0.actions.1.notify: "
        "'user:nobody@example.com': no such user under [[users]]"
    )
    assert lines[2].startswith(
        "plugins.triggers.rules.0.actions.2: an action does exactly one of notify, task, "
        "close_tasks, set, move_to (found notify, task)"
    )
    assert lines[3].startswith("plugins.triggers.rules.0.actions.3.set: 'stage' is not a field")


async def test_a_trigger_task_is_due_in_the_owners_working_time(store_url):
    hub = await started(
        store_url,
        {
            "name": "big_new_deal_call",
            "on": "deal.created",
            "when": "deal.amount >= 500000.0",
            "actions": [{"task": "Созвониться с ЛПР по крупной сделке", "due": "4h"}],
        },
    )
    try:
        assert hub.catalog is not None
        sales = hub.catalog.pipelines["sales"]
        anna = hub.catalog.user_ids["anna@example.com"]
        deal = ch.CreateDeal(
            title="Керамогранит для ТЦ",
            pipeline_id=sales.id,
            stage_id=sales.entry_stage.id,
            contact=ch.CreateContact(name="Павел Орлов", owner_id=anna),
            owner_id=anna,
            amount=1200000,
        )
        # Wednesday 16:00 in Moscow: two hours today, two more from 09:00 on Thursday.
        wednesday = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
        async with hub.store.write() as conn:
            await hub.deals.apply_in(conn, [deal.contact, deal], SYSTEM, wednesday)  # type: ignore[list-item]
        assert deal.id is not None
        (task,) = await tasks_of(hub, deal.id)
        assert task["title"] == "Созвониться с ЛПР по крупной сделке"
        assert task["owner_id"] == anna
        assert task["due_at"] == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # 11:00 Moscow
    finally:
        await hub.stop()


async def test_a_trigger_closes_open_tasks_sets_fields_and_moves_the_deal(store_url):
    hub = await started(
        store_url,
        {
            "name": "from_a_client",
            "on": "deal.created",
            "when": 'deal.source == "От клиента"',
            "actions": [
                {"set": {"segment": "Опт", "custom": {"referral": True}}},
                {"move_to": "qualified"},
            ],
        },
        {
            "name": "tidy_lost",
            "on": "deal.lost",
            "actions": [{"close_tasks": True}],
        },
        pipelines=WITHOUT_STAGE_ACTIONS,
    )
    try:
        referred = await a_deal(hub, source="От клиента")
        row = await deal_row(hub, referred)
        assert (row["segment"], row["custom"]) == ("Опт", {"referral": True})
        assert await stage_of(hub, referred) == "qualified"
        async with hub.store.read() as conn:
            mover = (
                await conn.execute(
                    select(DomainEvent.payload).where(DomainEvent.type == "deal.stage_changed")
                )
            ).scalar_one()
        assert mover["actor"] == {"kind": "rule", "name": "trigger:from_a_client", "user_id": None}

        await hub.deals.apply([ch.CloseLost(deal=referred, reason="Неактуально")], SYSTEM)
        (task,) = await tasks_of(hub, referred)
        assert task["done_at"] is not None
        assert task["result"] == "Закрыта автоматически правилом «tidy_lost»"
    finally:
        await hub.stop()


async def test_a_trigger_move_refused_by_the_stage_rules_leaves_the_triggering_write(store_url):
    hub = await started(
        store_url,
        {
            "name": "straight_to_proposal",
            "on": "deal.created",
            "actions": [{"move_to": "proposal"}],
        },
    )
    try:
        with capture_logs() as logs:
            deal = await a_deal(hub)  # no amount: "Направить КП" needs one
        assert await stage_of(hub, deal) == "new"
        (refusal,) = [e for e in logs if e["event"] == "rule_refused"]
        assert refusal["rule"] == "trigger:straight_to_proposal"
        assert refusal["reasons"] == ["Этап «Направить КП» требует: сумма"]
    finally:
        await hub.stop()


async def test_triggers_moving_a_deal_back_and_forth_stop_at_the_depth_limit(store_url):
    hub = await started(
        store_url,
        {
            "name": "back",
            "on": "deal.stage_changed",
            "when": 'event.payload.to_stage == "qualified"',
            "actions": [{"move_to": "new"}],
        },
        {
            "name": "forth",
            "on": "deal.stage_changed",
            "when": 'event.payload.to_stage == "new"',
            "actions": [{"move_to": "qualified"}],
        },
    )
    try:
        deal = await a_deal(hub, segment="Розница")
        with capture_logs() as logs:
            await hub.deals.apply([ch.MoveStage(deal=deal, stage="qualified")], SYSTEM)
        async with hub.store.read() as conn:
            moves = (
                await conn.execute(
                    select(func.count()).where(DomainEvent.type == "deal.stage_changed")
                )
            ).scalar_one()
        assert moves == MAX_REACTION_DEPTH  # the person's move, then four by the rules
        assert await stage_of(hub, deal) == "qualified"
        (cut,) = [e for e in logs if e["event"] == "rule_depth_exceeded"]
        assert (cut["rule"], cut["depth"]) == ("trigger:back", MAX_REACTION_DEPTH)
    finally:
        await hub.stop()


async def test_a_refused_batch_queues_nothing_and_a_rolled_back_one_neither(store_url):
    hub = await started(
        store_url,
        {"name": "moved", "on": "deal.stage_changed", "actions": [{"notify": ["owner", "head"]}]},
    )
    try:
        deal = await a_deal(hub)  # no segment: "Собрать требования" needs one
        with pytest.raises(Refused):
            await hub.deals.apply([ch.MoveStage(deal=deal, stage="qualified")], SYSTEM)
        assert await outbox(hub) == []

        class Abandoned(Exception):
            pass

        async def abandon() -> None:
            async with hub.store.write() as conn:
                changes = [
                    ch.SetDealFields(deal=deal, segment="Розница"),
                    ch.MoveStage(deal=deal, stage="qualified"),
                ]
                await hub.deals.apply_in(conn, changes, SYSTEM)
                async with hub.store.read() as peek:  # not committed: nobody else sees it
                    assert not (await peek.execute(select(Notification.id))).first()
                raise Abandoned

        with pytest.raises(Abandoned):
            await abandon()
        assert await outbox(hub) == []

        await hub.deals.apply(
            [
                ch.SetDealFields(deal=deal, segment="Розница"),
                ch.MoveStage(deal=deal, stage="qualified"),
            ],
            SYSTEM,
        )
        assert sorted(r["address"] for r in await outbox(hub)) == [
            "anna@example.com",
            "olga@example.com",
        ]
    finally:
        await hub.stop()


async def test_an_event_without_a_deal_notifies_with_the_client(store_url):
    hub = await started(
        store_url,
        {
            "name": "possible_duplicate",
            "on": "contact.possible_duplicate",
            "actions": [{"notify": ["chat:sales"]}],
        },
    )
    try:
        first = ch.CreateContact(name="Сергей Белов", city="Пермь")
        second = ch.CreateContact(name="Сергей Белов", city="Пермь")
        await hub.deals.apply([first, second], SYSTEM)
        await hub.deals.apply(
            [
                ch.FlagDuplicate(
                    contact=second, other=first, score=0.7, reasons=["то же имя"], origin="scan"
                )
            ],
            SYSTEM,
        )
        (row,) = await outbox(hub)
        assert (row["address"], row["template"]) == ("#sales", "trigger")
        assert row["context"]["contact"] == {
            "name": "Сергей Белов",
            "city": "Пермь",
            "segment": None,
        }
        shown = Templates().render("trigger", row["context"])
        assert shown["subject"] == "possible_duplicate: Сергей Белов"
        assert "Клиент: Сергей Белов, Пермь." in shown["text"]
    finally:
        await hub.stop()


async def test_a_batch_nobody_listens_to_costs_no_query(sqlite_url):
    hub = built(trigger_settings(sqlite_url, LOST_TO_COMPETITOR))
    plugin = hub.plugins.pm.get_plugin("triggers")
    now = datetime.now(UTC)
    events = [
        {
            "id": n,
            "type": kind,
            "subject": kind.split(".")[0],
            "subject_id": n,
            "payload": {"actor": {"kind": "lead_pipeline"}, "v": 1},
            "occurred_at": now,
        }
        for n in range(64)
        for kind in ("contact.created", "task.created", "lead.received", "activity.logged")
    ]
    started_at = time.perf_counter()
    found = await plugin.hub_react(events=events, store=None)  # the store is never touched
    took = time.perf_counter() - started_at
    assert found == []
    assert took < 0.005, f"{len(events)} events took {took * 1e6:.0f} µs"


MISSED_CALL = {
    "name": "missed_call",
    "on": ["activity.logged", "call.missed"],
    "when": 'event.payload.kind == "call" && event.payload.result == "missed"',
    "actions": [{"task": "Перезвонить клиенту", "due": "15m"}],
}


async def test_missed_call_creates_one_callback_task_for_owner(store_url):
    hub = await started(store_url, MISSED_CALL)
    try:
        deal = await a_deal(hub, with_task=False)
        assert hub.catalog is not None
        anna = hub.catalog.user_ids["anna@example.com"]
        stranger = ch.CreateContact(name="Незнакомый номер", owner_id=anna)
        # Wednesday 17:50 in Moscow: ten minutes today, five more from 09:00 on Thursday.
        evening = datetime(2026, 11, 25, 14, 50, tzinfo=UTC)
        calls = [
            ch.LogActivity(
                activity="call", summary="Пропущенный вызов", deal=deal, result="missed"
            ),
            ch.LogActivity(activity="call", summary="Разговор 3 мин", deal=deal, result="answered"),
            stranger,
            ch.LogActivity(
                activity="call", summary="Пропущенный вызов", contact=stranger, result="missed"
            ),
        ]
        async with hub.store.write() as conn:
            await hub.deals.apply_in(conn, calls, SYSTEM, evening)
        (callback,) = await tasks_of(hub, deal)
        assert (callback["title"], callback["owner_id"]) == ("Перезвонить клиенту", anna)
        assert callback["due_at"] == datetime(2026, 11, 26, 6, 5, tzinfo=UTC)  # 09:05 Moscow
        async with hub.store.read() as conn:
            (theirs,) = (
                await conn.execute(select(Task.__table__).where(Task.contact_id == stranger.id))
            ).all()
        assert (theirs.deal_id, theirs.owner_id) == (None, anna)
        assert theirs.due_at == datetime(2026, 11, 26, 6, 5, tzinfo=UTC)
    finally:
        await hub.stop()


async def test_a_condition_sees_the_client_and_the_owner(store_url):
    hub = await started(
        store_url,
        {
            "name": "ural_deals_to_head",
            "on": "deal.created",
            "when": (
                'contact.city in ["Екатеринбург", "Пермь"] && deal.owner == "anna@example.com" '
                '&& deal.title.lowerAscii().startsWith("tile")'
            ),
            "actions": [{"notify": ["head"]}],
        },
    )
    try:
        assert hub.catalog is not None
        sales = hub.catalog.pipelines["sales"]
        anna = hub.catalog.user_ids["anna@example.com"]
        made = []
        for title, city in (("TILE 60x60", "Пермь"), ("TILE 30x30", "Москва"), ("Клей", "Пермь")):
            contact = ch.CreateContact(name="Клиент", city=city, owner_id=anna)
            deal = ch.CreateDeal(
                title=title,
                pipeline_id=sales.id,
                stage_id=sales.entry_stage.id,
                contact=contact,
                owner_id=anna,
            )
            made.append(deal)
            await hub.deals.apply([contact, deal], SYSTEM)
        assert [r["deal_id"] for r in await outbox(hub)] == [made[0].id]
    finally:
        await hub.stop()


async def test_the_head_receives_the_lost_deal_in_russian_through_the_notifier(store_url):
    settings = trigger_settings(store_url, LOST_TO_COMPETITOR)
    settings.notifications.poll_every = timedelta(milliseconds=50)
    hub = make_hub(
        settings, extra={"stage_rules": StageRules, "triggers": Triggers, "pager": PagerPlugin}
    )
    await hub.start()
    try:
        pager = hub.plugins.pm.get_plugin("pager").pager
        deal = await a_deal(hub, amount=650000)
        await hub.deals.apply(
            [ch.CloseLost(deal=deal, reason="Выбрали конкурента", competitor="Керама")], SYSTEM
        )

        async def delivered() -> list[Message]:
            return pager.sent

        (message,) = await wait_for(delivered)
        assert (message.address, message.event_type) == ("olga@example.com", "deal.lost")
        assert message.subject == "Сделка проиграна: Плитка"
        assert message.text.splitlines()[:3] == [
            "Сделка «Плитка» на 650\u202f000 ₽ проиграна на этапе «Новая сделка».",
            "Причина: Выбрали конкурента.",
            "Ушла к конкуренту: Керама.",
        ]
        assert message.link is not None and message.link.endswith(f"/deals/{deal}")
    finally:
        await hub.stop()


def test_with_no_triggers_and_no_stage_actions_the_writer_asks_no_rules(sqlite_url):
    idle = built(trigger_settings(sqlite_url, pipelines=WITHOUT_STAGE_ACTIONS))
    assert idle.plugins.pm.get_plugin("triggers") is not None
    assert idle.deals._react is None
    busy = built(trigger_settings(sqlite_url, LOST_TO_COMPETITOR))
    assert busy.deals._react is not None


CONDITIONS = [
    'event.payload.kind == "call" && event.payload.result == "missed"',
    'deal.amount > 100000.0 && event.payload.reason == "Дорого"',
    'contact.city.lowerAscii() == "samara" || deal.source == "Сайт"',
    'has(deal.segment) && deal.custom.exists(k, k == "contract_date")',
    '"deal.amount" == event.type',
]


@settings(max_examples=200, deadline=None)
@given(
    source=st.sampled_from(CONDITIONS),
    amount=st.one_of(st.none(), st.floats(0, 1e7, allow_nan=False)),
    reason=st.sampled_from(["Дорого", "Нет бюджета", None]),
    kind=st.sampled_from(["call", "email", "form"]),
    city=st.sampled_from(["Samara", "Москва", None]),
    custom=st.dictionaries(st.sampled_from(["contract_date", "product"]), st.text(max_size=3)),
)
def test_a_condition_reads_only_its_paths_and_decides_as_on_all_variables(
    source, amount, reason, kind, city, custom
):
    condition = compile_condition(source)
    deal: dict[str, Any] = {"id": 1, "source": "Сайт", "custom": custom, "title": "Плитка"}
    if amount is not None:
        deal["amount"] = amount
    contact = {"name": "Ирина"} | ({"city": city} if city else {})
    payload = {"kind": kind, "result": "missed", "actor": {"kind": "user"}}
    if reason is not None:
        payload["reason"] = reason
    variables = {
        "event": {"id": 7, "type": "deal.lost", "payload": payload},
        "deal": deal,
        "contact": contact,
    }

    def outcome(run: Any) -> Any:
        try:
            return run()
        except Exception as error:  # a missing key: the trigger counts it as false
            return type(error).__name__

    assert outcome(lambda: condition.holds(variables)) == outcome(
        lambda: condition.program.execute(variables)
    )
