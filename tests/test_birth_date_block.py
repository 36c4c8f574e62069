"""A card without a surname is found by birth date and address, through the indexed
``contacts.birth_date`` that the writer keeps beside the contact's custom fields."""

from __future__ import annotations

from sqlalchemy import select

from hub.context import Hub
from hub.deals import SYSTEM
from hub.deals.changes import MergeContacts, Unmerge, UpdateContact
from hub.store.models import Contact
from tests.test_matching import lead, run_hub, submit

HOME = "г. Самара, ул. Ленинская, д. 147, кв. 12"


async def born(hub: Hub, contact_id: int) -> str | None:
    async with hub.store.read() as conn:
        return (
            await conn.execute(select(Contact.birth_date).where(Contact.id == contact_id))
        ).scalar_one()


async def test_a_lead_giving_only_a_first_name_joins_the_person_born_that_day_who_lives_there(
    store_url,
):
    hub = await run_hub(store_url)
    try:
        first = await submit(
            hub,
            lead(
                "Куликова Марина Сергеевна",
                "+7 912 555-10-01",
                custom={"birth_date": "1984-03-02", "address": HOME},
            ),
        )
        again = await submit(
            hub,
            lead(
                "Марина",
                "+7 927 444-20-02",
                "marina.k@yandex.ru",
                custom={"birth_date": "1984-03-02", "address": "Самара, Ленинская ул., 147-12"},
            ),
        )
        neighbour = await submit(
            hub,
            lead(
                "Марина", "+7 927 444-20-03", custom={"birth_date": "1990-07-15", "address": HOME}
            ),
        )
        assert again["contact_id"] == first["contact_id"]
        assert "same birth date" in again["match"]
        assert neighbour["contact_id"] != first["contact_id"]  # another day: another person
    finally:
        await hub.stop()


async def test_the_birth_date_column_follows_the_custom_fields_through_updates_and_merges(
    store_url,
):
    hub = await run_hub(store_url)
    try:
        one = (await submit(hub, lead("Ольга Лебедева", "+7 916 111-00-01")))["contact_id"]
        other = (
            await submit(
                hub,
                lead("Лебедева О.", "+7 916 111-00-02", custom={"birth_date": "1979-11-30"}),
            )
        )["contact_id"]
        assert (await born(hub, one), await born(hub, other)) == (None, "1979-11-30")

        merge = MergeContacts(keep=one, other=other)
        await hub.deals.apply([merge], SYSTEM)
        assert await born(hub, one) == "1979-11-30"  # the blank filled from the merged card

        assert merge.id is not None
        await hub.deals.apply([Unmerge(merge_id=merge.id)], SYSTEM)
        assert (await born(hub, one), await born(hub, other)) == (None, "1979-11-30")

        later = UpdateContact(contact=one, custom={"birth_date": "1980-01-02"})
        await hub.deals.apply([later], SYSTEM)
        assert await born(hub, one) == "1980-01-02"
    finally:
        await hub.stop()
