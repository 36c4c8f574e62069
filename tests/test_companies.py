"""Companies: found by tax id or name, linked to contacts and deals, merged and unmerged."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.context import Hub
from hub.deals import SYSTEM, Refused
from hub.deals.changes import MergeCompanies, MergeContacts, Unmerge
from hub.store.models import Company, Contact, Deal
from hub.store.types import utcnow
from tests.test_matching import lead, run_hub, submit
from tests.test_merge import snapshot

SBER = "7707083893"  # a real, valid ИНН


async def companies(hub):
    async with hub.store.read() as conn:
        return [
            dict(r)
            for r in (await conn.execute(select(Company.__table__).order_by(Company.id))).mappings()
        ]


async def test_leads_of_one_company_share_one_company_record(store_url):
    hub = await run_hub(store_url)
    try:
        a = await submit(
            hub, lead("Ирина Волкова", "+7 912 800-00-01", company="ООО «Ромашка»", tax_id=SBER)
        )
        b = await submit(hub, lead("Сергей Морозов", "+7 912 800-00-02", company="Romashka LLC"))
        c = await submit(hub, lead("Павел Зайцев", "+7 912 800-00-03", company="ООО Лютик"))
        found = await companies(hub)
        assert [(x["name"], x["tax_id"]) for x in found] == [
            ("ООО «Ромашка»", SBER),
            ("ООО Лютик", None),
        ]
        async with hub.store.read() as conn:
            contact_companies = dict(
                (await conn.execute(select(Contact.id, Contact.company_id))).all()
            )
            deal_companies = dict((await conn.execute(select(Deal.id, Deal.company_id))).all())
        assert contact_companies[a["contact_id"]] == contact_companies[b["contact_id"]] == 1
        assert contact_companies[c["contact_id"]] == 2
        assert deal_companies[b["deal_id"]] == 1
    finally:
        await hub.stop()


async def test_the_same_name_with_another_tax_id_is_another_company(store_url):
    hub = await run_hub(store_url)
    try:
        await submit(
            hub, lead("Ирина Волкова", "+7 912 800-00-01", company="ООО Ромашка", tax_id=SBER)
        )
        await submit(
            hub,
            lead(
                "Сергей Морозов", "+7 912 800-00-02", company="ООО Ромашка", tax_id="500100732259"
            ),
        )
        assert len(await companies(hub)) == 2
    finally:
        await hub.stop()


async def test_the_same_full_name_and_tax_id_across_different_phones_goes_to_review(store_url):
    # Namesakes work together in big companies: the same name at one company (by tax id)
    # with nothing personal in common is a possible duplicate, not a merge.
    hub = await run_hub(store_url)
    try:
        first = await submit(
            hub,
            lead(
                "Ирина Волкова",
                "+7 912 800-00-01",
                "info@romashka.ru",
                company="Ромашка",
                tax_id=SBER,
            ),
        )
        again = await submit(
            hub, lead("Волкова Ирина", "+7 343 111-11-11", "info@romashka.ru", tax_id=SBER)
        )
        assert again["decision"] == "possible_duplicate"
        assert again["possible_duplicate_of"] == first["contact_id"]
        assert "same tax id" in again["match"]
    finally:
        await hub.stop()


async def test_a_wrong_tax_id_on_a_form_is_a_field_error(hub_client):
    response = await hub_client.post(
        "/forms/contact", json={"fio": "Иван", "tel": "+7 912 345-67-89", "tax_id": "7707083894"}
    )
    assert response.status == 422
    (error,) = (await response.json())["fields"]
    assert (error["field"], error["code"], error["message"]) == (
        "tax_id",
        "invalid_tax_id",
        "неверный ИНН",
    )


async def test_company_merge_moves_contacts_and_deals_and_unmerge_restores(store_url):
    hub = await run_hub(store_url)
    try:
        await submit(hub, lead("Ирина Волкова", "+7 912 800-00-01", company="Ромашка"))
        await submit(
            hub, lead("Сергей Морозов", "+7 912 800-00-02", company="Ромашка-Урал", tax_id=SBER)
        )
        before = await snapshot(hub)
        before_companies = await companies(hub)
        merge_id = await _merge(hub, MergeCompanies(keep=1, other=2))
        after = await companies(hub)
        assert [(c["id"], c["tax_id"]) for c in after] == [(1, SBER)]  # the blank was filled
        state = await snapshot(hub)
        assert {c["company_id"] for c in state["contacts"]} == {1}
        assert {d["company_id"] for d in state["deals"]} == {1}
        await hub.deals.apply([Unmerge(merge_id=merge_id)], SYSTEM)
        assert await snapshot(hub) == before
        assert await companies(hub) == before_companies
    finally:
        await hub.stop()


async def test_companies_with_different_tax_ids_are_not_merged(sqlite_url):
    hub = await run_hub(sqlite_url)
    try:
        now = utcnow()
        async with hub.store.write() as conn:
            await conn.execute(
                Company.__table__.insert(),
                [
                    {"name": "Ромашка", "tax_id": SBER, "created_at": now, "updated_at": now},
                    {
                        "name": "Ромашка",
                        "tax_id": "500100732259",
                        "created_at": now,
                        "updated_at": now,
                    },
                ],
            )
        with pytest.raises(Refused, match="different legal entities"):
            await _merge(hub, MergeCompanies(keep=1, other=2))
    finally:
        await hub.stop()


def test_an_import_with_an_inn_column_links_contacts_to_one_company(tmp_path):
    from click.testing import CliRunner

    from hub.cli import main
    from tests.conftest import ROOT

    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.example.toml").read_text())
    table = tmp_path / "clients.csv"
    table.write_text(
        "ФИО;Телефон;Компания;ИНН\n"
        f"Ирина Волкова;+7 912 800-00-01;ПАО Сбербанк;{SBER}\n"
        f"Сергей Морозов;+7 912 800-00-02;Сбербанк России;{SBER}\n"
        "Павел Зайцев;+7 912 800-00-03;ООО Лютик;1234567890\n"
    )
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "import", "contacts", str(table)])
    assert result.exit_code == 0, result.output
    assert "ИНН → tax_id" in result.output
    assert "created 3" in result.output
    listed = runner.invoke(main, ["--config", str(config), "contacts", "list"])
    assert listed.exit_code == 0

    import asyncio

    from hub.config import load_settings
    from hub.store import Store

    async def linked():
        store = Store(load_settings(config).store_url)
        async with store.read() as conn:
            rows = (await conn.execute(select(Contact.name, Contact.company_id))).all()
            names = (await conn.execute(select(Company.name, Company.tax_id))).all()
        await store.close()
        return dict(rows), names

    rows, names = asyncio.run(linked())
    assert rows["Ирина Волкова"] == rows["Сергей Морозов"] is not None
    assert rows["Павел Зайцев"] is not None  # a wrong ИНН keeps the company by name
    assert (names[0][0], names[0][1]) == ("ПАО Сбербанк", SBER)
    assert names[1][1] is None


async def test_companies_through_the_api(hub_client):
    from tests.test_api import ANNA, HEAD, wait_for

    for name, phone, company in [
        ("Ирина Волкова", "+7 912 800-00-01", "ООО «Ромашка»"),
        ("Сергей Морозов", "+7 912 800-00-02", "Ромашка ООО"),
        ("Павел Зайцев", "+7 912 800-00-03", "Romashka Group LLC"),
    ]:
        await hub_client.post(
            "/forms/contact", json={"fio": name, "tel": phone, "company": company}
        )

    async def two():
        page = await (await hub_client.get("/api/v1/companies", headers=HEAD)).json()
        return page["items"] if len(page["items"]) == 2 else None

    items = sorted(await wait_for(two), key=lambda c: c["id"])  # the list is newest first
    found = await (
        await hub_client.get("/api/v1/companies", params={"q": "Romashka LLC"}, headers=HEAD)
    ).json()
    assert [c["id"] for c in found["items"]] == [items[0]["id"]]
    detail = await (
        await hub_client.get(f"/api/v1/companies/{items[0]['id']}", headers=HEAD)
    ).json()
    assert len(detail["contacts"]) == 2
    assert {d["company_id"] for d in detail["deals"]} == {items[0]["id"]}
    refused = await hub_client.post(
        f"/api/v1/companies/{items[0]['id']}/merge", json={"other_id": items[1]["id"]}, headers=ANNA
    )
    assert refused.status == 403
    merged = await hub_client.post(
        f"/api/v1/companies/{items[0]['id']}/merge", json={"other_id": items[1]["id"]}, headers=HEAD
    )
    assert merged.status == 201
    detail = await (
        await hub_client.get(f"/api/v1/companies/{items[0]['id']}", headers=HEAD)
    ).json()
    assert len(detail["contacts"]) == 3


async def test_one_new_company_from_two_processes_at_once_is_one_company(store_url):
    import asyncio

    one = await run_hub(store_url, intake={"workers": 2, "batch_size": 1})
    two = await run_hub(store_url, intake={"workers": 2, "batch_size": 1})
    try:
        names = ["ООО «Вектор»", "Вектор ООО", "Vektor LLC", "ООО Вектор"]
        await asyncio.gather(
            *(
                submit(hub, lead(f"Сотрудник {n}-{i}", f"+7 912 9{n}0-00-{i:02d}", company=name))
                for n, hub in enumerate((one, two))
                for i, name in enumerate(names)
            )
        )
        assert len(await companies(one)) == 1
    finally:
        await one.stop()
        await two.stop()


async def _merge(hub: Hub, change: MergeContacts | MergeCompanies) -> int:
    await hub.deals.apply([change], SYSTEM)
    assert change.id is not None
    return change.id
