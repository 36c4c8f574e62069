"""Zadarma's recordings reach the deal: END and NOTIFY_RECORD of the corpus attach them to the
call's activity, and the hub plays them through a fresh link it asks Zadarma's API for.

Zadarma's API is a paid outside service, so a local aiohttp server speaks its documented
``GET /v1/pbx/record/request/`` here: it checks the ``Authorization`` header exactly as
https://zadarma.com/ru/support/api/ ("Авторизация") and zadarma/user-api-v1
``lib/Client.php`` compute it, and answers the JSON zadarma/openapi documents.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from structlog.testing import capture_logs

from hub.api.common import HUB_KEY
from hub.app import build_app
from hub.config import Credential, load_settings
from hub.context import Hub
from hub.deals.changes import CreateContact, CreateDeal
from hub.domain.normalize import phone_point
from hub.store.models import Activity, DomainEvent, InboxEvent
from plugins.telephony import Telephony
from plugins.telephony_zadarma import Zadarma
from tests.conftest import make_hub, wait_for
from tests.plugins.telephony.conftest import (
    ANNA_TOKEN,
    DMITRY_TOKEN,
    HEAD_TOKEN,
    TESTS,
    screen_settings,
)
from tests.plugins.telephony_zadarma.conftest import NAME, PATH, SECRET, sample, signed_form

API_KEY = "zadarma-api-key-0123456789"
RECORDING = "1710487265.2287441"  # call_id_with_rec of samples 04 and 05
PBX_CALL = "in_5b0f3a8c2d4e6f7081929a3b4c5d6e7f80911a2b"
CLIENT_PHONE = "+79161234567"  # caller_id of the answered call of the corpus
LINK = "https://api.zadarma.com/v1/pbx/record/download/NjM3M/1710487265.2287441.mp3"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def documented_signature(path: str, params: dict[str, str], secret: str) -> str:
    """Zadarma's algorithm, written out on its own: params sorted by name, a query string as
    PHP's http_build_query (RFC 1738), base64 of the hex HMAC-SHA1 of path + query + md5."""
    query = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in sorted(params.items()))
    text = path + query + hashlib.md5(query.encode()).hexdigest()
    return base64.b64encode(
        hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest().encode()
    ).decode()


