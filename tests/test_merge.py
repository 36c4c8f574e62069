"""Merging duplicate contacts, and undoing it exactly."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from hub.context import Hub
from hub.deals import SYSTEM, NotFound, Refused
from hub.deals import changes as ch
from hub.deals.changes import MergeCompanies, MergeContacts, Unmerge
from hub.store.models import (
    Activity,
    Contact,
    ContactPoint,
    Deal,
    DuplicateCandidate,
    Note,
    Task,
)
from hub.store.types import utcnow
from tests.test_matching import run_hub, submit

TABLES = [Contact, ContactPoint, Deal, Task, Note, Activity, DuplicateCandidate]


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


async def two_of_one_person(hub: Hub) -> tuple[dict, dict]:
    """Olga wrote from her mobile, then from the office: only the generic mailbox is shared."""
    a = await submit(
        hub,
        {
            "form": "contact",
            "lead": {
                "name": "Ольга Лебедева",
                "phones": ["+7 916 111-22-33"],
                "emails": ["info@romashka.ru"],
                "city": "Вологда",
            },
        },
    )
    b = await submit(
        hub,
        {
            "form": "contact",
            "lead": {
                "name": "Лебедева Ольга",
                "phones": ["+7 (8172) 22-33-44"],
                "emails": ["info@romashka.ru", "o.lebedeva@romashka.ru"],
                "city": "Вологда",
                "segment": "Опт",
            },
        },
    )
    async with hub.store.write() as conn:
        await conn.execute(
            Note.__table__.insert().values(
                contact_id=b["contact_id"],
                body="Просила перезвонить после обеда",
                created_at=utcnow(),
            )
        )
    return a, b


async def test_merge_moves_everything_to_the_kept_contact(store_url):
    hub = await run_hub(store_url)
    try:
        a, b = await two_of_one_person(hub)
        assert b["decision"] == "possible_duplicate"
        merge_id = await _merge(hub, MergeContacts(keep=a["contact_id"], other=b["contact_id"]))
        state = await snapshot(hub)
        assert [c["id"] for c in state["contacts"]] == [a["contact_id"]]
        kept = state["contacts"][0]
        assert kept["name"] == "Ольга Лебедева"  # the kept contact's field wins
        assert kept["city"] == "Вологда"
        assert kept["segment"] == "Опт"  # the other's fills a blank
        assert {d["contact_id"] for d in state["deals"]} == {a["contact_id"]}
        assert {t["contact_id"] for t in state["tasks"]} == {a["contact_id"]}
        assert {n["contact_id"] for n in state["notes"]} == {a["contact_id"]}
        emails = sorted(p["normalized"] for p in state["contact_points"] if p["kind"] == "email")
        assert emails == ["info@romashka.ru", "o.lebedeva@romashka.ru"]  # no address doubled
        phones = sorted(p["normalized"] for p in state["contact_points"] if p["kind"] == "phone")
        assert phones == ["+78172223344", "+79161112233"]
        assert state["duplicate_candidates"] == []  # the review flag is settled
        assert merge_id >= 1
    finally:
        await hub.stop()


async def test_merge_then_unmerge_leaves_the_store_as_it_was(store_url):
    hub = await run_hub(store_url)
    try:
        a, b = await two_of_one_person(hub)
        before = await snapshot(hub)
        merge_id = await _merge(hub, MergeContacts(keep=a["contact_id"], other=b["contact_id"]))
        assert await snapshot(hub) != before
        await hub.deals.apply([Unmerge(merge_id=merge_id)], SYSTEM)
        assert await snapshot(hub) == before
        with pytest.raises(Refused, match="already undone"):
            await hub.deals.apply([Unmerge(merge_id=merge_id)], SYSTEM)
    finally:
        await hub.stop()


async def test_merging_nonsense_is_refused_with_a_reason(sqlite_url):
    hub = await run_hub(sqlite_url)
    try:
        with pytest.raises(Refused, match="into itself"):
            await _merge(hub, MergeContacts(keep=1, other=1))
        with pytest.raises(NotFound, match="no contact 7"):
            await _merge(hub, MergeContacts(keep=7, other=8))
        with pytest.raises(NotFound, match="no merge 3"):
            await hub.deals.apply([Unmerge(merge_id=3)], SYSTEM)
    finally:
        await hub.stop()


async def test_dedupe_scan_finds_an_imported_duplicate_and_writes_pairs(sqlite_url, tmp_path):
    from hub.dedupe import save_for_review, scan, write_csv

    hub = await run_hub(sqlite_url)
    try:
        now = utcnow()
        async with hub.store.write() as conn:
            # An import brought the same client twice, and two colleagues on one office line.
            await conn.execute(
                Contact.__table__.insert(),
                [
                    {
                        "id": 1,
                        "name": "Дмитрий Соколов",
                        "external_id": "1C-001",
                        "custom": {},
                        "created_at": now,
                        "updated_at": now,
                    },
                    {
                        "id": 2,
                        "name": "Sokolov Dmitriy",
                        "external_id": "1C-777",
                        "custom": {},
                        "created_at": now,
                        "updated_at": now,
                    },
                    {
                        "id": 3,
                        "name": "Ирина Волкова",
                        "external_id": None,
                        "custom": {},
                        "created_at": now,
                        "updated_at": now,
                    },
                    {
                        "id": 4,
                        "name": "Сергей Морозов",
                        "external_id": None,
                        "custom": {},
                        "created_at": now,
                        "updated_at": now,
                    },
                ],
            )
            await conn.execute(
                ContactPoint.__table__.insert(),
                [
                    {
                        "contact_id": 1,
                        "kind": "phone",
                        "value": "8 912 345-67-89",
                        "normalized": "+79123456789",
                        "created_at": now,
                    },
                    {
                        "contact_id": 2,
                        "kind": "phone",
                        "value": "+79123456789",
                        "normalized": "+79123456789",
                        "created_at": now,
                    },
                    {
                        "contact_id": 3,
                        "kind": "email",
                        "value": "info@romashka.ru",
                        "normalized": "info@romashka.ru",
                        "created_at": now,
                    },
                    {
                        "contact_id": 4,
                        "kind": "email",
                        "value": "info@romashka.ru",
                        "normalized": "info@romashka.ru",
                        "created_at": now,
                    },
                ],
            )
        pairs, compared = await scan(hub.store, hub.settings)
        assert compared == 2
        assert [(p.a, p.b) for p in pairs] == [(1, 2)]
        assert any(r.startswith("same phone +") for r in pairs[0].reasons)
        assert await save_for_review(hub.deals, pairs, SYSTEM) == 1
        out = tmp_path / "pairs.csv"
        write_csv(pairs, out)
        lines = out.read_text().splitlines()
        assert lines[0] == "id_a,id_b,score,reasons,cluster"
        assert lines[1].startswith("1C-001,1C-777,")
    finally:
        await hub.stop()


async def test_dedupe_scan_compares_namesakes_without_a_shared_phone(store_url):
    from hub.dedupe import scan

    hub = await run_hub(store_url)
    try:
        now = utcnow()
        people = [
            (1, "Соколов Дмитрий", "Ромашка", "+79123456789"),  # from the old 1C base
            (2, "Dmitriy Sokolov", "Romashka LLC", "+79030000001"),  # from the web shop
            (3, "Дмитрий Соколов", "Лютик", "+79030000002"),  # a namesake elsewhere
        ]
        async with hub.store.write() as conn:
            await conn.execute(
                Contact.__table__.insert(),
                [
                    {
                        "id": i,
                        "name": n,
                        "external_id": None,
                        "custom": {"company": c},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, n, c, _ in people
                ],
            )
            await conn.execute(
                ContactPoint.__table__.insert(),
                [
                    {
                        "contact_id": i,
                        "kind": "phone",
                        "value": p,
                        "normalized": p,
                        "created_at": now,
                    }
                    for i, _, _, p in people
                ],
            )
        pairs, compared = await scan(hub.store, hub.settings)
        assert compared == 3  # the three share a name block
        assert [(p.a, p.b) for p in pairs] == [(1, 2)]
        assert any("same company" in r for r in pairs[0].reasons)
    finally:
        await hub.stop()


async def _merge(hub: Hub, change: MergeContacts | MergeCompanies) -> int:
    await hub.deals.apply([change], SYSTEM)
    assert change.id is not None
    return change.id


async def test_a_contact_merged_away_never_lends_its_id_to_a_new_one(store_url):
    from hub.domain.normalize import phone_point

    hub = await run_hub(store_url)
    try:
        first = ch.CreateContact(name="Анна", points=[phone_point("+79120000001", "RU")])
        second = ch.CreateContact(name="Анна П.", points=[phone_point("+79120000002", "RU")])
        await hub.deals.apply([first, second], SYSTEM)
        merge = MergeContacts(keep=first.id, other=second.id)  # type: ignore[arg-type]
        await hub.deals.apply([merge], SYSTEM)
        newcomer = ch.CreateContact(name="Пётр", points=[phone_point("+79120000003", "RU")])
        await hub.deals.apply([newcomer], SYSTEM)
        assert newcomer.id not in (first.id, second.id)
        await hub.deals.apply([Unmerge(merge_id=merge.id)], SYSTEM)  # type: ignore[arg-type]
    finally:
        await hub.stop()
