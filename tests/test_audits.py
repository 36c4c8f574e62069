"""Hygiene audits: what breaks the sales rules is found in the store, reported once, kept with
its age, and cleared when fixed."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from sqlalchemy import select

from hub.audit import Finding, run_audits
from hub.cli import main
from hub.config import User
from hub.context import Hub
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.hookspecs import hookimpl
from hub.store.models import Deal, DomainEvent, Violation
from hub.store.types import utcnow
from rules.audits import HygieneAudits
from tests.conftest import make_hub
from tests.test_cli import config, seed  # noqa: F401  (the fixture)
from tests.test_stage_rules import a_deal, example_settings


async def audited(store_url: str, **anna: Any) -> Hub:
    """A hub with the built-in audits; ``anna`` overrides fields of anna's user entry."""
    settings = example_settings(store_url)
    settings.plugins = {"webforms": settings.plugins["webforms"], "hygiene_audits": {}}
    settings.users = [
        User(**{**u.model_dump(), **anna}) if u.email == "anna@example.com" else u
        for u in settings.users
    ]
    settings.rules.audit_every = timedelta(0)  # the test runs the audits itself
    hub = make_hub(settings, extra={"hygiene_audits": HygieneAudits})
    await hub.start()
    return hub


async def open_violations(hub: Hub) -> set[tuple[str, str, int]]:
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(Violation.rule, Violation.subject, Violation.subject_id).where(
                Violation.resolved_at.is_(None)
            )
        )
        return {tuple(r) for r in rows}  # type: ignore[misc]


async def events(hub: Hub, kind: str) -> list[dict[str, Any]]:
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(DomainEvent.subject_id, DomainEvent.payload)
            .where(DomainEvent.type == kind)
            .order_by(DomainEvent.id)
        )
        return [{"subject_id": s, **p} for s, p in rows]


async def test_hook_hub_audits_finds_each_broken_rule_once_and_clears_it_when_fixed(store_url):
    hub = await audited(store_url)
    try:
        tidy = await a_deal(hub, segment="Розница")
        no_task = await a_deal(hub, segment="Розница", with_task=False)
        overdue = await a_deal(hub, segment="Розница", with_task=False)
        late = ch.AddTask(title="Перезвонить", due_at=utcnow() - timedelta(hours=2), deal=overdue)
        no_segment = await a_deal(hub)
        mute = ch.CreateContact(name="Без связи", segment="Опт")
        skipper = await a_deal(hub, segment="Розница")
        await hub.deals.apply(
            [late, mute, ch.MoveStage(deal=skipper, stage="objections")], SYSTEM
        )  # no stage rules here: the jump is what imported data looks like
        report = await run_audits(hub)
        found = await open_violations(hub)
        assert ("no_task", "deal", no_task) in found
        assert ("overdue_task", "task", late.id) in found
        assert ("deal_no_segment", "deal", no_segment) in found
        assert ("no_points", "contact", mute.id) in found
        assert any(rule == "skipped_stage" for rule, _, _ in found)
        assert not any(subject == "deal" and i == tidy for _, subject, i in found)
        assert report.opened == len(found) and report.resolved == 0
        (overdue_event,) = await events(hub, "task.overdue")
        assert overdue_event["subject_id"] == late.id
        assert overdue_event["detail"].startswith("задача «Перезвонить» просрочена")
        assert overdue_event["actor"] == {"kind": "rule", "name": "audit", "user_id": None}

        again = await run_audits(hub)  # nothing new: reported once
        assert (again.opened, again.resolved) == (0, 0)
        assert len(await events(hub, "task.overdue")) == 1

        await hub.deals.apply(
            [
                ch.CompleteTask(task=late.id, result="дозвонились"),  # type: ignore[arg-type]
                ch.AddTask(title="Встреча", due_at=utcnow() + timedelta(days=1), deal=overdue),
                ch.SetDealFields(deal=no_segment, segment="Опт"),
            ],
            SYSTEM,
        )
        cleared = await run_audits(hub)
        assert cleared.resolved == 2
        assert {e["rule"] for e in await events(hub, "rule.resolved")} == {
            "overdue_task",
            "deal_no_segment",
        }

        stale = await run_audits(hub, utcnow() + timedelta(days=3))
        assert stale.opened >= 1
        assert tidy in {e["subject_id"] for e in await events(hub, "deal.stale")}
        assert any(
            e["detail"] == "на этапе «Новая сделка» дольше 2 дн."
            for e in await events(hub, "deal.stale")
        )
    finally:
        await hub.stop()


