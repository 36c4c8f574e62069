"""The web-form channel as a site, a browser and a partner's server see it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from hub.api import HUB_KEY
from hub.store.models import Contact, ContactPoint, Deal, InboxEvent, Task, User
from tests.conftest import wait_for

IVAN = {"fio": "Иван Петров", "tel": "8 (912) 345-67-89", "email": "Ivan@Example.com"}


async def count(client: TestClient, model: Any, *where: Any) -> int:
    hub = client.app[HUB_KEY]
    async with hub.store.read() as conn:
        return (await conn.execute(select(func.count()).select_from(model).where(*where))).scalar()


async def deal_for(client: TestClient, lead_id: int) -> dict[str, Any] | None:
    hub = client.app[HUB_KEY]
    async with hub.store.read() as conn:
        row = (await conn.execute(select(Deal.__table__).where(Deal.inbox_id == lead_id))).first()
        return row._asdict() if row else None


async def test_form_post_creates_deal_with_owner_first_task_and_e164_phone(hub_client):
    response = await hub_client.post("/forms/contact", data=IVAN)
    assert response.status == 202
    lead_id = (await response.json())["lead_id"]

    deal = await wait_for(lambda: deal_for(hub_client, lead_id))
    assert deal["title"] == "Заявка с сайта: Иван Петров"
    assert deal["source"] == "Сайт"
    assert deal["status"] == "open"
    assert deal["owner_id"] is not None
    hub = hub_client.app[HUB_KEY]
    async with hub.store.read() as conn:
        points = dict(
            (
                await conn.execute(
                    select(ContactPoint.kind, ContactPoint.normalized).where(
                        ContactPoint.contact_id == deal["contact_id"]
                    )
                )
            ).all()
        )
        task = (await conn.execute(select(Task.__table__).where(Task.deal_id == deal["id"]))).one()
        owner = (
            await conn.execute(select(User.__table__).where(User.id == deal["owner_id"]))
        ).one()
    assert points == {"phone": "+79123456789", "email": "ivan@example.com"}
    assert task.title == "Связаться с клиентом"
    assert task.done_at is None
    assert task.owner_id == deal["owner_id"]
    assert 23 * 3600 < (task.due_at - deal["created_at"]).total_seconds() <= 24 * 3600
    assert owner.role == "manager"


async def test_same_submission_twice_is_one_lead_and_one_deal(hub_client):
    first = await (await hub_client.post("/forms/contact", data=IVAN)).json()
    second = await (await hub_client.post("/forms/contact", data=IVAN)).json()
    assert second == {"lead_id": first["lead_id"], "duplicate": True}
    await wait_for(lambda: deal_for(hub_client, first["lead_id"]))
    assert await count(hub_client, Deal) == 1
    assert await count(hub_client, InboxEvent) == 1


async def test_idempotency_key_header_makes_a_retry_safe(hub_client):
    headers = {"Idempotency-Key": "order-42"}
    first = await (await hub_client.post("/forms/contact", json=IVAN, headers=headers)).json()
    changed = {**IVAN, "comment": "retry with a different body"}
    second = await (await hub_client.post("/forms/contact", json=changed, headers=headers)).json()
    assert second["lead_id"] == first["lead_id"]
    assert second["duplicate"] is True


async def test_known_phone_in_another_format_joins_the_open_deal_of_its_owner(hub_client):
    first = await (await hub_client.post("/forms/contact", data=IVAN)).json()
    deal = await wait_for(lambda: deal_for(hub_client, first["lead_id"]))
    again = {"fio": "Иван", "tel": "+7 912 3456789", "comment": "Хочу ещё один сайт"}
    second = await (await hub_client.post("/forms/contact", data=again)).json()
    hub = hub_client.app[HUB_KEY]

    async def result():
        async with hub.store.read() as conn:
            return (
                await conn.execute(
                    select(InboxEvent.result).where(InboxEvent.id == second["lead_id"])
                )
            ).scalar_one()

    decision = await wait_for(result)
    assert decision["decision"] == "added_to_open_deal"
    assert decision["deal_id"] == deal["id"]
    assert decision["owner_id"] == deal["owner_id"]
    assert "same phone" in decision["match"]
    assert await count(hub_client, Contact) == 1
    assert await count(hub_client, Deal) == 1
    assert await count(hub_client, Task, Task.deal_id == deal["id"]) == 2  # the owner is told


async def test_new_clients_are_shared_round_robin_between_active_managers(hub_client):
    owners = []
    for i in range(4):
        body = {"fio": f"Клиент {i}", "tel": f"+7 912 000-00-0{i}"}
        lead = await (await hub_client.post("/forms/contact", data=body)).json()
        owners.append(
            (await wait_for(lambda lead=lead: deal_for(hub_client, lead["lead_id"])))["owner_id"]
        )
    assert len(set(owners)) == 2  # anna and dmitry; olga is head of sales
    assert owners[0] != owners[1]
    assert owners[0] == owners[2]


async def test_browser_post_is_redirected_or_thanked(hub_client):
    hub = hub_client.app[HUB_KEY]
    headers = {"Accept": "text/html,application/xhtml+xml", "Origin": "https://shop.example.ru"}
    response = await hub_client.post(
        "/forms/contact", data=IVAN, headers=headers, allow_redirects=False
    )
    assert response.status == 200
    assert "Спасибо" in await response.text()
    hub.plugins.records["webforms"].instance.config.forms[
        "contact"
    ].thank_you_url = "https://shop.example.ru/thanks"
    other = {**IVAN, "fio": "Пётр"}
    response = await hub_client.post(
        "/forms/contact", data=other, headers=headers, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "https://shop.example.ru/thanks"


async def test_missing_required_field_lists_the_fields_and_stores_nothing(hub_client):
    response = await hub_client.post("/forms/contact", data={"email": "a@b.ru"})
    assert response.status == 422
    body = await response.json()
    assert {f["field"] for f in body["fields"]} == {"fio", "tel"}
    assert await count(hub_client, InboxEvent) == 0


async def test_browser_gets_a_readable_error_page(hub_client):
    response = await hub_client.post(
        "/forms/contact", data={"fio": "Иван", "tel": "12"}, headers={"Accept": "text/html"}
    )
    assert response.status == 422
    page = await response.text()
    assert "<strong>tel</strong>: неверный номер телефона" in page


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"data": b"<xml/>", "headers": {"Content-Type": "text/xml"}}, 415, "unsupported"),
        (
            {
                "data": b"fio=%D0%98&tel=%FF%FE",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            400,
            "utf-8",
        ),
        (
            {
                "data": b"fio=\xff\xfe&tel=1",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            400,
            "utf-8",
        ),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ({"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 400, "object"),
        (
            {
                "data": b"x" * (10 * 1024 * 1024),
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            413,
            "body over",
        ),
    ],
    ids=["xml", "bad-percent-escape", "bad-raw-bytes", "broken-json", "json-array", "10MB"],
)
async def test_unreadable_bodies_get_a_clear_4xx_and_store_nothing(
    hub_client, kwargs, status, message
):
    response = await hub_client.post("/forms/contact", **kwargs)
    assert response.status == status
    assert message in (await response.json())["error"]
    assert await count(hub_client, InboxEvent) == 0


async def test_unknown_form_is_404(hub_client):
    response = await hub_client.post("/forms/nope", data=IVAN)
    assert response.status == 404
    assert "unknown form" in (await response.json())["error"]


async def test_windows_1251_form_is_read_in_its_charset(hub_client):
    body = "fio=Иван Петров&tel=89123456789".encode("cp1251")
    response = await hub_client.post(
        "/forms/contact",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=windows-1251"},
    )
    assert response.status == 202
    lead_id = (await response.json())["lead_id"]
    deal = await wait_for(lambda: deal_for(hub_client, lead_id))
    assert deal["title"] == "Заявка с сайта: Иван Петров"


async def test_multipart_form_with_a_file_keeps_the_file_for_the_manager(hub_client):
    form = aiohttp.FormData()
    form.add_field("fio", "Мария")
    form.add_field("tel", "+7 (495) 123-45-67")
    form.add_field("brief", b"%PDF-1.4 ...", filename="brief.pdf", content_type="application/pdf")
    response = await hub_client.post("/forms/contact", data=form)
    assert response.status == 202
    lead_id = (await response.json())["lead_id"]
    await wait_for(lambda: deal_for(hub_client, lead_id))
    hub = hub_client.app[HUB_KEY]
    async with hub.store.read() as conn:
        payload = (
            await conn.execute(select(InboxEvent.payload).where(InboxEvent.id == lead_id))
        ).scalar_one()
    assert payload["submission"]["fio"] == "Мария"
    attached = payload["submission"]["_files"][0]
    assert (attached["filename"], attached["size"]) == ("brief.pdf", 12)
    headers = {"Authorization": "Bearer head-token-0123456789"}
    download = await hub_client.get(
        f"/api/v1/attachments/{attached['sha256']}", params={"name": "brief.pdf"}, headers=headers
    )
    assert download.status == 200
    assert await download.read() == b"%PDF-1.4 ..."
    assert "brief.pdf" in download.headers["Content-Disposition"]
    anna = {"Authorization": "Bearer anna-token-0123456789"}
    assert (await hub_client.get("/api/v1/deals/1", headers=headers)).status == 200
    own = await hub_client.get(f"/api/v1/attachments/{attached['sha256']}", headers=anna)
    assert own.status == 200  # the first deal is anna's

    other = aiohttp.FormData()
    other.add_field("fio", "Пётр")
    other.add_field("tel", "+7 (495) 765-43-21")
    other.add_field("brief", b"another client's brief", filename="tz.docx")
    lead_id = (await (await hub_client.post("/forms/contact", data=other)).json())["lead_id"]
    await wait_for(lambda: deal_for(hub_client, lead_id))
    async with hub.store.read() as conn:
        payload = (
            await conn.execute(select(InboxEvent.payload).where(InboxEvent.id == lead_id))
        ).scalar_one()
    sha = payload["submission"]["_files"][0]["sha256"]
    refused = await hub_client.get(f"/api/v1/attachments/{sha}", headers=anna)
    assert refused.status == 404  # dmitry's client's file is not anna's to read
    assert (await hub_client.get("/api/v1/attachments/../../etc", headers=headers)).status == 404


def signed(body: bytes, secret: str = "partner-secret-0123456789") -> dict[str, str]:
    """The headers of a request to /forms/partner signed now (hub/signing.py)."""
    now = str(int(time.time()))
    message = f"{now}\nPOST\n/forms/partner\n\n".encode() + body
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {"X-Hub-Timestamp": now, "X-Hub-Signature-256": f"sha256={signature}"}


async def test_partner_post_needs_a_valid_signature(hub_client):
    body = '{"name": "ООО Ромашка", "phone": "+7 343 222-33-44", "amount": "150000"}'.encode()
    headers = {"Content-Type": "application/json"}
    missing = await hub_client.post("/forms/partner", data=body, headers=headers)
    assert missing.status == 401
    wrong = await hub_client.post(
        "/forms/partner", data=body, headers={**headers, **signed(body, "x")}
    )
    assert wrong.status == 401
    assert await count(hub_client, InboxEvent) == 0
    good = await hub_client.post("/forms/partner", data=body, headers={**headers, **signed(body)})
    assert good.status == 202
    deal = await wait_for(lambda: deal_for(hub_client, 1))
    assert str(deal["amount"]) in ("150000", "150000.00")
    assert deal["source"] == "От партнёра"


async def test_cors_preflight_allows_the_configured_site_only(hub_client):
    allowed = await hub_client.options(
        "/forms/contact",
        headers={"Origin": "https://shop.example.ru", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example.ru"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    refused = await hub_client.options(
        "/forms/contact", headers={"Origin": "https://evil.example.com"}
    )
    assert refused.status == 403
    post = await hub_client.post(
        "/forms/contact", data=IVAN, headers={"Origin": "https://evil.example.com"}
    )
    assert post.status == 403
    assert await count(hub_client, InboxEvent) == 0


async def test_honeypot_submission_is_kept_as_spam_and_makes_no_deal(hub_client):
    response = await hub_client.post("/forms/contact", data={**IVAN, "website": "http://spam"})
    assert response.status == 202  # a bot learns nothing
    lead_id = (await response.json())["lead_id"]
    await asyncio.sleep(0.3)
    assert await count(hub_client, Deal) == 0
    assert await count(hub_client, InboxEvent, InboxEvent.status == "spam") == 1
    assert lead_id == 1


async def test_rate_limit_answers_429_with_retry_after(aiohttp_client, sqlite_url):
    from hub.app import build_app
    from tests.conftest import FORMS, make_hub, make_settings

    forms = {"contact": {**FORMS["contact"], "rate_limit": 3, "rate_window": "1m"}}
    hub = make_hub(make_settings(sqlite_url, plugins={"webforms": {"forms": forms}}))
    client = await aiohttp_client(build_app(hub))
    statuses = []
    for i in range(5):
        response = await client.post("/forms/contact", data={**IVAN, "fio": f"Иван {i}"})
        statuses.append(response.status)
    assert statuses == [202, 202, 202, 429, 429]
    assert int(response.headers["Retry-After"]) >= 1
