"""SMS.ru's delivery callback: ``data[N]`` records in, reports to the desk, "100" out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from hub.campaigns.gateway import DeliveryReport
from plugins.sms_smsru import SmsRu
from tests.plugins.sms_smsru.conftest import TOKEN, Desk, corpus

FORM = "application/x-www-form-urlencoded"


async def client_for(plugin: SmsRu, aiohttp_client: Any) -> TestClient:
    app = web.Application()
    app.add_routes(plugin.hub_routes())
    return await aiohttp_client(app)


def recorded_body(name: str) -> bytes:
    """The body of a recorded HTTP request, as it was posted."""
    raw = corpus(name).read_bytes().replace(b"\r\n", b"\n")
    return raw.split(b"\n\n", 1)[1].strip()


async def test_the_callback_gives_the_desk_each_report_and_answers_100(
    plugin: SmsRu, desk: Desk, aiohttp_client: Any
) -> None:
    client = await client_for(plugin, aiohttp_client)

    response = await client.post(
        f"/sms/smsru/{TOKEN}",
        data=recorded_body("callback_post.http"),
        headers={"Content-Type": FORM},
    )

    assert response.status == 200
    assert await response.text() == "100"
    assert desk.reports == [
        (
            "smsru",
            [
                DeliveryReport(
                    "000000-10000000", "delivered", at=datetime.fromtimestamp(1700000000, UTC)
                ),
                DeliveryReport(
                    "000000-10000001",
                    "failed",
                    error="не может быть доставлено: время жизни истекло",
                    at=datetime.fromtimestamp(1700000060, UTC),
                ),
            ],
        )
    ]


async def test_a_record_of_another_kind_is_answered_100_and_ignored(
    plugin: SmsRu, desk: Desk, aiohttp_client: Any
) -> None:
    client = await client_for(plugin, aiohttp_client)

    response = await client.post(
        f"/sms/smsru/{TOKEN}", data={"data[0]": "callcheck_status\n201737-542\n401\n1700000000"}
    )

    assert await response.text() == "100"
    assert desk.reports == []


async def test_a_callback_at_a_wrong_token_is_not_found_and_records_nothing(
    plugin: SmsRu, desk: Desk, aiohttp_client: Any
) -> None:
    client = await client_for(plugin, aiohttp_client)

    response = await client.post(
        "/sms/smsru/guessed", data={"data[0]": "sms_status\n000000-1\n103\n1700000000"}
    )

    assert response.status == 404
    assert desk.reports == []


async def test_reports_the_hub_cannot_store_are_not_answered_100_so_smsru_sends_them_again(
    plugin: SmsRu, desk: Desk, aiohttp_client: Any
) -> None:
    desk.fail = True
    client = await client_for(plugin, aiohttp_client)

    response = await client.post(
        f"/sms/smsru/{TOKEN}", data={"data[0]": "sms_status\n000000-1\n103\n1700000000"}
    )

    assert response.status == 503
    assert await response.text() != "100"


async def test_without_a_callback_token_there_is_no_callback_route(make_plugin: Any) -> None:
    plugin = await make_plugin(callback_token=None, start=False)
    assert plugin.hub_routes() == []