def test_hub_rules_audit_prints_violations_by_manager(config):  # noqa: F811
    seed(config)
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "tasks", "done", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["--config", str(config), "rules", "audit"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # The seeded lead came without a segment, and its only task is done.
    assert lines[0].startswith("3 open violations (")  # some found by the daemon's own run
    owner, rules = lines[1].strip().split(": 3 — ")
    assert owner == "anna@example.com"
    assert set(rules.split(", ")) == {"no_task 1", "deal_no_segment 1", "contact_no_segment 1"}


async def test_a_scheduled_job_runs_once_per_slot_across_processes_and_once_after_downtime(
    store_url,
):
    from hub import scheduler
    from hub.store import Store

    one, two = Store(store_url), Store(store_url)
    await one.upgrade()
    try:
        hour = timedelta(hours=1)
        now = utcnow()
        claims = [
            await scheduler.claim(store, "audit", hour, now) for store in (one, two, one, two)
        ]
        assert [c is not None for c in claims] == [True, False, False, False]
        # Down for five slots: the job is due once, not five times.
        later = now + 5 * hour
        again = [await scheduler.claim(store, "audit", hour, later) for store in (two, one)]
        assert [c is not None for c in again] == [True, False]
        assert await scheduler.next_due(one, "audit", hour) == later + hour
    finally:
        await one.close()
        await two.close()


def next_weekday(weekday: int, at: time, zone: str) -> datetime:
    """The first such day and time at least two days ahead: after any deal a test creates now."""
    day = (utcnow() + timedelta(days=2)).astimezone(ZoneInfo(zone)).date()
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return datetime.combine(day, at, ZoneInfo(zone))


async def a_call(hub: Hub, deal: int, when: datetime) -> None:
    call = ch.LogActivity(activity="call", summary="Звонок", deal=deal, occurred_at=when)
    await hub.deals.apply([call], SYSTEM)


async def test_a_friday_evening_call_keeps_a_one_day_cadence_over_the_weekend(store_url):
    hub = await audited(store_url, timezone="Europe/Moscow", working_hours="09:00-18:00")
    try:
        deal = await a_deal(hub, segment="Розница")  # stage "new": a call within 1d
        friday = next_weekday(4, time(17), "Europe/Moscow")
        await a_call(hub, deal, friday)
        broken = ("cadence_broken", "deal", deal)

        await run_audits(hub, friday + timedelta(hours=43))  # Sunday noon
        assert broken not in await open_violations(hub)
        await run_audits(hub, friday + timedelta(days=3, minutes=-30))  # Monday 16:30
        assert broken not in await open_violations(hub)
        await run_audits(hub, friday + timedelta(days=3, minutes=30))  # Monday 17:30
        assert broken in await open_violations(hub)
        (event,) = [e for e in await events(hub, "rule.violated") if e["rule"] == "cadence_broken"]
        assert (
            event["detail"] == "нет звонка, письма или встречи дольше, чем 1 дн. рабочего времени "
            "(этап «Новая сделка»)"
        )

        await a_call(hub, deal, friday + timedelta(days=3, minutes=40))
        cleared = await run_audits(hub, friday + timedelta(days=3, hours=1))
        assert broken not in await open_violations(hub)
        assert cleared.resolved >= 1
    finally:
        await hub.stop()


async def test_cadence_counts_the_owners_own_timezone_and_hours(store_url):
    # Anna works 10:00-14:00 in Vladivostok (UTC+10), the hub is in Moscow (UTC+3):
    # her working day is four hours long, and it ends while Moscow sleeps.
    hub = await audited(store_url, timezone="Asia/Vladivostok", working_hours="10:00-14:00")
    try:
        deal = await a_deal(hub, segment="Розница")
        friday = next_weekday(4, time(13), "Asia/Vladivostok")
        await a_call(hub, deal, friday)
        broken = ("cadence_broken", "deal", deal)

        # Monday 11:30 in Vladivostok: 70 clock hours, but 2.5 of her working hours. Counted
        # in Moscow's 10:00-14:00 the call (06:00 there) would have been due on Friday.
        await run_audits(hub, friday + timedelta(days=3, hours=-1, minutes=-30))
        assert broken not in await open_violations(hub)
        # Monday 13:30: a whole working day of hers passed.
        await run_audits(hub, friday + timedelta(days=3, minutes=30))
        assert broken in await open_violations(hub)
    finally:
        await hub.stop()


async def test_owners_without_working_hours_keep_their_cadence_over_days_off(store_url):
    # No working_hours: whole working days (Monday to Friday by default) count.
    hub = await audited(store_url)
    try:
        deal = await a_deal(hub, segment="Розница")
        friday = next_weekday(4, time(20), "Europe/Moscow")
        await a_call(hub, deal, friday)
        broken = ("cadence_broken", "deal", deal)
        await run_audits(hub, friday + timedelta(days=3, hours=-1))  # Monday 19:00
        assert broken not in await open_violations(hub)
        await run_audits(hub, friday + timedelta(days=3, hours=1))  # Monday 21:00
        assert broken in await open_violations(hub)
    finally:
        await hub.stop()


async def test_two_audit_runs_at_once_report_each_finding_once(store_url):
    hub = await audited(store_url)
    try:
        await a_deal(hub, with_task=False)
        one, two = await asyncio.gather(run_audits(hub), run_audits(hub))
        assert one.opened + two.opened == len(await open_violations(hub))
        assert len(await events(hub, "rule.violated")) == len(await open_violations(hub))
    finally:
        await hub.stop()


class BigDealsWithoutCompany:
    """A third party's audit, handing back a list (``hub_audits`` in docs/plugins.md)."""

    name, severity = "big_deal_no_company", "yellow"

    async def find(self, store: Any, now: Any, hub: Any) -> list[Finding]:
        rows = await store.execute(
            select(Deal.id, Deal.owner_id).where(Deal.amount > 1_000_000, Deal.company_id.is_(None))
        )
        return [Finding(self.name, "deal", i, o, "крупная сделка без компании") for i, o in rows]

    @hookimpl
    def hub_audits(self) -> list[Any]:
        return [self]


async def test_an_audit_may_hand_back_a_list_of_findings(store_url):
    settings = example_settings(store_url)
    settings.plugins = {"webforms": settings.plugins["webforms"], "big_deals": {}}
    settings.rules.audit_every = timedelta(0)
    hub = make_hub(settings, extra={"big_deals": BigDealsWithoutCompany})
    await hub.start()
    try:
        big = await a_deal(hub, amount=2_000_000)
        await a_deal(hub, amount=10_000)
        first = await run_audits(hub)
        assert await open_violations(hub) == {("big_deal_no_company", "deal", big)}
        assert (first.opened, first.open) == (1, 1)
        await hub.deals.apply([ch.SetDealFields(deal=big, amount=900_000)], SYSTEM)
        cleared = await run_audits(hub)
        assert (cleared.resolved, cleared.open) == (1, 0)
    finally:
        await hub.stop()
