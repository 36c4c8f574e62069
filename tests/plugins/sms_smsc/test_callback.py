"""SMSC's callback: signed delivery statuses to the desk, a STOP reply withdraws consent."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from hub.campaigns.gateway import DeliveryReport
from plugins.sms_smsc import Smsc, is_stop
from tests.plugins.sms_smsc.conftest import Desk, corpus
from tests.plugins.sms_smsc.fake import PASSWORD

FORM = "application/x-www-form-urlencoded"


async def client_for(plugin: Smsc, aiohttp_client: Any) -> TestClient:
    app = web.Application()
    app.add_routes(plugin.hub_routes())
    return await aiohttp_client(app)


def reply(text: str, phone: str = "79161234567", to: str = "79037654321") -> dict[str, str]:
    md5 = hashlib.md5(f"{phone}:{text}:{to}:{PASSWORD}".encode()).hexdigest()
    return {"phone": phone, "mes": text, "to": to, "md5": md5}


async def test_the_documented_status_callback_reaches_the_desk_as_delivered(
    plugin: Smsc, desk: Desk, aiohttp_client: Any
) -> None:
    raw = corpus("callback_status_post.http").read_bytes().replace(b"\r\n", b"\n")
    body = raw.split(b"\n\n", 1)[1].strip()
    client = await client_for(plugin, aiohttp_client)

    response = await client.post("/sms/smsc", data=body, headers={"Content-Type": FORM})

    assert response.status == 200
    at = datetime.fromtimestamp(1710487331, UTC)
    assert desk.reports == [("smsc", [DeliveryReport("1001:79161234567", "delivered", at=at)])]


async def test_a_callback_with_a_wrong_md5_is_refused_and_records_nothing(
    plugin: Smsc, desk: Desk, aiohttp_client: Any
) -> None:
    form = json.loads(corpus("callback_status_post.json").read_text())["form"]
    client = await client_for(plugin, aiohttp_client)

    response = await client.post("/sms/smsc", data={**form, "status": "20"})

    assert response.status == 403
    assert desk.reports == []


async def test_a_callback_signed_with_the_configured_secret_is_taken(
    make_plugin: Any, desk: Desk, aiohttp_client: Any
) -> None:
    plugin = await make_plugin(callback_secret="separate-callback-key")
    client = await client_for(plugin, aiohttp_client)
    md5 = hashlib.md5(b"77:79161234567:22:separate-callback-key").hexdigest()

    response = await client.post(
        "/sms/smsc",
        data={"id": "77", "phone": "79161234567", "status": "22", "err": "1", "md5": md5},
    )

    assert response.status == 200
    assert desk.reports == [
        (
            "smsc",
            [DeliveryReport("77:79161234567", "failed", error="неверный номер (код ошибки 1)")],
        )
    ]


async def test_a_stop_reply_withdraws_the_numbers_sms_consent(
    plugin: Smsc, desk: Desk, aiohttp_client: Any
) -> None:
    client = await client_for(plugin, aiohttp_client)

    response = await client.post("/sms/smsc", data=reply("Стоп!"))

    assert response.status == 200
    assert desk.opt_outs == [("sms", "+79161234567", "smsc:reply")]


async def test_a_reply_that_is_not_stop_withdraws_nothing(
    plugin: Smsc, desk: Desk, aiohttp_client: Any
) -> None:
    client = await client_for(plugin, aiohttp_client)

    response = await client.post("/sms/smsc", data=reply("А до какого числа скидка?"))

    assert response.status == 200
    assert desk.opt_outs == []


async def test_stop_is_read_in_either_alphabet_and_any_case() -> None:
    assert all(is_stop(text) for text in ["STOP", "Stop", "СТОП", "стоп", " стоп. "])
    assert not any(is_stop(text) for text in ["не стоп", "stopper", ""])


async def test_a_status_the_hub_cannot_store_is_answered_503_so_smsc_may_send_it_again(
    plugin: Smsc, desk: Desk, aiohttp_client: Any
) -> None:
    desk.fail = True
    form = json.loads(corpus("callback_status_post.json").read_text())["form"]
    client = await client_for(plugin, aiohttp_client)

    response = await client.post("/sms/smsc", data=form)

    assert response.status == 503
