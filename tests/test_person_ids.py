"""A person's ИНН and СНИЛС: checked by their check digits, imported, shown, and enough,
with a name, to know a contact in a file without phones or emails."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from hub.cli import main
from hub.domain.normalize import InvalidPoint
from hub.domain.person_ids import (
    format_snils,
    normalize_personal_tax_id,
    normalize_snils,
    snils_check,
)
from hub.store.models import Contact
from tests.conftest import ROOT
from tests.test_import_report import decisions, run_import, snapshot
from tests.test_matching import run_hub

INN_WEIGHTS_11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
INN_WEIGHTS_12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def personal_inn(first_ten: str) -> str:
    """The ИНН of ten digits, with both check digits as the ФНС computes them."""
    d11 = sum(int(d) * w for d, w in zip(first_ten, INN_WEIGHTS_11, strict=True)) % 11 % 10
    eleven = first_ten + str(d11)
    d12 = sum(int(d) * w for d, w in zip(eleven, INN_WEIGHTS_12, strict=True)) % 11 % 10
    return eleven + str(d12)


def snils(first_nine: str) -> str:
    return first_nine + f"{snils_check(first_nine):02d}"


nine = st.integers(min_value=1_001_999, max_value=999_999_999).map(lambda n: f"{n:09d}")
ten = st.integers(min_value=0, max_value=9_999_999_999).map(lambda n: f"{n:010d}")
separators = st.sampled_from(["", " ", "-"])


def test_known_numbers_are_taken_and_printed_as_on_the_card():
    assert normalize_snils("112-233-445 95") == "11223344595"
    assert format_snils("11223344595") == "112-233-445 95"
    assert normalize_personal_tax_id("5001 0073 2259") == "500100732259"


@given(nine, separators)
def test_every_snils_with_its_check_number_is_taken_in_any_spacing(digits: str, sep: str):
    number = snils(digits)
    written = f"{number[:3]}{sep}{number[3:6]}{sep}{number[6:9]} {number[9:]}"
    assert normalize_snils(written) == number


@given(nine, st.integers(min_value=1, max_value=99))
def test_a_snils_with_another_check_number_is_refused(digits: str, shift: int):
    wrong = (snils_check(digits) + shift) % 100
    with pytest.raises(InvalidPoint, match="СНИЛС"):
        normalize_snils(f"{digits}{wrong:02d}")


@given(ten)
def test_every_personal_inn_with_its_check_digits_is_taken(digits: str):
    assert normalize_personal_tax_id(personal_inn(digits)) == personal_inn(digits)


@given(ten, st.integers(min_value=1, max_value=9))
def test_a_personal_inn_with_a_wrong_last_digit_is_refused(digits: str, shift: int):
    good = personal_inn(digits)
    bad = good[:11] + str((int(good[11]) + shift) % 10)
    with pytest.raises(InvalidPoint, match="ИНН"):
        normalize_personal_tax_id(bad)


@given(st.text(max_size=20))
def test_any_text_is_a_clear_refusal_or_digits(raw: str):
    for normalize in (normalize_snils, normalize_personal_tax_id):
        with contextlib.suppress(InvalidPoint):
            assert normalize(raw).isdigit()


def test_an_organisation_s_ten_digit_inn_is_not_a_person_s():
    with pytest.raises(InvalidPoint, match="12 digits"):
        normalize_personal_tax_id("7707083893")


LEGACY = """Фамилия;Имя;Отчество;СНИЛС;ИНН физлица
Васильева;Марина;Петровна;112-233-445 95;500100732259
Васильева;Марина;Петровна;112-233-445 96;
Соколов;Дмитрий;;;500100732250
Павлова;Марина;;100-108-998 00;
"""


async def test_a_base_with_only_names_and_state_numbers_imports_and_reimports_unchanged(
    store_url, tmp_path: Path
):
    path = tmp_path / "legacy.csv"
    path.write_text(LEGACY)
    hub = await run_hub(store_url)
    try:
        report = await run_import(hub, path)
        assert report.mapping == {
            "Фамилия": "last_name",
            "Имя": "first_name",
            "Отчество": "middle_name",
            "СНИЛС": "snils",
            "ИНН физлица": "personal_tax_id",
        }
        rows = {r.row: r for r in report.rows}
        assert [d for _, d, _ in decisions(report)] == [
            "created",
            "rejected",
            "rejected",
            "created",
        ]
        assert "СНИЛС (its check number is wrong)" in rows[3].note
        assert "personal ИНН (its check digits are wrong)" in rows[4].note
        async with hub.store.read() as conn:
            kept = dict((await conn.execute(select(Contact.name, Contact.custom))).all())
        assert kept["Васильева Марина Петровна"] == {
            "snils": "11223344595",
            "personal_tax_id": "500100732259",
        }
        assert "Павлова Марина" in kept  # 100-108-998: its weighted sum is 100, written 00

        before = await snapshot(hub)
        again = await run_import(hub, path)
        assert await snapshot(hub) == before
        assert {r.row: r.decision for r in again.rows}[2] == "unchanged"
        assert "СНИЛС" in {r.row: r.reasons for r in again.rows}[2]
    finally:
        await hub.stop()


async def test_a_namesake_with_another_snils_is_another_person(store_url, tmp_path: Path):
    first = tmp_path / "first.csv"
    first.write_text("ФИО;СНИЛС\nВасильева Марина Петровна;112-233-445 95\n")
    second = tmp_path / "second.csv"
    second.write_text(f"ФИО;СНИЛС\nВасильева Марина Петровна;{format_snils(snils('123456789'))}\n")
    hub = await run_hub(store_url)
    try:
        await run_import(hub, first)
        report = await run_import(hub, second)
        assert [d for _, d, _ in decisions(report)] == ["created"]
        async with hub.store.read() as conn:
            assert len((await conn.execute(select(Contact.id))).all()) == 2
    finally:
        await hub.stop()


def test_hub_contacts_show_prints_the_state_numbers_as_written_on_documents(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.example.toml").read_text())
    table = tmp_path / "legacy.csv"
    table.write_text(LEGACY)
    runner = CliRunner()
    imported = runner.invoke(main, ["--config", str(config), "import", "contacts", str(table)])
    assert imported.exit_code == 0, imported.output
    shown = runner.invoke(main, ["--config", str(config), "contacts", "show", "1"])
    assert shown.exit_code == 0, shown.output
    assert "СНИЛС: 112-233-445 95" in shown.output
    assert "ИНН: 500100732259" in shown.output
