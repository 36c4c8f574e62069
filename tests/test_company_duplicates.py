"""Companies held twice are proposed for merging: by tax id, or by name with a shared contact."""

from __future__ import annotations

from typing import Any

from hub.company_duplicates import company_twins
from hub.context import Hub
from hub.deals import SYSTEM
from hub.deals.changes import CreateCompany, CreateContact, CreateDeal, MergeCompanies
from hub.domain.normalize import email_point, phone_point
from hub.domain.similarity import company_key
from tests.conftest import make_hub, make_settings

SBER = "7707083893"  # a real, valid ИНН
OTHER_INN = "500100732259"


async def started(url: str) -> Hub:
    hub = make_hub(make_settings(url))
    await hub.start()
    return hub


async def company(hub: Hub, name: str, tax_id: str | None = None, *people: dict[str, Any]) -> int:
    """A company with contacts (``{"name", "phone", "email", "deal"}``), made as an import
    or the API would make it: straight through the writer, no matching."""
    firm = CreateCompany(name=name, name_key=company_key(name), tax_id=tax_id)
    changes: list[Any] = [firm]
    for person in people:
        points = []
        if person.get("phone"):
            points.append(phone_point(person["phone"], "RU"))
        if person.get("email"):
            points.append(email_point(person["email"]))
        contact = CreateContact(name=person["name"], company=firm, points=points)
        changes.append(contact)
        if person.get("deal"):
            assert hub.catalog is not None
            pipeline = hub.catalog.pipelines[hub.catalog.default]
            changes.append(
                CreateDeal(
                    title=person["deal"],
                    pipeline_id=pipeline.id,
                    stage_id=pipeline.entry_stage.id,
                    contact=contact,
                    company=firm,
                )
            )
    await hub.deals.apply(changes, SYSTEM)
    assert firm.id is not None
    return firm.id


async def twins(hub: Hub) -> list[tuple[int, int, str]]:
    async with hub.store.read() as conn:
        return [(t.keep, t.other, t.reason) for t in await company_twins(conn)]


async def test_two_records_with_one_tax_id_are_proposed_keeping_the_one_in_use(store_url):
    hub = await started(store_url)
    try:
        bare = await company(hub, "ПАО Сбербанк", SBER)
        used = await company(
            hub,
            "Сбер",
            SBER,
            {"name": "Ирина Волкова", "phone": "+7 912 800-00-01", "deal": "Эквайринг"},
        )
        assert await twins(hub) == [(used, bare, "tax_id")]
    finally:
        await hub.stop()


async def test_the_same_name_with_a_shared_office_line_is_proposed(store_url):
    hub = await started(store_url)
    try:
        first = await company(
            hub, "ООО «Ромашка»", None, {"name": "Ирина Волкова", "phone": "+7 343 200-00-01"}
        )
        second = await company(
            hub, "Romashka LLC", None, {"name": "Сергей Морозов", "phone": "8 (343) 200-00-01"}
        )
        async with hub.store.read() as conn:
            (found,) = await company_twins(conn)
        assert (found.keep, found.other, found.reason) == (first, second, "name_and_contact")
        assert found.evidence == "+73432000001"
        assert "+73432000001" in found.describe()
    finally:
        await hub.stop()


async def test_the_same_name_alone_or_with_another_tax_id_is_two_firms(store_url):
    hub = await started(store_url)
    try:
        # namesakes in two cities, nobody in common
        await company(hub, "Ромашка", None, {"name": "Ирина Волкова", "email": "irina@romashka.ru"})
        await company(
            hub, "Ромашка", None, {"name": "Павел Зайцев", "email": "pavel@romashka63.ru"}
        )
        # two legal entities, even with a line in common
        await company(hub, "Лютик", SBER, {"name": "Анна Белова", "phone": "+7 495 100-00-01"})
        await company(hub, "Лютик", OTHER_INN, {"name": "Олег Белов", "phone": "+7 495 100-00-01"})
        assert await twins(hub) == []
    finally:
        await hub.stop()


async def test_a_proposed_pair_merges_and_is_proposed_no_more(store_url):
    hub = await started(store_url)
    try:
        keep = await company(hub, "Лютик", SBER, {"name": "Анна Белова", "email": "anna@lutik.ru"})
        other = await company(hub, "ЛЮТИК", None, {"name": "Олег Белов", "email": "anna@lutik.ru"})
        assert await twins(hub) == [(keep, other, "name_and_contact")]
        await hub.deals.apply([MergeCompanies(keep=keep, other=other)], SYSTEM)
        assert await twins(hub) == []
    finally:
        await hub.stop()


async def test_the_api_lists_the_pairs_for_a_head_only(store_url, aiohttp_client):
    from hub.app import build_app

    settings = make_settings(store_url)
    hub = make_hub(settings)
    client = await aiohttp_client(build_app(hub))
    await company(hub, "ПАО Сбербанк", SBER)
    await company(hub, "Сбер", SBER)
    head = {"Authorization": "Bearer head-token-0123456789"}
    listed = await client.get("/api/v1/companies/duplicates", headers=head)
    assert listed.status == 200, await listed.text()
    (item,) = (await listed.json())["items"]
    assert item["keep"] == {"id": 1, "name": "ПАО Сбербанк"}
    assert item["other"]["id"] == 2 and item["why"] == f"same tax id {SBER}"
    manager = await client.get(
        "/api/v1/companies/duplicates", headers={"Authorization": "Bearer anna-token-0123456789"}
    )
    assert manager.status == 403


def test_hub_companies_duplicates_names_both_records_and_how_to_merge(tmp_path):
    import asyncio

    from click.testing import CliRunner

    from hub.cli import main
    from hub.config import load_settings
    from tests.conftest import ROOT

    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.example.toml").read_text())

    async def seed() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        try:
            await company(hub, "ПАО Сбербанк", SBER)
            await company(hub, "Сбербанк России", SBER, {"name": "Ирина Волкова", "deal": "РКО"})
        finally:
            await hub.stop()

    asyncio.run(seed())
    result = CliRunner().invoke(main, ["--config", str(config), "companies", "duplicates"])
    assert result.exit_code == 0, result.output
    assert "Сбербанк России" in result.output and "ПАО Сбербанк" in result.output
    assert f"same tax id {SBER}" in result.output
    assert "hub companies merge KEEP OTHER" in result.output
    keep_row = next(line for line in result.output.splitlines() if "same tax id" in line)
    assert keep_row.split()[0] == "2"  # the record in use (a contact, a deal) is kept
    scanned = CliRunner().invoke(main, ["--config", str(config), "dedupe", "scan"])
    assert scanned.exit_code == 0, scanned.output
    assert "1 companies held twice" in scanned.output  # the scan proposes firms as well as people
    assert f"same tax id {SBER}" in scanned.output
