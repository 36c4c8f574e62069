"""Recognising the same person across channels and spellings, and what a repeat request becomes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from hub.context import Hub
from hub.domain.matching import Evidence
from hub.domain.similarity import company_similarity, name_similarity
from hub.hookspecs import hookimpl
from hub.store.models import Contact, Deal, DuplicateCandidate, InboxEvent, Task
from hub.store.types import utcnow
from tests.conftest import PIPELINES, make_hub, make_settings, wait_for


def lead(
    name: str | None = None, phone: str | None = None, email: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"phones": [phone] if phone else [], "emails": [email] if email else []}
    if name:
        body["name"] = name
    body.update(extra)
    return {"form": "contact", "lead": body}


async def run_hub(url: str, **overrides: Any) -> Hub:
    hub = make_hub(make_settings(url, **overrides))
    await hub.start()
    return hub


async def submit(hub: Hub, payload: dict[str, Any]) -> dict[str, Any]:
    accepted = await hub.intake.accept("webforms", payload)

    async def result() -> Any:
        async with hub.store.read() as conn:
            return (
                await conn.execute(select(InboxEvent.result).where(InboxEvent.id == accepted.id))
            ).scalar_one()

    return await wait_for(result)


async def count(hub: Hub, model: Any, *where: Any) -> int:
    async with hub.store.read() as conn:
        return (await conn.execute(select(func.count()).select_from(model).where(*where))).scalar()


async def test_the_same_person_in_another_alphabet_and_phone_format_joins_their_deal(store_url):
    hub = await run_hub(store_url)
    try:
        first = await submit(hub, lead("Дмитрий Соколов", "8 (912) 345-67-89"))
        second = await submit(hub, lead("Sokolov D.", "+7 912 3456789", "D.Sokolov@Gmail.com"))
        assert first["decision"] == "new_contact"
        assert second["decision"] == "added_to_open_deal"
        assert second["contact_id"] == first["contact_id"]
        assert second["deal_id"] == first["deal_id"]
        assert "same phone +" in second["match"]
        assert "last name equal +" in second["match"]
        assert await count(hub, Deal) == 1
    finally:
        await hub.stop()


async def test_gmail_dots_and_tags_are_one_mailbox(store_url):
    hub = await run_hub(store_url)
    try:
        first = await submit(hub, lead("Анна Попова", email="anna.popova@gmail.com"))
        second = await submit(hub, lead("Анна Попова", email="AnnaPopova+shop@gmail.com"))
        assert second["contact_id"] == first["contact_id"]
    finally:
        await hub.stop()


async def test_a_shared_office_phone_does_not_merge_two_people(store_url):
    hub = await run_hub(store_url)
    try:
        office = "+7 (343) 222-33-44"
        a = await submit(hub, lead("Ирина Волкова", office, company="ООО «Ромашка»"))
        b = await submit(hub, lead("Сергей Морозов", office, company="ООО «Ромашка»"))
        c = await submit(hub, lead("Павел Зайцев", office))
        assert len({a["contact_id"], b["contact_id"], c["contact_id"]}) == 3
        assert b["decision"] in ("new_contact", "possible_duplicate")
        assert await count(hub, Deal) == 3
    finally:
        await hub.stop()


async def test_a_generic_mailbox_is_weak_evidence(store_url):
    hub = await run_hub(store_url)
    try:
        a = await submit(hub, lead("Ирина Волкова", email="info@romashka.ru"))
        b = await submit(hub, lead("Сергей Морозов", email="info@romashka.ru"))
        assert a["contact_id"] != b["contact_id"]
    finally:
        await hub.stop()


async def test_same_phone_with_a_different_name_is_flagged_for_review_not_merged(store_url):
    hub = await run_hub(store_url)
    try:
        a = await submit(hub, lead("Ольга Лебедева", "+7 916 111-22-33"))
        b = await submit(hub, lead("Константин Белов", "+7 916 111-22-33"))
        assert b["decision"] == "possible_duplicate"
        assert b["contact_id"] != a["contact_id"]
        assert b["possible_duplicate_of"] == a["contact_id"]
        assert "first name differs" in b["match"]
        async with hub.store.read() as conn:
            flagged = (await conn.execute(select(DuplicateCandidate.__table__))).mappings().one()
        assert (flagged["contact_id"], flagged["other_id"]) == (b["contact_id"], a["contact_id"])
        assert flagged["status"] == "open"
        assert await count(hub, Deal) == 2  # the lead was not dropped
    finally:
        await hub.stop()


async def test_a_known_client_without_a_recent_deal_gets_a_new_deal_with_their_manager(store_url):
    hub = await run_hub(store_url)
    try:
        first = await submit(hub, lead("Мария Иванова", "+7 903 555-44-33"))
        async with hub.store.write() as conn:
            await conn.execute(
                update(Deal).values(status="won", closed_at=utcnow() - timedelta(days=90))
            )
        second = await submit(hub, lead("Мария Иванова", "89035554433"))
        assert second["decision"] == "new_deal_for_contact"
        assert second["deal_id"] != first["deal_id"]
        assert second["owner_id"] == first["owner_id"]
        assert second["assigned_by"] == "contact_owner"
    finally:
        await hub.stop()


async def test_a_recently_lost_deal_is_reopened_when_the_pipeline_says_so(store_url):
    pipelines = {
        **PIPELINES,
        "sales": {
            **PIPELINES["sales"],
            "repeat": {"on_recent_closed": "reopen", "recent_within": "30d"},
        },
    }
    hub = await run_hub(store_url, pipelines=pipelines)
    try:
        first = await submit(hub, lead("Мария Иванова", "+7 903 555-44-33"))
        lost = hub.catalog.pipelines["sales"].stages["lost"].id
        async with hub.store.write() as conn:
            await conn.execute(
                update(Deal).values(
                    status="lost",
                    stage_id=lost,
                    loss_reason="Дорого",
                    closed_at=utcnow() - timedelta(days=3),
                )
            )
        second = await submit(hub, lead("Мария Иванова", "+7 903 555 44 33"))
        assert second["decision"] == "reopened_deal"
        assert second["deal_id"] == first["deal_id"]
        async with hub.store.read() as conn:
            deal = (await conn.execute(select(Deal.__table__))).mappings().one()
        assert deal["status"] == "open"
        assert deal["stage_id"] == hub.catalog.pipelines["sales"].entry_stage.id
        assert await count(hub, Task, Task.deal_id == deal["id"]) == 2
    finally:
        await hub.stop()


async def test_two_requests_of_one_new_person_at_the_same_instant_make_one_contact_and_deal(
    store_url,
):
    """Two hub processes (two stores, two sets of workers) take the same person at once."""
    one = await run_hub(store_url, intake={"workers": 2, "batch_size": 1})
    two = await run_hub(store_url, intake={"workers": 2, "batch_size": 1})
    try:
        people = [("Елена Новикова", f"+7 926 000-{i:02d}-00") for i in range(10)]
        results = await asyncio.gather(
            *(
                submit(hub, lead(name, phone, message=f"via {channel}"))
                for name, phone in people
                for hub, channel in ((one, "form"), (two, "email"), (one, "call"))
            )
        )
        assert await count(one, Contact) == len(people)
        assert await count(one, Deal) == len(people)
        decisions = sorted(r["decision"] for r in results)
        assert decisions.count("new_contact") == len(people)
        assert decisions.count("added_to_open_deal") == 2 * len(people)
    finally:
        await one.stop()
        await two.stop()


class SameCardMatcher:
    name = "card"

    def evidence(self, lead, candidate):
        return [Evidence(0.99, "same loyalty card")] if candidate.city == "Вологда" else []


class CardPlugin:
    @hookimpl
    def hub_matchers(self) -> list[Any]:
        return [SameCardMatcher()]


async def test_hook_hub_matchers_adds_a_companys_own_evidence(sqlite_url):
    hub = make_hub(
        make_settings(sqlite_url, plugins={"webforms": {}, "cards": {}}),
        extra={"cards": CardPlugin},
    )
    await hub.start()
    try:
        office = "+7 (8172) 22-33-44"
        await submit(hub, lead("Ирина Волкова", office, city="Вологда"))
        await submit(hub, lead("Сергей Морозов", office))  # makes the office phone shared
        third = await submit(hub, lead(None, office, city="Вологда"))
        assert "same loyalty card" in third["match"]
        assert third["decision"] == "added_to_open_deal"
    finally:
        await hub.stop()


def test_names_match_across_alphabets_order_initials_and_diminutives():
    assert name_similarity("Дмитрий Соколов", "Dmitriy Sokolov") == 1.0
    assert name_similarity("Соколов Д.", "Дмитрий Соколов") == 1.0
    assert name_similarity("Дима Соколов", "Дмитрий Соколов") == 1.0
    assert name_similarity("Юлия Щербакова", "Yulia Shcherbakova") == 1.0
    assert name_similarity("Иван Петров", "Сергей Сидоров") < 0.5
    assert name_similarity("Иван", None) is None


def test_company_names_match_without_legal_forms_and_quotes():
    assert company_similarity("ООО «Ромашка»", "Romashka LLC") == 1.0
    assert company_similarity("ООО Ромашка", "ООО Лютик") < 0.5


def test_an_initial_of_a_two_letter_sound_still_matches_the_name():
    # Ю, Я, Ж, Ш become two or more Latin letters; the initial must still match.
    assert name_similarity("Смирнов Ю.", "Юрий Смирнов") == 1.0
    assert name_similarity("Шевчук Ж.", "Жанна Шевчук") == 1.0
    assert name_similarity("Смирнов Ю.", "Иван Смирнов") < 0.85


async def test_the_same_full_name_at_the_same_company_through_the_office_mailbox_is_reviewed(
    store_url,
):
    # Namesakes work together in big companies: the office mailbox and the company say they
    # are colleagues, not one person; with nothing personal in common it is for review.
    hub = await run_hub(store_url)
    try:
        first = await submit(
            hub,
            lead("Сергей Яковлев", "+7 912 700-00-01", "info@romashka.ru", company="ООО «Ромашка»"),
        )
        await submit(
            hub,
            lead("Ирина Волкова", "+7 912 700-00-02", "info@romashka.ru", company="ООО «Ромашка»"),
        )
        again = await submit(
            hub,
            lead("Яковлев Сергей", "+7 343 200-00-00", "info@romashka.ru", company="Romashka LLC"),
        )
        assert again["decision"] == "possible_duplicate"
        assert again["possible_duplicate_of"] == first["contact_id"]
        assert "same company" in again["match"]
        assert "shared email" not in again["match"]  # the company already says it
    finally:
        await hub.stop()
