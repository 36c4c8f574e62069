"""A contact keeps every external id it was given, through imports, merges and unmerges."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select

from hub.context import Hub
from hub.deals import SYSTEM, Refused
from hub.deals.changes import CreateContact, MergeContacts, Unmerge, UpdateContact
from hub.store import Store
from hub.store.models import Contact, ContactExternalId
from hub.store.types import utcnow
from tests.test_import_report import run_import
from tests.test_matching import run_hub


async def ids_of(hub: Hub) -> dict[int, list[str]]:
    """contact → its external ids, as ``system:id``."""
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(
                ContactExternalId.contact_id,
                ContactExternalId.system,
                ContactExternalId.external_id,
            ).order_by(ContactExternalId.contact_id, ContactExternalId.id)
        )
        out: dict[int, list[str]] = {}
        for contact_id, system, value in rows:
            out.setdefault(contact_id, []).append(f"{system}:{value}" if system else value)
        return out


async def test_a_merged_rows_own_external_id_is_kept_on_the_contact_it_merged_into(
    store_url, tmp_path: Path
):
    one_c = tmp_path / "1c.csv"
    one_c.write_text("Код;ФИО;Телефон\n000123;Иван Петров;8 912 345-67-89\n")
    bitrix = tmp_path / "bitrix.csv"
    bitrix.write_text("ID,Name,Phone,Email\nbitrix:5567,Ivan Petrov,+79123456789,ivan@petrov.ru\n")
    names_only = tmp_path / "names.csv"
    names_only.write_text("ID,Name,City\nbitrix:5567,Петров Иван,Самара\n")
    hub = await run_hub(store_url)
    try:
        first = await run_import(hub, one_c, system="1c")
        contact_id = first.rows[0].contact_id
        merged = await run_import(hub, bitrix)
        assert [(r.decision, r.contact_id) for r in merged.rows] == [("merged", contact_id)]
        assert await ids_of(hub) == {contact_id: ["1c:000123", "bitrix:5567"]}
        # A file without phones finds the contact by the merged row's id.
        found = await run_import(hub, names_only)
        assert [(r.decision, r.contact_id) for r in found.rows] == [("merged", contact_id)]
        async with hub.store.read() as conn:
            contact = (
                await conn.execute(select(Contact.__table__).where(Contact.id == contact_id))
            ).one()
        assert contact.external_id == "1c:000123"  # the first id is the one shown
        assert contact.city == "Самара"  # a blank filled
        assert await ids_of(hub) == {contact_id: ["1c:000123", "bitrix:5567"]}
    finally:
        await hub.stop()


async def test_merge_then_unmerge_restores_each_contacts_external_ids(store_url):
    hub = await run_hub(store_url)
    try:
        keep = CreateContact(name="Ольга Лебедева", external_id="1c:000001")
        other = CreateContact(
            name="Лебедева Ольга", external_id="1C:000002", external_ids=["bitrix:77"]
        )
        await hub.deals.apply([keep, other], SYSTEM)
        assert keep.id is not None and other.id is not None
        before = await ids_of(hub)
        assert before == {keep.id: ["1c:000001"], other.id: ["1c:000002", "bitrix:77"]}
        merge = MergeContacts(keep=keep.id, other=other.id)
        await hub.deals.apply([merge], SYSTEM)
        assert merge.id is not None
        assert await ids_of(hub) == {keep.id: ["1c:000001", "1c:000002", "bitrix:77"]}
        # An id given to the merged contact while the merge stands stays with it.
        await hub.deals.apply([UpdateContact(contact=keep.id, add_external_ids=["amo:9"])], SYSTEM)
        await hub.deals.apply([Unmerge(merge_id=merge.id)], SYSTEM)
        assert await ids_of(hub) == {
            keep.id: ["1c:000001", "amo:9"],
            other.id: ["1c:000002", "bitrix:77"],
        }
        async with hub.store.read() as conn:
            shown = dict((await conn.execute(select(Contact.id, Contact.external_id))).all())
        assert shown == {keep.id: "1c:000001", other.id: "1c:000002"}
    finally:
        await hub.stop()


async def test_an_external_id_another_contact_holds_refuses_the_change(store_url):
    hub = await run_hub(store_url)
    try:
        first = CreateContact(name="Анна", external_ids=["bitrix:1"])
        await hub.deals.apply([first], SYSTEM)
        assert first.id is not None
        with pytest.raises(Refused, match="external id bitrix:1 belongs to contact"):
            await hub.deals.apply([CreateContact(name="Не Анна", external_id="bitrix:1")], SYSTEM)
        # Giving a contact an id it has already is no change at all.
        applied = await hub.deals.apply(
            [UpdateContact(contact=first.id, add_external_ids=["BITRIX:1"])], SYSTEM
        )
        assert applied.events == []
        assert await ids_of(hub) == {first.id: ["bitrix:1"]}
    finally:
        await hub.stop()


async def test_the_migration_keeps_each_contacts_single_external_id(store_url):
    store = Store(store_url)
    config = store.alembic_config()

    def to(revision: str, up: bool):
        def run(connection) -> None:
            config.attributes["connection"] = connection
            (command.upgrade if up else command.downgrade)(config, revision)

        return run

    try:
        await store.upgrade()
        async with store.writer.begin() as conn:
            await conn.run_sync(to("0009", up=False))
        now = utcnow()
        async with store.writer.begin() as conn:
            await conn.execute(
                insert(Contact.__table__),
                [
                    {
                        "id": contact_id,
                        "name": "x",
                        "external_id": value,
                        "custom": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for contact_id, value in [(1, "1c:000123"), (2, "A-17"), (3, "A-17"), (4, None)]
                ],
            )
        await store.upgrade()
        async with store.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        ContactExternalId.contact_id,
                        ContactExternalId.system,
                        ContactExternalId.external_id,
                    ).order_by(ContactExternalId.contact_id)
                )
            ).all()
        # Two contacts with one id: the older keeps it, as the import matched it.
        assert [tuple(r) for r in rows] == [(1, "1c", "000123"), (2, "", "A-17")]
    finally:
        await store.upgrade()  # the next test's store is at the head whatever happened here
        await store.close()
