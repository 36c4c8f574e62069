"""`hub import contacts`: one decision per row, reported; a dry run and a second import
change nothing."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.cli import main
from hub.context import Hub
from hub.importer import Report, import_contacts
from hub.leads import LeadPipeline
from hub.store.models import (
    Company,
    Contact,
    ContactExternalId,
    ContactPoint,
    DomainEvent,
    DuplicateCandidate,
)
from tests.conftest import ROOT
from tests.test_matching import run_hub

TABLES = [Contact, ContactPoint, ContactExternalId, Company, DuplicateCandidate, DomainEvent]

SMALL = """Код клиента;ФИО;Телефон;E-mail;Город
1c:001;Иван Петров;8 (912) 345-67-89;ivan@petrov.ru;Самара
1c:002;Петров Иван;+7 912 345 67 89;;Самара
1c:003;Без контактов;;;Пермь
1c:004;Анна Белова;12-34;;
1c:005;Мария Орлова;+7 903 111-22-33;m.orlova@mail.ru;Москва
"""


async def snapshot(hub: Hub) -> dict[str, list[dict[str, Any]]]:
    async with hub.store.read() as conn:
        return {
            model.__tablename__: [
                dict(r)
                for r in (
                    await conn.execute(select(model.__table__).order_by(model.__table__.c.id))
                ).mappings()
            ]
            for model in TABLES
        }


async def run_import(hub: Hub, path: Path, **options: Any) -> Report:
    pipeline = LeadPipeline(hub.catalog, hub.settings, hub.reserve, hub.deals, hub.matchers())
    return await import_contacts(hub.store, pipeline, path, **options)


def decisions(report: Report) -> list[tuple[int, str, str | None]]:
    return [(r.row, r.decision, r.external_id) for r in sorted(report.rows, key=lambda r: r.row)]


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_text(SMALL)
    return path


async def test_the_report_has_one_line_per_row_created_merged_or_rejected(
    store_url, small, tmp_path
):
    hub = await run_hub(store_url)
    try:
        report = await run_import(hub, small)
        assert decisions(report) == [
            (2, "created", "1c:001"),
            (3, "merged", "1c:002"),
            (4, "rejected", "1c:003"),
            (5, "rejected", "1c:004"),
            (6, "created", "1c:005"),
        ]
        rows = {r.row: r for r in report.rows}
        assert rows[3].contact_id == rows[2].contact_id
        assert float(rows[3].score) > 0.5 and "phone" in rows[3].reasons
        assert rows[4].note == "no phone or email"
        assert rows[5].note == "no valid phone or email in 12-34"
        out = tmp_path / "results.csv"
        report.write_csv(out)
        lines = list(csv.DictReader(out.open(encoding="utf-8")))
        assert [line["row"] for line in lines] == ["2", "3", "4", "5", "6"]
        assert lines[1]["decision"] == "merged"
        assert lines[1]["external_id"] == "1c:002"
        assert lines[1]["contact_id"] == str(rows[2].contact_id)
        assert lines[2]["note"] == "no phone or email"
        assert list(lines[0]) == [
            "row",
            "external_id",
            "decision",
            "contact_id",
            "score",
            "reasons",
            "duplicate_of",
            "note",
        ]
    finally:
        await hub.stop()


async def test_a_dry_run_reports_the_same_decisions_and_writes_nothing(store_url, small):
    hub = await run_hub(store_url)
    try:
        before = await snapshot(hub)
        dry = await run_import(hub, small, dry_run=True)
        assert await snapshot(hub) == before
        real = await run_import(hub, small)
        assert decisions(dry) == decisions(real)
        assert [r.contact_id is None for r in dry.rows] == [r.contact_id is None for r in real.rows]
        # Dry again over the imported file: every row would change nothing.
        imported = await snapshot(hub)
        again = await run_import(hub, small, dry_run=True)
        assert await snapshot(hub) == imported
        assert {r.decision for r in again.rows} == {"unchanged", "rejected"}
    finally:
        await hub.stop()


async def test_importing_the_same_file_again_changes_nothing(store_url, small):
    hub = await run_hub(store_url)
    try:
        first = await run_import(hub, small)
        after_first = await snapshot(hub)
        second = await run_import(hub, small)
        assert await snapshot(hub) == after_first  # not even an event
        assert decisions(second) == [
            (2, "unchanged", "1c:001"),
            (3, "unchanged", "1c:002"),
            (4, "rejected", "1c:003"),
            (5, "rejected", "1c:004"),
            (6, "unchanged", "1c:005"),
        ]
        went = {r.row: r.contact_id for r in first.rows}
        assert {r.row: r.contact_id for r in second.rows} == went
    finally:
        await hub.stop()


async def test_a_file_without_phone_or_email_columns_imports_named_rows_with_an_identifier(
    store_url, tmp_path
):
    path = tmp_path / "legacy.csv"
    path.write_text(
        "Код;Фамилия;Имя;Отчество;Адрес;Дата рождения\n"
        "000123;Васильева;Марина;Петровна;;12.03.1985\n"
        ";Соколов;Дмитрий;;Самара, ул. Ленина, 1;\n"
        ";Орлов;Пётр;;;1985-02-30\n"
        "000124;;;;;\n"
        "000125;Павлова;Марина;;;31/12/1990\n"
    )
    hub = await run_hub(store_url)
    try:
        report = await run_import(hub, path, system="1c")
        assert decisions(report) == [
            (2, "created", "1c:000123"),
            (3, "created", None),
            (4, "rejected", None),
            (5, "rejected", "1c:000124"),
            (6, "created", "1c:000125"),
        ]
        rows = {r.row: r for r in report.rows}
        assert "not a date" in rows[4].note
        assert rows[5].note == "no name, phone or email"
        async with hub.store.read() as conn:
            found = {
                r.name: r
                for r in await conn.execute(
                    select(Contact.name, Contact.custom, Contact.external_id)
                )
            }
        assert found["Васильева Марина Петровна"].custom["birth_date"] == "1985-03-12"
        assert found["Васильева Марина Петровна"].external_id == "1c:000123"
        assert found["Соколов Дмитрий"].custom["address"] == "Самара, ул. Ленина, 1"
        assert found["Павлова Марина"].custom["birth_date"] == "1990-12-31"
        # Imported again, each row finds its contact: by its external id, or by the same
        # name and address.
        before = await snapshot(hub)
        again = await run_import(hub, path, system="1c")
        assert await snapshot(hub) == before
        assert [d for _, d, _ in decisions(again)] == [
            "unchanged",
            "unchanged",
            "rejected",
            "rejected",
            "unchanged",
        ]
        assert {r.row: r.contact_id for r in again.rows} == {
            r.row: r.contact_id for r in report.rows
        }
        assert next(r for r in again.rows if r.row == 3).reasons == "same name and address"
    finally:
        await hub.stop()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("working_hours", "working_days"))
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_command_writes_the_report_and_a_dry_run_writes_nothing_else(config, tmp_path):
    path = tmp_path / "bitrix.csv"
    path.write_text("ID,Name,Phone\n5567,Ivan Petrov,+7 912 345-67-89\n5568,Anna,\n")
    out = tmp_path / "results.csv"
    base = ["--config", str(config), "import", "contacts", str(path), "--system", "bitrix"]
    runner = CliRunner()
    dry = runner.invoke(main, [*base, "--dry-run", "--report", str(out)])
    assert dry.exit_code == 0, dry.output
    assert "created 1, merged 0, flagged 0, rejected 1" in dry.output
    assert "dry run: nothing was written" in dry.output
    lines = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["row"], r["external_id"], r["decision"]) for r in lines] == [
        ("2", "bitrix:5567", "created"),
        ("3", "bitrix:5568", "rejected"),
    ]
    real = runner.invoke(main, [*base, "--report", str(out)])
    assert "created 1, merged 0" in real.output  # the dry run left nothing behind
    again = runner.invoke(main, [*base, "--report", str(out)])
    assert "created 0, merged 1 (1 unchanged), flagged 0, rejected 1" in again.output
    assert next(csv.DictReader(out.open(encoding="utf-8")))["decision"] == "unchanged"
    bad = runner.invoke(main, [*base, "--system", "1c:x"])
    assert bad.exit_code == 2
