"""`hub rules simulate`: a changed policy tried on the recorded stage moves, refusing by
manager and by reason, with the deal restored as it was before each move, writing nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.cli import main
from hub.commands.common import offline_hub
from hub.config import Settings, load_settings
from hub.context import Hub
from hub.deals import SYSTEM, Actor
from hub.deals import changes as ch
from hub.domain.normalize import phone_point
from hub.plugins import PluginHost
from hub.store.models import Base
from hub.store.ops import sync_config
from hub.store.types import utcnow
from rules.simulate import Report, candidate_settings, headline, simulate
from rules.stage_rules import StageRules
from tests.conftest import ROOT

NOW = utcnow()
DECISION_MAKER = "Этап «Возражения обрабатываем» требует: decision_maker"
COMPETITOR = "Причина «Дорого» требует указать конкурента"
SKIP = (
    "Нельзя перескочить этапы: из «Новая сделка» сразу в «Договор обсуждаем». "
    "Следующий этап — «Собрать требования»"
)
CONTRACT_NEEDS = "Этап «Договор обсуждаем» требует: сумма, email клиента, contract_date"
IMPORT_MAY_NOT = "Обойти правило может руководитель или администратор, а не import"


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def config_text(store_url: str) -> str:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('url = "sqlite+aiosqlite:///var/hub.db"', f'url = "{store_url}"')
    return "\n".join(
        line for line in text.splitlines() if not line.startswith(("working_hours", "working_days"))
    )


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    """The example config on the store under test (SQLite, then PostgreSQL)."""
    path = tmp_path / "config.toml"
    path.write_text(config_text(store_url))
    return path


@pytest.fixture
def candidate(config: Path) -> Path:
    """The example policy, plus: the objections stage needs the decision maker, and a deal
    lost as too expensive names the competitor."""
    text = config.read_text()
    text = text.replace(
        'name = "Возражения обрабатываем"\n',
        'name = "Возражения обрабатываем"\nrequired_fields = ["custom.decision_maker"]\n',
    )
    text = text.replace(
        'competitor_reasons = ["Выбрали конкурента"]',
        'competitor_reasons = ["Выбрали конкурента", "Дорого"]',
    )
    path = config.parent / "candidate.toml"
    path.write_text(text)
    return path


class Seed:
    """Deals moved through the example sales pipeline, at given times, through the writer."""

    def __init__(self, hub: Hub) -> None:
        assert hub.catalog is not None
        self.hub = hub
        self.users = hub.catalog.user_ids
        self.sales = hub.catalog.pipelines["sales"]

    def user(self, email: str, role: str = "manager") -> Actor:
        return Actor.user(self.users[email], email, role)

    async def apply(self, changes: list[ch.Change], actor: Actor, at: datetime) -> None:
        async with self.hub.store.write() as conn:
            await self.hub.deals.apply_in(conn, changes, actor, at)

    async def deal(self, owner: str, title: str, at: datetime, **fields: Any) -> int:
        fields = {"segment": "Розница", "amount": Decimal(90000), **fields}
        contact = ch.CreateContact(
            name=f"Клиент: {title}",
            owner_id=self.users[owner],
            points=[phone_point("+79125550102", "RU")],
        )
        deal = ch.CreateDeal(
            title=title,
            pipeline_id=self.sales.id,
            stage_id=self.sales.entry_stage.id,
            contact=contact,
            owner_id=self.users[owner],
            **fields,
        )
        task = ch.AddTask(title="Позвонить", due_at=at + timedelta(days=1), deal=deal)
        await self.apply([contact, deal, task], SYSTEM, at)
        assert deal.id is not None
        return deal.id

    async def moves(self, deal: int, actor: Actor, *steps: tuple[float, str]) -> None:
        for days, stage in steps:
            await self.apply([ch.MoveStage(deal=deal, stage=stage)], actor, ago(days))


async def seed_history(config: Path) -> dict[str, int]:
    """Two managers' deals under the example policy (stage rules on), a head's override,
    and an import that skipped stages before the rules were switched on."""
    settings = load_settings(config)
    deals: dict[str, int] = {}
    async with offline_hub(settings) as hub:
        seed = Seed(hub)
        anna, dmitry = seed.user("anna@example.com"), seed.user("dmitry@example.com")
        olga = seed.user("olga@example.com", "head")
        for name, owner in [
            ("A1", "anna"),
            ("A2", "anna"),
            ("A3", "anna"),
            ("A4", "anna"),
            ("D1", "dmitry"),
            ("D2", "dmitry"),
            ("D3", "dmitry"),
        ]:
            deals[name] = await seed.deal(f"{owner}@example.com", f"Сделка {name}", ago(25))
        deals["D4"] = await seed.deal("dmitry@example.com", "Сделка D4", ago(45))
        deals["A5"] = await seed.deal("anna@example.com", "Сделка A5", ago(25), amount=None)
        # A1 reaches objections; its decision maker is written down only a week later.
        await seed.moves(deals["A1"], anna, (19, "qualified"), (18, "proposal"), (17, "objections"))
        decided = ch.SetDealFields(deal=deals["A1"], custom={"decision_maker": "Иванов"})
        await seed.apply([decided], anna, ago(10))
        # A2's decision maker is known before it moves.
        decided = ch.SetDealFields(deal=deals["A2"], custom={"decision_maker": "Петров"})
        await seed.apply([decided], anna, ago(16))
        await seed.moves(deals["A2"], anna, (15, "qualified"), (14, "proposal"), (13, "objections"))
        await seed.moves(
            deals["D1"], dmitry, (12, "qualified"), (11, "proposal"), (10, "objections")
        )
        await seed.moves(deals["A3"], anna, (9, "qualified"))
        await seed.apply([ch.CloseLost(deal=deals["A3"], reason="Дорого")], anna, ago(8))
        await seed.apply([ch.CloseLost(deal=deals["D2"], reason="Дорого")], dmitry, ago(7))
        lost = ch.CloseLost(deal=deals["D3"], reason="Выбрали конкурента", competitor="Керама")
        await seed.apply([lost], dmitry, ago(6))
        skip = ch.MoveStage(deal=deals["A4"], stage="objections", override="клиент сам выбрал")
        await seed.apply([skip], olga, ago(5.5))
        await seed.moves(
            deals["D4"], dmitry, (42, "qualified"), (41, "proposal"), (40, "objections")
        )
    # The import ran before the stage rules were on: the history has its skip.
    settings.plugins["stage_rules"] = {"enabled": False}
    async with offline_hub(settings) as hub:
        imported = ch.MoveStage(
            deal=deals["A5"], stage="contract", override="перенос из старой CRM"
        )
        await Seed(hub).apply([imported], Actor.importer("crm.xlsx"), ago(4.5))
    return deals


@asynccontextmanager
async def stage_rules_only(settings: Settings) -> AsyncIterator[Hub]:
    """A hub writing under the stage rules alone: no rule answers the moves with tasks and
    notifications, so thousands of them are seeded in a moment."""
    alone = settings.model_copy(update={"plugins": {"stage_rules": {}}})
    host = PluginHost(alone, load_entry_points=False, extra={"stage_rules": StageRules})
    hub = Hub(alone, plugins=host, start_workers=False)
    try:
        await hub.store.upgrade()
        async with hub.store.write() as conn:
            hub.catalog = await sync_config(conn, alone)
        yield hub
    finally:
        await hub.store.close()


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def report(config: Path, *args: str) -> dict[str, Any]:
    result = run("--config", str(config), "rules", "simulate", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def reasons(found: dict[str, Any]) -> dict[str, tuple[int, list[int]]]:
    return {
        r["reason"]: (r["moves"], [e["deal"] for e in r["examples"]]) for r in found["by_reason"]
    }


def managers(found: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    return [(m["manager"], m["moves"], m["refused"], m["by_override"]) for m in found["by_manager"]]


async def snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    hub = Hub(settings, start_workers=False)
    try:
        async with hub.store.read() as conn:
            return {
                table.name: sorted(
                    (tuple(map(repr, row)) for row in await conn.execute(select(table))),
                )
                for table in Base.metadata.sorted_tables
            }
    finally:
        await hub.store.close()


def test_a_candidate_refuses_the_moves_it_would_have_by_manager_and_by_reason(config, candidate):
    deals = asyncio.run(seed_history(config))
    found = report(config, "--config", str(candidate))
    assert (found["moves"], found["refused"], found["by_override"]) == (15, 5, 1)
    assert managers(found) == [
        ("anna@example.com", 8, 2, 0),
        ("dmitry@example.com", 5, 2, 0),
        ("import: crm.xlsx", 1, 1, 0),
        ("olga@example.com", 1, 0, 1),
    ]
    # A1's decision maker was written down after its move: it counts as missing then.
    assert reasons(found) == {
        DECISION_MAKER: (2, [deals["A1"], deals["D1"]]),
        COMPETITOR: (2, [deals["A3"], deals["D2"]]),
        SKIP: (1, [deals["A5"]]),
        CONTRACT_NEEDS: (1, [deals["A5"]]),
        IMPORT_MAY_NOT: (1, [deals["A5"]]),
    }
    by_text = {r["reason"]: r for r in found["by_reason"]}
    first = by_text[DECISION_MAKER]["examples"][0]
    assert (first["title"], first["manager"], first["from"], first["to"]) == (
        "Сделка A1",
        "anna@example.com",
        "Направить КП",
        "Возражения обрабатываем",
    )
    assert by_text[DECISION_MAKER]["rule"] == "stage_rules"
    assert by_text[COMPETITOR]["rule"] == "stage_rules.competitor"
    assert found["assumed_empty"] == 3  # A1's three moves: its custom fields changed later
    assert found["summary"] == "Правила отказали бы в 5 из 15 переходов за последние 30 дней."


def test_the_report_in_russian_counts_with_thin_spaces_and_says_what_it_approximates(
    config, candidate
):
    deals = asyncio.run(seed_history(config))
    result = run("--config", str(config), "rules", "simulate", "--config", str(candidate))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Правила отказали бы в 5 из 15 переходов за последние 30 дней." in text
    assert "Ещё 1 переход прошёл бы только с обходом правила" in text
    assert "  anna@example.com: отказ в 2 из 8" in text
    assert "  olga@example.com: отказ в 0 из 1; с обходом правила: 1" in text
    assert f"  2 — {DECISION_MAKER} [stage_rules]" in text
    assert f"      №{deals['A1']} «Сделка A1» — anna@example.com, " in text
    assert "Приближения:" in text
    assert "В 3 переходах сегмент, валюта или свои поля сделки впервые изменились позже" in text
    assert "Ничего не записано" in text
    # Thousands with a narrow no-break space; words agree with their numbers.
    big = Report(None, 21, ago(21), NOW, "Europe/Moscow", moves=4120, refused=312)
    assert (
        headline(big) == "Правила отказали бы в 312 из 4\u202f120 переходов за последний 21 день."
    )
    one = Report(None, 2, ago(2), NOW, "Europe/Moscow", moves=1, refused=0)
    assert headline(one) == "Правила отказали бы в 0 из 1 перехода за последние 2 дня."


def test_simulating_changes_nothing_in_the_store(config, candidate):
    asyncio.run(seed_history(config))
    settings = load_settings(config)
    before = asyncio.run(snapshot(settings))
    database = (
        Path(settings.store_url.split(":///", 1)[1]) if "sqlite" in settings.store_url else None
    )
    digest = hashlib.sha256(database.read_bytes()).hexdigest() if database else None
    report(config, "--config", str(candidate))
    report(config)
    assert asyncio.run(snapshot(settings)) == before
    assert sum(map(len, before.values())) > 50
    if database is not None:
        assert hashlib.sha256(database.read_bytes()).hexdigest() == digest


def test_the_current_config_against_its_own_history_refuses_nothing_that_was_not_an_override(
    config,
):
    deals = asyncio.run(seed_history(config))
    found = report(config)
    assert (found["moves"], found["refused"], found["by_override"]) == (15, 1, 1)
    # The import's skip, written before the rules were on, carried a reason an import may
    # not give; the head's override still goes through, and is counted as one.
    assert reasons(found) == {
        SKIP: (1, [deals["A5"]]),
        CONTRACT_NEEDS: (1, [deals["A5"]]),
        IMPORT_MAY_NOT: (1, [deals["A5"]]),
    }
    assert ("olga@example.com", 1, 0, 1) in managers(found)


def test_days_limits_the_window(config, candidate):
    deals = asyncio.run(seed_history(config))
    wider = report(config, "--config", str(candidate), "--days", "60")
    assert (wider["moves"], wider["refused"]) == (18, 6)
    assert ("dmitry@example.com", 8, 3, 0) in managers(wider)
    assert reasons(wider)[DECISION_MAKER] == (3, [deals["D4"], deals["A1"], deals["D1"]])
    narrow = report(config, "--config", str(candidate), "--days", "5")
    assert (narrow["moves"], narrow["refused"]) == (1, 1)
    assert managers(narrow) == [("import: crm.xlsx", 1, 1, 0)]
    assert wider["summary"].endswith("за последние 60 дней.")
    assert narrow["summary"].endswith("за последние 5 дней.")


def test_an_invalid_candidate_stops_with_the_error_naming_the_key(config, candidate):
    asyncio.run(seed_history(config))
    broken = candidate.read_text().replace(
        'required_fields = ["custom.decision_maker"]', 'required_fields = ["budget"]'
    )
    candidate.write_text(broken)
    result = run("--config", str(config), "rules", "simulate", "--config", str(candidate))
    assert result.exit_code == 2
    assert f"invalid candidate configuration ({candidate})" in result.stderr
    assert "pipelines.sales.stages.3.required_fields: 'budget' is not a field" in result.stderr
    partial = candidate.parent / "partial.toml"
    partial.write_text("[plugins.stage_rules]\namount_when_woon = false\n")
    result = run("--config", str(config), "rules", "simulate", "--config", str(partial))
    assert result.exit_code == 2
    assert "plugins.stage_rules.amount_when_woon: unknown key" in result.stderr


def test_a_partial_candidate_changes_only_the_sections_it_has(config):
    """A file with only [plugins.stage_rules]: the current pipelines, another override rule."""
    deals = asyncio.run(seed_history(config))
    partial = config.parent / "partial.toml"
    partial.write_text('[plugins.stage_rules]\noverride_roles = ["admin"]\n')
    found = report(config, "--config", str(partial))
    assert found["refused"] == 2  # the head may no longer skip a stage; the import never could
    assert reasons(found)["Обойти правило может руководитель или администратор, а не head"] == (
        1,
        [deals["A4"]],
    )


async def test_five_thousand_moves_are_replayed_in_seconds(sqlite_url, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(config_text(sqlite_url))
    settings = load_settings(path)
    async with stage_rules_only(settings) as hub:
        seed = Seed(hub)
        anna, dmitry = seed.user("anna@example.com"), seed.user("dmitry@example.com")
        owners = ["anna@example.com", "dmitry@example.com"]
        contacts, made, tasks = [], [], []
        for n in range(1000):
            owner = seed.users[owners[n % 2]]
            contact = ch.CreateContact(name=f"Клиент {n}", owner_id=owner)
            deal = ch.CreateDeal(
                title=f"Сделка {n}",
                pipeline_id=seed.sales.id,
                stage_id=seed.sales.entry_stage.id,
                contact=contact,
                owner_id=owner,
                segment="Опт",
                amount=Decimal(1000 + n),
            )
            contacts.append(contact)
            made.append(deal)
            tasks.append(ch.AddTask(title="Позвонить", due_at=ago(20), deal=deal))
        await seed.apply([*contacts, *made, *tasks], SYSTEM, ago(25))  # one run of each kind
        ids = [d.id for d in made if d.id is not None]
        for step, stage in enumerate(
            ["qualified", "proposal", "objections", "qualified", "proposal"]
        ):
            for who, actor in ((0, anna), (1, dmitry)):
                moves: list[ch.Change] = [ch.MoveStage(deal=d, stage=stage) for d in ids[who::2]]
                await seed.apply(moves, actor, ago(20 - step))
        lost = [ch.CloseLost(deal=d, reason="Дорого") for d in ids[:500:2]]
        await seed.apply(lost, anna, ago(10))
    candidate = tmp_path / "candidate.toml"
    candidate.write_text('[catalog]\nloss_reasons = ["Дорого"]\ncompetitor_reasons = ["Дорого"]\n')
    started = time.perf_counter()
    found = await simulate(candidate_settings(settings, candidate), 30)
    elapsed = time.perf_counter() - started
    assert (found.moves, found.refused) == (5250, 250)
    assert found.as_dict()["summary"] == (
        "Правила отказали бы в 250 из 5\u202f250 переходов за последние 30 дней."
    )
    assert elapsed < 10, f"{elapsed:.1f}s"