@dataclass
class ZadarmaApi:
    """What the local Zadarma API saw and how it answers."""

    recordings: dict[str, str] = field(default_factory=lambda: {RECORDING: LINK})
    asked: list[dict[str, str]] = field(default_factory=list)
    delay: float = 0.0

    async def record_request(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        key, _, given = request.headers.get("Authorization", "").partition(":")
        expected = documented_signature(request.path, params, SECRET)
        if key != API_KEY or not hmac.compare_digest(given, expected):
            return web.json_response({"status": "error", "message": "Not authorized"}, status=401)
        self.asked.append(params)
        if self.delay:
            await asyncio.sleep(self.delay)
        link = self.recordings.get(params.get("call_id", ""))
        if link is None:
            return web.json_response({"status": "error", "message": "Record not found"}, status=400)
        return web.json_response(
            {"status": "success", "link": link, "lifetime_till": "2024-03-15 11:21:05"}
        )


@dataclass
class Office:
    client: TestClient
    hub: Hub
    api: ZadarmaApi

    async def send(self, name: str, **form: str) -> None:
        item = sample(name)
        if form:
            headers, body = signed_form({**item.form, **form})
        else:
            headers, body = item.headers, item.body
        response = await self.client.post(PATH, headers=headers, data=body)
        assert response.status == 200, await response.text()

    async def filed(self, idem_suffix: str) -> dict[str, Any]:
        """The result of the stored event whose key ends so, once the worker filed it."""

        async def done() -> Any:
            async with self.hub.store.read() as conn:
                row = (
                    await conn.execute(
                        select(InboxEvent.status, InboxEvent.result).where(
                            InboxEvent.idem_key.endswith(idem_suffix)
                        )
                    )
                ).first()
            return row.result if row is not None and row.status == "done" else None

        return await wait_for(done)

    async def call(self, activity_id: int) -> dict[str, Any]:
        async with self.hub.store.read() as conn:
            payload = (
                await conn.execute(select(Activity.payload).where(Activity.id == activity_id))
            ).scalar_one()
        return payload["call"]

    async def listen(self, activity_id: int, token: str = ANNA_TOKEN) -> Any:
        return await self.client.get(
            f"/api/v1/calls/{activity_id}/recording",
            headers=bearer(token),
            allow_redirects=False,
        )

    async def recorded_events(self) -> int:
        async with self.hub.store.read() as conn:
            return (
                await conn.execute(
                    select(func.count())
                    .select_from(DomainEvent)
                    .where(DomainEvent.type == "call.recorded")
                )
            ).scalar_one()


@pytest.fixture
async def office(aiohttp_client: Callable[..., Any], store_url: str) -> AsyncIterator[Office]:
    """The telephony and Zadarma plugins, intake workers on, Zadarma's API served locally;
    anna owns the client of the corpus's answered call."""
    api = ZadarmaApi()
    app = web.Application()
    app.router.add_get("/v1/pbx/record/request/", api.record_request)
    server = TestServer(app)
    await server.start_server()
    settings = screen_settings(store_url)
    settings.plugins[NAME] = {
        "api_secret": SECRET,
        "api_key": API_KEY,
        "api_url": str(server.make_url("")).rstrip("/"),
        "api_timeout": "0.5s",
        "route_known_callers": False,
    }
    hub = make_hub(settings, extra={"telephony": Telephony, NAME: Zadarma})
    client = await aiohttp_client(build_app(hub))
    hub = client.app[HUB_KEY]

    async def running() -> bool:
        return all(hub.plugins.records[n].state == "running" for n in ("telephony", NAME))

    await wait_for(running)
    await _add_client(hub)
    yield Office(client, hub, api)
    await server.close()


async def _add_client(hub: Hub) -> None:
    assert hub.catalog is not None
    anna = hub.catalog.user_ids["anna@example.com"]
    contact = CreateContact(
        name="Ольга Смирнова", owner_id=anna, points=[phone_point(CLIENT_PHONE, "RU")]
    )
    pipeline = hub.catalog.pipelines["sales"]
    deal = CreateDeal(
        title="Кондиционеры",
        pipeline_id=pipeline.id,
        stage_id=pipeline.entry_stage.id,
        contact=contact,
        owner_id=anna,
        amount=Decimal("90000"),
    )
    await hub.deals.apply([contact, deal], TESTS)


async def test_an_end_with_is_recorded_keeps_the_recording_on_the_activity_and_plays_it_fresh(
    office: Office,
) -> None:
    await office.send("04_incoming_answered_NOTIFY_END")
    result = await office.filed(":final")
    activity_id = result["activity_id"]
    call = await office.call(activity_id)
    assert call["recordings"] == [{"provider": "zadarma", "id": RECORDING}]
    assert call["recording_url"] == f"/api/v1/calls/{activity_id}/recording"
    for _ in range(2):  # each listen asks Zadarma again: its links expire
        response = await office.listen(activity_id)
        assert response.status == 302, await response.text()
        assert response.headers["Location"] == LINK
        assert response.headers["Cache-Control"] == "no-store"
    assert office.api.asked == [{"call_id": RECORDING, "format": "json"}] * 2


async def test_notify_record_after_an_end_that_named_no_recording_attaches_it_once(
    office: Office,
) -> None:
    await office.send("04_incoming_answered_NOTIFY_END", is_recorded="0", call_id_with_rec="")
    activity_id = (await office.filed(":final"))["activity_id"]
    assert "recordings" not in await office.call(activity_id)
    assert (await office.listen(activity_id)).status == 404
    await office.send("05_incoming_answered_NOTIFY_RECORD")
    notice = await office.filed(f":recording:{RECORDING}:ready")
    assert notice["attached"] is True and notice["activity_id"] == activity_id
    await office.send("05_incoming_answered_NOTIFY_RECORD")  # Zadarma's retry: a duplicate
    call = await office.call(activity_id)
    assert call["recordings"] == [{"provider": "zadarma", "id": RECORDING}]
    assert await office.recorded_events() == 1
    response = await office.listen(activity_id)
    assert response.status == 302 and response.headers["Location"] == LINK


async def test_notify_record_of_a_recording_the_end_already_named_changes_nothing(
    office: Office,
) -> None:
    await office.send("04_incoming_answered_NOTIFY_END")
    activity_id = (await office.filed(":final"))["activity_id"]
    await office.send("05_incoming_answered_NOTIFY_RECORD")
    await office.filed(f":recording:{RECORDING}:ready")
    assert (await office.call(activity_id))["recordings"] == [
        {"provider": "zadarma", "id": RECORDING}
    ]
    assert await office.recorded_events() == 1


async def test_a_recording_notice_before_its_call_is_filed_is_retried_until_it_is(
    office: Office,
) -> None:
    await office.send("05_incoming_answered_NOTIFY_RECORD")

    async def failed_once() -> Any:
        async with office.hub.store.read() as conn:
            return (
                await conn.execute(
                    select(InboxEvent.last_error).where(InboxEvent.idem_key.endswith(":ready"))
                )
            ).scalar_one_or_none()

    assert "not filed yet" in await wait_for(failed_once)
    await office.send("04_incoming_answered_NOTIFY_END", is_recorded="0", call_id_with_rec="")
    activity_id = (await office.filed(":final"))["activity_id"]
    notice = await office.filed(":ready")
    assert notice["activity_id"] == activity_id
    assert (await office.call(activity_id))["recordings"] == [
        {"provider": "zadarma", "id": RECORDING}
    ]


async def test_a_manager_who_does_not_own_the_deal_gets_404_and_head_gets_the_recording(
    office: Office,
) -> None:
    await office.send("04_incoming_answered_NOTIFY_END")
    activity_id = (await office.filed(":final"))["activity_id"]
    response = await office.listen(activity_id, DMITRY_TOKEN)
    assert response.status == 404
    assert office.api.asked == []  # nothing asked of Zadarma for someone who may not listen
    assert (await office.listen(activity_id, HEAD_TOKEN)).status == 302
    assert (await office.client.get(f"/api/v1/calls/{activity_id}/recording")).status == 401


async def test_a_missed_call_has_no_recording_and_answers_404_saying_so(office: Office) -> None:
    await office.send("07_incoming_missed_NOTIFY_END")
    activity_id = (await office.filed(":final"))["activity_id"]
    response = await office.listen(activity_id, HEAD_TOKEN)
    assert response.status == 404
    problem = await response.json()
    assert problem["code"] == "no_recording"
    assert "нет записи" in problem["detail"]
    assert (await office.listen(999999, HEAD_TOKEN)).status == 404


async def test_a_recording_zadarma_does_not_have_answers_404(office: Office) -> None:
    office.api.recordings.clear()
    await office.send("04_incoming_answered_NOTIFY_END")
    activity_id = (await office.filed(":final"))["activity_id"]
    response = await office.listen(activity_id)
    assert response.status == 404
    assert (await response.json())["code"] == "no_recording"


async def test_zadarma_not_answering_in_time_answers_503_within_the_timeout(
    office: Office,
) -> None:
    office.api.delay = 5.0
    await office.send("04_incoming_answered_NOTIFY_END")
    activity_id = (await office.filed(":final"))["activity_id"]
    started = time.monotonic()
    response = await office.listen(activity_id)
    assert time.monotonic() - started < 2.0  # api_timeout is 0.5 s
    assert response.status == 503
    assert response.headers["Retry-After"] == "30"
    assert (await response.json())["code"] == "provider_unavailable"


async def test_zadarma_refusing_the_key_answers_502_and_no_made_up_link(
    office: Office,
) -> None:
    recordings = office.hub.plugins.records[NAME].instance.recordings
    recordings.config = recordings.config.model_copy(update={"api_key": Credential("wrong-key-42")})
    await office.send("04_incoming_answered_NOTIFY_END")
    activity_id = (await office.filed(":final"))["activity_id"]
    response = await office.listen(activity_id)
    assert response.status == 502
    assert "Location" not in response.headers
    assert (await response.json())["code"] == "provider_refused"


async def test_without_the_api_key_the_recording_is_kept_but_answers_503(
    office: Office,
) -> None:
    recordings = office.hub.plugins.records[NAME].instance.recordings
    recordings.config = recordings.config.model_copy(update={"api_key": None})
    await office.send("04_incoming_answered_NOTIFY_END")
    activity_id = (await office.filed(":final"))["activity_id"]
    assert (await office.call(activity_id))["recordings"]
    response = await office.listen(activity_id)
    assert response.status == 503
    assert "api_key" in (await response.json())["detail"]


def test_the_api_key_may_come_from_the_environment_and_a_bad_timeout_is_refused(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[plugins.{NAME}]\napi_secret = "{SECRET}"\n')
    monkeypatch.setenv("HUB__PLUGINS__TELEPHONY_ZADARMA__API_KEY", API_KEY)
    config = Zadarma.Config.model_validate(load_settings(path).plugins[NAME])
    assert config.api_key is not None and config.api_key.get_secret_value() == API_KEY
    assert API_KEY not in repr(config)
    with pytest.raises(ValueError, match="at most 60s"):
        Zadarma.Config.model_validate({"api_secret": SECRET, "api_timeout": "5m"})


async def test_listening_logs_neither_the_key_nor_the_link(office: Office) -> None:
    await office.send("04_incoming_answered_NOTIFY_END")
    activity_id = (await office.filed(":final"))["activity_id"]
    with capture_logs() as logs:
        assert (await office.listen(activity_id)).status == 302
    shown = repr(logs)
    assert "recording_listened" in shown
    assert API_KEY not in shown and SECRET not in shown and LINK not in shown
