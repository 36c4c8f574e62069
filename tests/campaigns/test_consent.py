"""Consent is recorded with its source and time from a form's checkbox and the API, and
withdrawn by the API; each word is a domain event, so the history says who and how."""

from __future__ import annotations

from sqlalchemy import select

from hub.app import build_app
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.store.models import Consent, DomainEvent
from tests.conftest import FORMS, make_hub, make_settings, wait_for

SEMINAR_FORM = {
    **FORMS,
    "seminar": {
        "name": "Семинар",
        "fields": {"fio": "name", "tel": "phone", "news": "consent_sms"},
        "source": "Сайт",
        "rate_limit": 1000,
    },
}
HEAD = {"Authorization": "Bearer head-token-0123456789"}


async def consents(hub):
    async with hub.store.read() as conn:
        return {
            (r.contact_id, r.channel): (r.granted, r.source)
            for r in (await conn.execute(select(Consent))).all()
        }


async def test_a_ticked_form_box_records_sms_consent_with_the_form_as_its_source(
    aiohttp_client, store_url
):
    hub = make_hub(make_settings(store_url, plugins={"webforms": {"forms": SEMINAR_FORM}}))
    client = await aiohttp_client(build_app(hub))
    sent = await client.post(
        "/forms/seminar", data={"fio": "Пётр Иванов", "tel": "+7 916 123-45-67", "news": "on"}
    )
    assert sent.status in (200, 202), await sent.text()
    await client.post("/forms/seminar", data={"fio": "Олег Белов", "tel": "+7 916 123-45-68"})
    found = await wait_for(lambda: _two_contacts(hub))
    assert list((await consents(hub)).values()) == [(True, "webforms:Семинар")]
    assert found


async def _two_contacts(hub):
    async with hub.store.read() as conn:
        rows = (await conn.execute(select(DomainEvent.type))).scalars().all()
    return rows.count("contact.created") == 2


async def test_consent_given_and_withdrawn_through_the_api_keeps_the_latest_word_and_the_history(
    aiohttp_client, store_url
):
    hub = make_hub(make_settings(store_url))
    client = await aiohttp_client(build_app(hub))
    petr = ch.CreateContact(name="Пётр")
    await hub.deals.apply([petr], SYSTEM)
    contact = petr.id
    given = await client.post(
        f"/api/v1/contacts/{contact}/consents",
        headers=HEAD,
        json={"channel": "email", "granted": True, "source": "договор №12"},
    )
    assert given.status == 201
    await client.post(
        f"/api/v1/contacts/{contact}/consents",
        headers=HEAD,
        json={"channel": "email", "granted": False, "source": "звонок клиента"},
    )
    assert await consents(hub) == {(contact, "email"): (False, "звонок клиента")}
    async with hub.store.read() as conn:
        history = (
            await conn.execute(
                select(DomainEvent.type, DomainEvent.payload)
                .where(DomainEvent.type.like("consent.%"))
                .order_by(DomainEvent.id)
            )
        ).all()
    assert [(t, p["source"]) for t, p in history] == [
        ("consent.given", "договор №12"),
        ("consent.withdrawn", "звонок клиента"),
    ]


async def test_a_manager_cannot_set_consent_on_another_managers_contact(aiohttp_client, sqlite_url):
    hub = make_hub(make_settings(sqlite_url))
    client = await aiohttp_client(build_app(hub))
    dmitrys = ch.CreateContact(name="Пётр", owner_id=hub.catalog.user_ids["dmitry@example.com"])
    await hub.deals.apply([dmitrys], SYSTEM)
    contact = dmitrys.id
    answer = await client.post(
        f"/api/v1/contacts/{contact}/consents",
        headers={"Authorization": "Bearer anna-token-0123456789"},
        json={"channel": "sms", "granted": True},
    )
    assert answer.status == 404
    assert await consents(hub) == {}
