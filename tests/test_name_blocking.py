"""Name blocking: a returning client with a new phone and mailbox is found by name and one
more thing known about them; a namesake is compared, and stays apart."""

from __future__ import annotations

from sqlalchemy import select

from hub.dedupe import scan
from hub.domain.blocking import MAX_BLOCK, lookups, name_blocks, name_key
from hub.leads import LeadPipeline
from hub.store.models import Contact
from tests.conftest import seed_contacts
from tests.test_matching import lead, run_hub, submit


def test_a_name_key_is_the_same_across_alphabets_order_diminutives_and_gender():
    assert name_key("Васильева Мария") == name_key("Maria Vasilieva") == "vslv|mr"
    assert name_key("Маша Васильева") == name_key("Васильев Мария")  # the gender is compared
    assert name_key("Соловьёв Алексей") == name_key("Aleksey Solovev")
    assert name_key("Васильева М.") == "vslv|m"
    assert name_key("Мария") is None  # a first name alone is no block
    assert name_key(None) is None


def test_an_initial_meets_a_full_first_name_by_birth_date_not_by_company():
    full = name_blocks("Ершов Тимур Алексеевич", birth_date="2002-06-17", company="Ромашка")
    initial = name_blocks("Ершов Т.", birth_date="2002-06-17", company="Ромашка")
    assert full & initial == {("ershv|t", "born 2002-06-17")}
    assert not name_blocks("Ершов Т.", company="Ромашка", city="Самара")
    # Intake reads every first name of the initial, and the initial of a full name.
    assert lookups("Ершов Т.") == [("ershv|t", "ershv|t\uffff")]
    assert ("ershv|t", "ershv|t") in lookups("Тимур Ершов")


def test_cities_meet_across_alphabets_and_a_namesake_elsewhere_does_not():
    samara = name_blocks("Марина Куликова", city="Самара")
    assert samara == name_blocks("Kulikova Marina", city="Samara")
    assert not samara & name_blocks("Марина Куликова", city="Пермь")


def test_an_unknown_first_name_blocks_in_both_word_orders():
    # Снежана is not in the name list, so which word is the surname is a guess.
    one = name_blocks("Снежана Прохоренко", birth_date="1958-02-01")
    other = name_blocks("Прохоренко Снежана Дмитриевна", birth_date="1958-02-01")
    assert one & other


async def test_a_returning_client_with_a_new_phone_and_mailbox_joins_by_name_and_birth_date(
    store_url,
):
    hub = await run_hub(store_url)
    try:
        first = await submit(
            hub,
            lead(
                "Куликова Марина Сергеевна",
                "+7 912 555-10-01",
                "m.kulikova@mail.ru",
                city="Самара",
                custom={"birth_date": "1984-03-02"},
            ),
        )
        again = await submit(
            hub,
            lead(
                "Kulikova Marina Sergeevna",
                "+7 927 444-20-02",
                "marina.k@yandex.ru",
                city="Samara",
                custom={"birth_date": "1984-03-02"},
            ),
        )
        assert first["decision"] == "new_contact"
        assert again["contact_id"] == first["contact_id"]
        assert "same birth date" in again["match"]
        assert "different mobile" in again["match"]  # still counted against, and outweighed
    finally:
        await hub.stop()


async def test_a_namesake_at_the_same_company_with_own_phone_and_mailbox_is_a_separate_contact(
    store_url,
):
    hub = await run_hub(store_url)
    try:
        one = await submit(
            hub,
            lead("Иван Белов", "+7 912 555-30-01", "ivan.belov@mail.ru", company="ООО Ромашка"),
        )
        other = await submit(
            hub,
            lead("Белов Иван", "+7 903 555-40-02", "i.belov@yandex.ru", company="Romashka LLC"),
        )
        # Found through the name block (no phone or email in common), and kept apart.
        assert other["contact_id"] != one["contact_id"]
        assert other["decision"] in ("new_contact", "possible_duplicate")
    finally:
        await hub.stop()


async def test_the_name_key_is_written_with_the_contact_and_follows_a_new_name(store_url):
    hub = await run_hub(store_url)
    try:
        made = await submit(hub, lead("Мария Васильева", "+7 912 555-50-01"))
        async with hub.store.read() as conn:
            key = (
                await conn.execute(select(Contact.name_key).where(Contact.id == made["contact_id"]))
            ).scalar_one()
        assert key == "vslv|mr"
        from hub.deals import SYSTEM
        from hub.deals.changes import UpdateContact

        await hub.deals.apply(
            [UpdateContact(contact=made["contact_id"], name="Ольга Петрова")],
            SYSTEM,
        )
        async with hub.store.read() as conn:
            key = (
                await conn.execute(select(Contact.name_key).where(Contact.id == made["contact_id"]))
            ).scalar_one()
        assert key == "ptrv|olg"
    finally:
        await hub.stop()


async def test_a_common_name_in_one_city_finds_nobody_by_name_alone(store_url):
    hub = await run_hub(store_url)
    try:
        from hub.deals import SYSTEM
        from hub.deals.changes import CreateContact

        await hub.deals.apply(
            [CreateContact(name="Иван Иванов", city="Москва") for _ in range(MAX_BLOCK + 1)],
            SYSTEM,
        )
        async with hub.store.read() as conn:
            named = await LeadPipeline._named(conn, set(lookups("Иван Иванов")))
        block = (name_key("Иван Иванов"), "city moskva")
        assert len(named[block]) == MAX_BLOCK + 1  # read, but too many to compare with
        again = await submit(hub, lead("Иван Иванов", "+7 912 555-60-01", city="Москва"))
        assert again["decision"] == "new_contact"
        assert "possible_duplicate_of" not in again
    finally:
        await hub.stop()


async def test_the_scan_pairs_records_without_a_shared_point_by_name_and_birth_date(store_url):
    hub = await run_hub(store_url)
    try:
        rows = [
            (1, "Ершов Тимур Алексеевич", {"birth_date": "2002-06-17"}, "+79120000001"),
            (2, "Ершов Т.", {"birth_date": "2002-06-17"}, None),
            (3, "Ершов Тимур", {"birth_date": "1990-01-01"}, "+79030000002"),
        ]
        await seed_contacts(
            hub,
            [{"id": i, "name": n, "name_key": name_key(n), "custom": c} for i, n, c, _ in rows],
            [(i, p) for i, _, _, p in rows if p],
        )
        pairs, _ = await scan(hub.store, hub.settings)
        found = {(p.a, p.b): p for p in pairs}
        assert (1, 2) in found and "same birth date" in ", ".join(found[(1, 2)].reasons)
        assert all(p.score < hub.settings.matching.review for p in pairs if 3 in (p.a, p.b))
    finally:
        await hub.stop()
