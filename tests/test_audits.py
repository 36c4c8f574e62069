"""Hygiene audits: what breaks the sales rules is found in the store, reported once, kept with
its age, and cleared when fixed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from hub.audit import run_audits
from hub.cli import main
from hub.context import Hub
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.store.models import DomainEvent, Violation
from hub.store.types import utcnow
from rules.audits import HygieneAudits
from tests.conftest import make_hub
from tests.test_cli import config, seed  # noqa: F401  (the fixture)
from tests.test_stage_rules import a_deal, example_settings


async def audited(store_url: str) -> Hub:
    settings = example_settings(store_url)
    settings.plugins = {"webforms": settings.plugins["webforms"], "hygiene_audits": {}}
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
