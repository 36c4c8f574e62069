"""The `hub` command reads the daemon's store through the same config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import load_settings
from hub.context import Hub
from hub.store.models import InboxEvent
from tests.conftest import ROOT, wait_for


@pytest.fixture
def config(tmp_path: Path) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    # Everyone on duty whatever the hour the suite runs: round-robin then starts with anna.
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("working_hours", "working_days"))
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def seed(config: Path) -> None:
    """Run a hub on the config and let it take one good lead and one it cannot place."""

    async def go() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        await hub.intake.accept(
            "webforms",
            {
                "form": "contact",
                "lead": {
                    "name": "Иван Петров",
                    "phones": ["8 (912) 345-67-89"],
                    "emails": ["Ivan@Example.com"],
                    "source": "Сайт",
                },
            },
        )
        await hub.intake.accept(
            "webforms", {"form": "contact", "lead": {"name": "Ошибка", "pipeline": "retail"}}
        )

        async def settled() -> bool:
            async with hub.store.read() as conn:
                from sqlalchemy import select

                rows = (await conn.execute(select(InboxEvent.attempts))).scalars().all()
            return len(rows) == 2 and min(rows) >= 1

        await wait_for(settled)
        await hub.stop()

    asyncio.run(go())


def test_deals_list_shows_the_deal_with_its_normalized_phone_owner_and_task(config):
    seed(config)
    result = CliRunner().invoke(main, ["--config", str(config), "deals", "list"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "Иван Петров" in line)
    assert "+79123456789" in line
    assert "anna@example.com" in line
    assert "Новая сделка" in line
    assert " 1 " in line  # one open task


def test_unplaceable_lead_shows_in_the_inbox_with_its_reason_and_can_be_replayed(config):
    seed(config)
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "inbox", "list"])
    assert result.exit_code == 0, result.output
    assert "unknown pipeline 'retail'" in result.output
    replay = runner.invoke(main, ["--config", str(config), "inbox", "replay", "1"])
    assert replay.exit_code == 1  # event 1 was processed: replaying it would double the deal
    assert "left alone: 1" in replay.output


def test_users_list_shows_the_team_and_their_open_deals(config):
    seed(config)
    result = CliRunner().invoke(main, ["--config", str(config), "users", "list"])
    assert result.exit_code == 0, result.output
    anna = next(line for line in result.output.splitlines() if "anna@example.com" in line)
    assert anna.split()[-1] == "1"


def test_plugins_lists_the_built_in_web_form_channel(config):
    result = CliRunner().invoke(main, ["--config", str(config), "plugins"])
    assert result.exit_code == 0, result.output
    assert "webforms" in result.output
    assert "built-in" in result.output


def test_db_upgrade_reports_the_revision(config):
    result = CliRunner().invoke(main, ["--config", str(config), "db", "upgrade"])
    assert result.exit_code == 0, result.output
    from hub.store import Store

    assert f"revision {Store.head_revision()}" in result.output
    assert (config.parent / "var" / "hub.db").exists()


def test_a_broken_config_stops_every_command_with_the_key(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[intake]\nworkers = -1\n")
    result = CliRunner().invoke(main, ["--config", str(path), "deals", "list"])
    assert result.exit_code == 2
    assert "intake.workers" in result.output


def test_review_merge_and_unmerge_from_the_command_line(config, tmp_path):
    async def go() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        for name, phone, email in [
            ("Ольга Лебедева", "+7 916 111-22-33", "info@romashka.ru"),
            ("Лебедева Ольга", "+7 8172 22-33-44", "info@romashka.ru"),
        ]:
            await hub.intake.accept(
                "webforms",
                {
                    "form": "contact",
                    "lead": {"name": name, "phones": [phone], "emails": [email], "city": "Вологда"},
                },
            )

        async def settled() -> bool:
            async with hub.store.read() as conn:
                from sqlalchemy import select

                rows = (await conn.execute(select(InboxEvent.status))).scalars().all()
            return rows == ["done", "done"]

        await wait_for(settled)
        await hub.stop()

    asyncio.run(go())
    runner = CliRunner()
    base = ["--config", str(config)]
    listed = runner.invoke(main, [*base, "dedupe", "list"])
    assert "Лебедева Ольга" in listed.output
    assert "shared email info@romashka.ru" in listed.output
    out = tmp_path / "pairs.csv"
    scanned = runner.invoke(main, [*base, "dedupe", "scan", "--out", str(out)])
    assert scanned.exit_code == 0, scanned.output
    assert "compared 1 pairs" in scanned.output
    assert "no company held twice" in scanned.output
    merged = runner.invoke(main, [*base, "contacts", "merge", "1", "2"])
    assert merged.exit_code == 0, merged.output
    assert "undo: hub contacts unmerge 1" in merged.output
    again = runner.invoke(main, [*base, "contacts", "merge", "1", "2"])
    assert again.exit_code == 1
    assert "no contact 2" in again.output
    undone = runner.invoke(main, [*base, "contacts", "unmerge", "1"])
    assert undone.exit_code == 0, undone.output
    assert "restored contact 2" in undone.output


def test_import_contacts_matches_rows_and_reports_rejects_with_row_numbers(config):
    example = ROOT / "examples" / "contacts.csv"
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "import", "contacts", str(example)])
    assert result.exit_code == 0, result.output
    assert "ФИО → name" in result.output
    assert "created 3, merged 2, flagged 0, rejected 2" in result.output
    assert "row 7: no phone or email" in result.output
    assert "row 8: no valid phone or email in 12-34" in result.output
    again = runner.invoke(main, ["--config", str(config), "import", "contacts", str(example)])
    assert "created 0, merged 5" in again.output  # importing twice doubles nothing
    bad = runner.invoke(
        main, ["--config", str(config), "import", "contacts", str(example), "--map", "Tel=phone"]
    )
    assert bad.exit_code == 2
    assert "no column 'Tel'" in bad.output


def test_import_reads_an_excel_file_with_english_headers(config, tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["First name", "Last name", "Mobile", "Email", "City"])
    sheet.append(["Anna", "Popova", "+7 926 100-20-30", "anna.popova@gmail.com", "Москва"])
    sheet.append(["Анна", "Попова", "89261002030", None, None])
    sheet.append([None, None, None, None, None])
    path = tmp_path / "leads.xlsx"
    book.save(path)
    result = CliRunner().invoke(main, ["--config", str(config), "import", "contacts", str(path)])
    assert result.exit_code == 0, result.output
    assert "created 1, merged 1, flagged 0, rejected 0" in result.output


def test_contacts_and_tasks_lists_show_what_a_manager_needs(config):
    seed(config)
    runner = CliRunner()
    found = runner.invoke(
        main, ["--config", str(config), "contacts", "list", "--find", "+7 912 345 67 89"]
    )
    assert found.exit_code == 0, found.output
    assert "Иван Петров" in found.output
    assert "anna@example.com" in found.output
    tasks = runner.invoke(
        main, ["--config", str(config), "tasks", "list", "--owner", "anna@example.com"]
    )
    assert tasks.exit_code == 0, tasks.output
    assert "Связаться с клиентом" in tasks.output
    assert " open " in tasks.output
    overdue = runner.invoke(main, ["--config", str(config), "tasks", "list", "--overdue"])
    assert "Связаться с клиентом" not in overdue.output  # due tomorrow


def test_import_keeps_external_ids_and_matches_by_them_on_the_next_import(config, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text("Код клиента,ФИО,Телефон\nA-17,Иван Петров,8 912 345-67-89\n")
    second = tmp_path / "second.csv"
    second.write_text("Код клиента,ФИО,Email\nA-17,Петров И.,ivan@petrov.ru\n")
    runner = CliRunner()
    base = ["--config", str(config), "import", "contacts"]
    assert "created 1" in runner.invoke(main, [*base, str(first)]).output
    assert "created 0, merged 1" in runner.invoke(main, [*base, str(second)]).output
    found = runner.invoke(
        main, ["--config", str(config), "contacts", "list", "--find", "ivan@petrov.ru"]
    )
    assert (
        "8 912 345-67-89 (+79123456789), ivan@petrov.ru" in found.output
    )  # as entered + normalized


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.xlsx", b"not a zip", "not a readable Excel workbook"),
        ("empty.csv", b"", "no header row"),
        ("other.csv", b"a,b\n1,2\n", "no phone or email column"),
    ],
)
def test_an_unreadable_import_file_is_refused_with_a_reason(
    config, tmp_path, name, content, message
):
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["--config", str(config), "import", "contacts", str(path)])
    assert result.exit_code == 2
    assert message in result.output


def test_calls_list_shows_recent_calls_and_missed_ones_with_their_open_call_back(config):
    from datetime import UTC, datetime

    from plugins.telephony.calls import CallEvent, accept_call

    async def go() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        now = datetime.now(UTC)
        common = {"provider": "webhook", "line": "+74951234567", "occurred_at": now}
        await accept_call(
            hub.intake,
            CallEvent(
                call_id="a",
                direction="in",
                state="ended",
                caller="89123456789",
                duration=125,
                answered_by="101",
                **common,
            ),
        )
        await accept_call(
            hub.intake,
            CallEvent(
                call_id="b",
                direction="in",
                state="missed",
                caller="+7 913 000-11-22",
                reason="no_answer",
                **common,
            ),
        )

        async def settled() -> bool:
            async with hub.store.read() as conn:
                from sqlalchemy import select

                rows = (await conn.execute(select(InboxEvent.status))).scalars().all()
            return rows.count("done") == 2

        await wait_for(settled)
        await hub.stop()

    asyncio.run(go())
    runner = CliRunner()
    every = runner.invoke(main, ["--config", str(config), "calls", "list"])
    assert every.exit_code == 0, every.output
    assert "+79123456789" in every.output and "2:05" in every.output
    assert "+79130001122" in every.output
    missed = runner.invoke(main, ["--config", str(config), "calls", "list", "--missed"])
    assert "+79130001122" in missed.output
    assert "+79123456789" not in missed.output
    assert "open #" in missed.output  # its call-back task is still to do


def test_contacts_show_gives_ids_in_other_systems_and_consent_with_its_source(config, tmp_path):
    base = tmp_path / "base.csv"
    base.write_text(
        "Код клиента;ФИО;Телефон;Согласие на SMS\n1c:000123;Иван Петров;8 912 345-67-89;да\n"
    )
    runner = CliRunner()
    imported = runner.invoke(main, ["--config", str(config), "import", "contacts", str(base)])
    assert "created 1" in imported.output, imported.output
    shown = runner.invoke(main, ["--config", str(config), "contacts", "show", "1"])
    assert shown.exit_code == 0, shown.output
    assert "contact 1: Иван Петров" in shown.output
    assert "телефоны: 8 912 345-67-89" in shown.output
    assert "во внешних системах: 1c:000123" in shown.output
    assert "sms: согласие (import:base.csv," in shown.output
    missing = runner.invoke(main, ["--config", str(config), "contacts", "show", "99"])
    assert missing.exit_code == 1 and "no contact 99" in missing.output
