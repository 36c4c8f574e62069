"""What a person, or a site's developer, is told when a submission is refused.

A browser gets a page in Russian naming the fields as the site's form names them;
an API client gets JSON with machine-readable codes and the same sentences. Bad
input is always a 4xx, the same on both stores.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.api import HUB_KEY
from hub.store.models import Deal, InboxEvent
from tests.conftest import wait_for
from tests.plugins.webforms.raw import page_links, page_text, post_raw

BROWSER = {"Accept": "text/html,application/xhtml+xml"}
SITE = "https://shop.example.ru"
URLENCODED = "application/x-www-form-urlencoded"


async def inbox(client: TestClient) -> list[dict[str, Any]]:
    hub = client.app[HUB_KEY]
    async with hub.store.read() as conn:
        rows = await conn.execute(select(InboxEvent.id, InboxEvent.payload).order_by("id"))
        return [{"id": r.id, **r.payload} for r in rows]


def contact_form(client: TestClient) -> Any:
    return client.app[HUB_KEY].plugins.records["webforms"].instance.config.forms["contact"]


# -- the error page -------------------------------------------------------------------------


async def test_error_page_is_in_russian_and_names_the_fields_the_form_sent(hub_client):
    # The site's form calls its fields name and phone (as examples/form.html does); the
    # configuration also maps fio and tel to them. The page names what the form sent.
    response = await hub_client.post(
        "/forms/contact", data={"name": " ", "phone": "12"}, headers=BROWSER
    )
    assert response.status == 422
    html = await response.text()
    text = page_text(html)
    assert "Заявка не отправлена" in text
    assert "Проверьте поля формы" in text
    assert "name: обязательное поле" in text
    assert "phone: неверный номер телефона" in text
    for foreign in ("fio", "tel", "required", "not a phone", "Not sent"):
        assert foreign not in html


async def test_error_page_names_the_configured_field_when_the_form_sent_none(hub_client):
    response = await hub_client.post(
        "/forms/contact", data={"email": "не адрес", "website": ""}, headers=BROWSER
    )
    text = page_text(await response.text())
    assert "fio: обязательное поле" in text
    assert "tel: обязательное поле" in text
    assert "email: неверный адрес email" in text


async def test_an_api_client_gets_codes_the_lead_field_and_the_forms_own_field(hub_client):
    response = await hub_client.post(
        "/forms/contact", json={"tel": "12", "email": "нет", "comment": "x" * 5001}
    )
    assert response.status == 422
    body = await response.json()
    assert body["code"] == "invalid"
    assert body["message"] == "Проверьте поля формы и отправьте её ещё раз."
    by_field = {f["field"]: f for f in body["fields"]}
    assert {k: (v["lead_field"], v["code"], v["message"]) for k, v in by_field.items()} == {
        "fio": ("name", "required", "обязательное поле"),
        "tel": ("phone", "invalid_phone", "неверный номер телефона"),
        "email": ("email", "invalid_email", "неверный адрес email"),
        "comment": ("message", "too_long", "слишком длинный текст: не больше 5000 символов"),
    }
    assert by_field["comment"]["limit"] == 5000


async def test_a_form_with_neither_phone_nor_email_asks_for_one_in_its_own_words(hub_client):
    contact_form(hub_client).required = ["name"]
    response = await hub_client.post(
        "/forms/contact", data={"name": "Иван", "phone": "", "email": ""}, headers=BROWSER
    )
    assert "phone: укажите телефон или email" in page_text(await response.text())


@pytest.mark.parametrize(
    ("headers", "page_url", "back"),
    [
        (
            {"Referer": f"{SITE}/uslugi/sajty?utm_source=ya"},
            None,
            f"{SITE}/uslugi/sajty?utm_source=ya",
        ),
        ({"Referer": "http://localhost:8000/form.html"}, None, "http://localhost:8000/form.html"),
        # a cross-site post: the browser sent only the site's address; the config knows better
        ({"Referer": f"{SITE}/", "Origin": SITE}, f"{SITE}/contacts", f"{SITE}/contacts"),
        ({"Referer": "javascript:alert(1)", "Origin": SITE}, None, f"{SITE}/"),
        ({"Referer": "data:text/html,hi"}, f"{SITE}/contacts", f"{SITE}/contacts"),
        ({"Origin": SITE}, None, f"{SITE}/"),
        ({"Origin": "null"}, None, None),
        ({}, None, None),
    ],
    ids=["page", "local-page", "origin-only", "javascript", "data", "no-referer", "file", "none"],
)
async def test_back_link_returns_to_the_page_the_form_was_on(hub_client, headers, page_url, back):
    contact_form(hub_client).page_url = page_url
    response = await hub_client.post(
        "/forms/contact", data={"fio": "Иван"}, headers={**BROWSER, **headers}
    )
    html = await response.text()
    assert page_links(html) == ([back] if back else [])
    if back:
        assert "Вернуться к форме" in page_text(html)


@pytest.mark.parametrize(
    ("send", "status", "sentence"),
    [
        ({"form": "nope"}, 404, "Такой формы нет: «nope»."),
        ({"headers": {"Origin": "https://evil.example.com"}}, 403, "не принимает заявки с сайта"),
        ({"headers": {"Content-Type": "text/xml"}}, 415, "такой тип данных не поддерживается"),
        ({"data": b"x" * 70000}, 413, "не больше 64 КБ"),
    ],
    ids=["unknown-form", "origin", "content-type", "too-large"],
)
async def test_every_refusal_page_is_in_russian(hub_client, send, status, sentence):
    response = await hub_client.post(
        f"/forms/{send.get('form', 'contact')}",
        data=send.get("data", b"fio=1"),
        headers={**BROWSER, "Content-Type": URLENCODED, **send.get("headers", {})},
    )
    assert response.status == status
    text = page_text(await response.text())
    assert "Заявка не отправлена" in text
    assert sentence in text


# -- bad input is a 4xx ---------------------------------------------------------------------


async def test_a_charset_that_is_no_text_encoding_is_refused_by_name(hub_client):
    for charset in ("base64", "hex", "zlib", "rot13", "undefined", "punycode", "idna", "bogus"):
        response = await hub_client.post(
            "/forms/contact",
            data=b"fio=Ivan&tel=89123456789",
            headers={"Content-Type": f"{URLENCODED}; charset={charset}"},
        )
        body = await response.json()
        assert (response.status, body["code"]) == (415, "charset"), charset
        assert charset in body["error"]
        assert f"кодировка «{charset}» не поддерживается" in body["message"]
    assert await inbox(hub_client) == []


async def test_a_body_that_is_not_in_its_declared_charset_is_a_400_naming_it(hub_client):
    response = await hub_client.post(
        "/forms/contact",
        data=b"fio=+2D3-&tel=89123456789",  # a UTF-7 shift sequence that ends mid-character
        headers={"Content-Type": f"{URLENCODED}; charset=utf-7"},
    )
    assert response.status == 400
    assert "utf-7" in (await response.json())["message"]


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"XyZ") -> bytes:
    """Parts as (extra part headers, content), each with its own Content-Disposition."""
    out = b""
    for headers, content in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


@pytest.mark.parametrize("charset", [b"bogus", b"base64", b"utf\x008", b"\xd0\x96"])
async def test_a_multipart_part_in_an_unknown_charset_is_refused_by_name(hub_client, charset):
    body = multipart(
        [
            (
                b'Content-Disposition: form-data; name="fio"\r\n'
                b"Content-Type: text/plain; charset=" + charset,
                b"Ivan",
            ),
            (b'Content-Disposition: form-data; name="tel"', b"89123456789"),
        ]
    )
    response = await post_raw(
        hub_client,
        b"/forms/contact",
        [(b"Content-Type", b"multipart/form-data; boundary=XyZ")],
        body,
    )
    assert response.status == 415
    assert b"charset" in response.body
    assert await inbox(hub_client) == []


async def test_a_multipart_boundary_that_is_not_ascii_is_a_400(hub_client):
    boundary = "граница".encode()
    response = await post_raw(
        hub_client,
        b"/forms/contact",
        [(b"Content-Type", b"multipart/form-data; boundary=" + boundary)],
        multipart([(b'Content-Disposition: form-data; name="tel"', b"89123456789")], boundary),
    )
    assert response.status == 400
    assert b"boundary" in response.body


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        (b"deflate", b"this is not deflate"),
        (b"gzip", gzip.compress(b"fio=Ivan&tel=89123456789")[:8]),  # cut short in its header
        (b"gzip", b"\x1f\x8b\x08\x00 and then garbage"),
    ],
    ids=["deflate-garbage", "gzip-cut-short", "gzip-garbage"],
)
async def test_a_body_that_does_not_decode_by_its_content_encoding_is_a_400(
    hub_client, coding, body
):
    response = await post_raw(
        hub_client,
        b"/forms/contact",
        [(b"Content-Type", URLENCODED.encode()), (b"Content-Encoding", coding)],
        body,
    )
    assert response.status == 400
    assert b"Content-Encoding" in response.body
    assert await inbox(hub_client) == []


async def test_compressed_forms_are_read_and_unknown_codings_refused(hub_client):
    for coding, pack in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        response = await hub_client.post(
            "/forms/contact",
            data=pack(f"fio=Ivan {coding}&tel=89123456789".encode()),
            headers={"Content-Type": URLENCODED, "Content-Encoding": coding},
        )
        assert response.status == 202
    response = await hub_client.post(
        "/forms/contact",
        data=b"fio=Ivan&tel=89123456789",
        headers={"Content-Type": URLENCODED, "Content-Encoding": "compress"},
    )
    assert response.status == 415
    assert len(await inbox(hub_client)) == 2


async def test_a_small_compressed_body_that_inflates_past_max_body_is_413(hub_client):
    bomb = gzip.compress(b"fio=" + b"a" * 5_000_000)  # ~5 KB on the wire, 5 MB inflated
    response = await hub_client.post(
        "/forms/contact",
        data=bomb,
        headers={"Content-Type": URLENCODED, "Content-Encoding": "gzip"},
    )
    assert response.status == 413


async def test_a_nul_character_is_dropped_and_the_lead_stored_alike_on_both_stores(hub_client):
    response = await hub_client.post(
        "/forms/contact",
        data=b"fio=%D0%98%D0%B2%D0%B0%D0%BD%00+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2"
        b"&tel=89123456789&comment=a%00b&extra%00=x%00",
        headers={"Content-Type": URLENCODED},
    )
    assert response.status == 202
    lead_id = (await response.json())["lead_id"]
    [event] = await inbox(hub_client)
    assert event["submission"] == {
        "fio": "Иван Петров",
        "tel": "89123456789",
        "comment": "ab",
        "extra": "x",
    }
    hub = hub_client.app[HUB_KEY]

    async def deal() -> Any:
        async with hub.store.read() as conn:
            return (await conn.execute(select(Deal.title).where(Deal.inbox_id == lead_id))).first()

    assert (await wait_for(deal)).title == "Заявка с сайта: Иван Петров"


async def test_a_character_lost_on_the_way_is_a_422_naming_its_field(hub_client):
    # "+2AA-" is UTF-7 for a lone surrogate: no store can keep it, and nobody can tell
    # which character the client meant.
    response = await hub_client.post(
        "/forms/contact",
        data=b"fio=Ivan&tel=89123456789&note=+2AA-",
        headers={"Content-Type": f"{URLENCODED}; charset=utf-7"},
    )
    assert response.status == 422
    [error] = (await response.json())["fields"]
    assert error == {
        "field": "note",
        "lead_field": None,
        "code": "unstorable",
        "message": "недопустимые символы",
    }
    assert await inbox(hub_client) == []


async def test_header_bytes_that_are_not_utf8_are_kept_as_far_as_a_store_can(hub_client):
    response = await post_raw(
        hub_client,
        b"/forms/contact",
        [
            (b"Content-Type", URLENCODED.encode()),
            (b"User-Agent", b"Bot \xff\xfe/1.0"),
            (b"Referer", b"https://shop.example.ru/\xd0"),
        ],
        b"fio=Ivan&tel=89123456789",
    )
    assert response.status == 202
    [event] = await inbox(hub_client)
    assert event["meta"]["user_agent"] == "Bot \ufffd\ufffd/1.0"
    assert event["meta"]["referer"] == "https://shop.example.ru/\ufffd"
