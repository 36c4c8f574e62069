"""The person's state numbers and source-system ids as fields of the match model: a
different valid personal ИНН or СНИЛС is another person, the same СНИЛС finds a returning
client by itself, another id of the same source system weighs against."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from hub.dedupe import scan
from hub.domain.matching import details, score
from hub.domain.person_ids import format_snils
from hub.store.models import DuplicateCandidate
from tests.test_import_report import run_import
from tests.test_match_weights import incoming, known
from tests.test_matching import lead, run_hub, submit
from tests.test_person_ids import personal_inn, snils

NAME = "Васильева Марина Петровна"


async def test_namesakes_in_one_city_with_different_personal_inn_stay_apart(
    store_url, tmp_path: Path
):
    first, second = personal_inn("5001007322"), personal_inn("7707083893")
    path = tmp_path / "legacy.csv"
    path.write_text(f"ФИО;Город;ИНН физлица\n{NAME};Самара;{first}\n{NAME};Samara;{second}\n")
    hub = await run_hub(store_url)
    try:
        report = await run_import(hub, path)
        rows = sorted(report.rows, key=lambda r: r.row)
        assert [r.decision for r in rows] == ["created", "created"]
        assert rows[0].contact_id != rows[1].contact_id
        # The name, patronymic and city alone would put them in review; the numbers say no.
        pairs, compared = await scan(hub.store, hub.settings)
        assert compared == 1
        assert pairs == []
    finally:
        await hub.stop()


async def test_a_lead_with_another_valid_personal_inn_is_not_even_a_possible_duplicate(
    store_url,
):
    hub = await run_hub(store_url)
    try:
        a = await submit(
            hub,
            lead(
                NAME, "+7 912 555-10-01", city="Самара", custom={"personal_tax_id": "500100732259"}
            ),
        )
        b = await submit(
            hub,
            lead(
                NAME,
                "+7 927 444-20-02",
                city="Самара",
                custom={"personal_tax_id": personal_inn("7707083893")},
            ),
        )
        assert b["decision"] == "new_contact"
        assert b["contact_id"] != a["contact_id"]
        async with hub.store.read() as conn:
            assert (await conn.execute(select(DuplicateCandidate.id))).all() == []
    finally:
        await hub.stop()


async def test_a_lead_with_the_same_snils_but_a_new_phone_and_mailbox_joins_the_contact(
    store_url,
):
    number = snils("123456789")
    hub = await run_hub(store_url)
    try:
        first = await submit(
            hub,
            lead(
                "Куликова Марина Сергеевна",
                "+7 912 555-10-01",
                "m.kulikova@mail.ru",
                custom={"snils": format_snils(number)},
            ),
        )
        # No city, birth date or address: the СНИЛС is all that ties them.
        again = await submit(
            hub,
            lead("Куликова М.", "+7 927 444-20-02", "marina.k@yandex.ru", custom={"snils": number}),
        )
        assert first["decision"] == "new_contact"
        assert again["contact_id"] == first["contact_id"]
        assert "same СНИЛС +" in again["match"]
        assert "different mobile" in again["match"]  # counted against, and outweighed
    finally:
        await hub.stop()


def test_a_mistyped_snils_on_a_form_is_no_evidence_either_way():
    # The check number is wrong: not a СНИЛС, so it neither joins nor keeps apart.
    typed = {"snils": "112-233-445 96"}
    assert "snils" not in details(typed)
    assert details({"snils": "112-233-445 95"})["snils"] == "11223344595"


def test_another_id_of_the_same_source_system_counts_against():
    details = {"city": "Самара", "birth_date": "1980-05-17"}
    contact = known("Иван Петров", external_ids={("1c", "000123")}, **details)

    def with_id(*ids: tuple[str, str]) -> float:
        return score(incoming("Иван Петров", external_ids=set(ids), **details), contact).value

    found = score(incoming("Иван Петров", external_ids={("1c", "000124")}, **details), contact)
    assert any(r.startswith("different external id, same system −") for r in found.reasons)
    assert found.value < with_id()
    # A legacy base holds some people twice: against, not a veto; the same name, city and
    # birth date still make them one person.
    assert found.value >= 0.99
    # Another system's id, or an id whose system is not named, says nothing.
    assert with_id(("bitrix", "5567")) == with_id(("", "000124")) == with_id()


def test_the_same_id_of_a_source_system_counts_for():
    both = {("1c", "000123"), ("bitrix", "1")}
    found = score(
        incoming("Петров И.", external_ids={("1c", "000123")}),
        known("Иван Петров", external_ids=both),
    )
    assert any(r.startswith("same external id +") for r in found.reasons)


async def test_an_import_row_with_another_id_of_the_system_is_weighed_against_the_contact(
    store_url, tmp_path: Path
):
    first = tmp_path / "first.csv"
    first.write_text("Код;ФИО;Телефон;Город\n000123;Иван Петров;8 (912) 345-67-89;Самара\n")
    second = tmp_path / "second.csv"
    second.write_text("Код;ФИО;Телефон;Город\n000124;Петров Иван;+7 912 345 67 89;Самара\n")
    hub = await run_hub(store_url)
    try:
        await run_import(hub, first, system="1c")
        report = await run_import(hub, second, system="1c")
        (row,) = report.rows
        # One phone, one name: still one person, a duplicate in the legacy base.
        assert row.decision == "merged"
        assert "different external id, same system −" in row.reasons
    finally:
        await hub.stop()
