"""Mango Office's recordings reach the deal: ``events/recording`` (sample 04) attaches the
recording to the call's activity, and the hub plays it through a link signed on the spot
with the key and salt, as the VPBX checks it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from hub.api.common import HUB_KEY
from hub.app import build_app
from hub.store.models import Activity, DomainEvent, InboxEvent
from hub.store.types import utcnow
from plugins.telephony import Telephony
from plugins.telephony_mango import MangoOffice
from plugins.telephony_mango.recordings import link_sign, recording_link
from tests.conftest import make_hub, wait_for
from tests.plugins.telephony.conftest import HEAD_TOKEN, screen_settings
from tests.plugins.telephony_mango.conftest import (
    API_KEY,
    API_SALT,
    FORM,
    NAME,
    Vpbx,
    sample,
    signed,
)

ENTRY = "MzUyODbvczg4OTo0MDE="  # entry_id of samples 03 (summary) and 04 (recording)
RECORDING = "MToxMjI3NTM6MzUyODbvczg4OTow"  # recording_id of sample 04
HEAD = {"Authorization": f"Bearer {HEAD_TOKEN}"}


def test_the_link_sign_is_that_of_mango_vpbx_known_links() -> None:
    # Bobrovskih/mango-vpbx test/vpbx.spec.js and test/helpers.spec.js: links and their signs.
    assert link_sign("nokey", 33091482931, "23firh9023hfdkew=", "nosalt") == (
        "614c9d0a90f3fcac7a3fa61a71fde696fe9c54f35bcb05d3a9dc9b0211df3ea1"
    )
    assert recording_link(
        "https://app.mango-office.ru/vpbx", "123", "789", "Jsgdfg2323=", 1525598918779
    ) == (
        "https://app.mango-office.ru/vpbx/queries/recording/link/Jsgdfg2323=/play/123/"
        "1525598918779/73ae025f1b4f7e201b2bf8df8a98547faa916a906115c22356cd056ab8edd5cd"
    )


@pytest.fixture
async def office(aiohttp_client: Callable[..., Any], store_url: str) -> Vpbx:
    """The telephony and Mango plugins with the intake workers on, the corpus's key and salt."""
    settings = screen_settings(store_url)
    settings.plugins[NAME] = {"api_key": API_KEY, "api_salt": API_SALT}
    hub = make_hub(settings, extra={"telephony": Telephony, NAME: MangoOffice})
    client = await aiohttp_client(build_app(hub))
    hub = client.app[HUB_KEY]

    async def running() -> bool:
        return all(hub.plugins.records[n].state == "running" for n in ("telephony", NAME))

    await wait_for(running)
    return Vpbx(client, hub)


async def filed(vpbx: Vpbx, key_end: str) -> dict[str, Any]:
    async def done() -> Any:
        async with vpbx.hub.store.read() as conn:
            row = (
                await conn.execute(
                    select(InboxEvent.status, InboxEvent.result).where(
                        InboxEvent.idem_key.endswith(key_end)
                    )
                )
            ).first()
        return row.result if row is not None and row.status == "done" else None

    return await wait_for(done)


async def post_ok(vpbx: Vpbx, path: str, body: bytes, headers: dict[str, str] = FORM) -> None:
    response = await vpbx.post(path, body, headers)
    assert response.status == 200, await response.text()


async def recordings_of(vpbx: Vpbx, activity_id: int) -> list[dict[str, str]]:
    async with vpbx.hub.store.read() as conn:
        payload = (
            await conn.execute(select(Activity.payload).where(Activity.id == activity_id))
        ).scalar_one()
    return payload["call"].get("recordings", [])


async def test_a_recording_event_after_the_summary_plays_through_a_link_signed_as_mango_checks(
    office: Vpbx,
) -> None:
    await office.send(sample("03_events_summary_inbound_answered"))
    activity_id = (await filed(office, ":final"))["activity_id"]
    started = sample("04_events_recording_started")
    await post_ok(office, "/events/recording", started.body, started.headers)
    notice = await filed(office, f":recording:{RECORDING}:started")
    assert notice["attached"] is True and notice["activity_id"] == activity_id
    assert await recordings_of(office, activity_id) == [{"provider": "mango", "id": RECORDING}]

    before = int(utcnow().timestamp())
    response = await office.client.get(
        f"/api/v1/calls/{activity_id}/recording", headers=HEAD, allow_redirects=False
    )
    assert response.status == 302, await response.text()
    link = urlsplit(response.headers["Location"])
    assert (link.scheme, link.netloc) == ("https", "app.mango-office.ru")
    prefix, recording, action, key, expires, sign = link.path.rsplit("/", 5)
    assert (prefix, recording, action, key) == (
        "/vpbx/queries/recording/link",
        RECORDING,
        "play",
        API_KEY,
    )
    assert before + 3600 <= int(expires) <= before + 3605  # recording_link_for: 1 h
    expected = hashlib.sha256(f"{API_KEY}{expires}{RECORDING}{API_SALT}".encode()).hexdigest()
    assert sign == expected


async def test_a_recording_started_before_the_summary_waits_and_its_completion_attaches_it(
    office: Vpbx,
) -> None:
    started = sample("04_events_recording_started")
    await post_ok(office, "/events/recording", started.body, started.headers)
    waiting = await filed(office, ":started")
    assert (waiting["attached"], waiting["reason"]) == (False, "call_in_progress")
    await office.send(sample("03_events_summary_inbound_answered"))
    activity_id = (await filed(office, ":final"))["activity_id"]
    assert await recordings_of(office, activity_id) == []
    completed = {
        **json.loads(started.facts["json"]),
        "recording_state": "Completed",
        "seq": 2,
        "completion_code": 1000,
        "recipient": "Cloud",
    }
    for _ in range(2):  # the VPBX's retry stores nothing new
        await post_ok(office, "/events/recording", signed(completed))
    assert (await filed(office, ":ready"))["activity_id"] == activity_id
    assert await recordings_of(office, activity_id) == [{"provider": "mango", "id": RECORDING}]
    async with office.hub.store.read() as conn:
        recorded = (
            await conn.execute(
                select(func.count())
                .select_from(DomainEvent)
                .where(DomainEvent.type == "call.recorded")
            )
        ).scalar_one()
    assert recorded == 1


@pytest.mark.parametrize(
    "ending",
    [
        {"recording_state": "Completed", "completion_code": 4002},  # too short: not saved
        {"recording_state": "Completed", "completion_code": 1000, "recipient": "Mail"},
        {"recording_state": "Continued"},  # the same recording in another leg
    ],
)
async def test_a_recording_that_gives_nothing_to_listen_to_stores_nothing(
    office: Vpbx, ending: dict[str, Any]
) -> None:
    event = {**json.loads(sample("04_events_recording_started").facts["json"]), **ending}
    await post_ok(office, "/events/recording", signed(event))
    assert await office.calls() == []


async def test_a_recording_event_with_a_wrong_sign_is_refused_and_stores_nothing(
    office: Vpbx,
) -> None:
    event = json.loads(sample("04_events_recording_started").facts["json"])
    response = await office.post("/events/recording", signed(event, salt="not-the-salt-000000"))
    assert response.status == 401
    assert await office.calls() == []
