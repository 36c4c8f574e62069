"""A call's recording on its activity: attached once through the writer, and served by the
hub's lasting link (``GET /api/v1/calls/{id}/recording``) whatever the provider."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.cli import main
from hub.config import load_settings
from hub.context import Hub
from hub.deals import Actor, NotFound, Refused
from hub.deals.changes import AttachRecording, LogActivity
from hub.store.models import Activity, DomainEvent, InboxEvent
from plugins.telephony.calls import CallEvent, accept_call
from tests.conftest import ROOT, wait_for
from tests.plugins.telephony.conftest import (
    ANNA_TOKEN,
    DMITRY_TOKEN,
    HEAD_TOKEN,
    TESTS,
    Phones,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def anna_call(screens: Phones, **call: Any) -> int:
    contact = await screens.add_client("Ирина Волкова", "+79125550102")
    deal = await screens.add_deal(contact, "Плитка")
    activity = LogActivity(
        activity="call", summary="Входящий звонок", deal=deal, payload={"call": call}
    )
    await screens.hub.deals.apply([activity], TESTS)
    assert activity.id is not None
    return activity.id


async def listen(screens: Phones, activity_id: int, token: str = HEAD_TOKEN, **query: str) -> Any:
    return await screens.client.get(
        f"/api/v1/calls/{activity_id}/recording",
        params=query,
        headers=bearer(token),
        allow_redirects=False,
    )


async def test_attaching_the_same_recording_twice_changes_nothing_the_second_time(
    screens: Phones,
) -> None:
    activity_id = await anna_call(screens, number="+79125550102")
    attach = {"activity": activity_id, "provider": "zadarma", "recording_id": "1.2"}
    for _ in range(2):
        await screens.hub.deals.apply(
            [AttachRecording(**attach, listen_url=f"/api/v1/calls/{activity_id}/recording")],
            TESTS,
        )
    async with screens.hub.store.read() as conn:
        payload = (
            await conn.execute(select(Activity.payload).where(Activity.id == activity_id))
        ).scalar_one()
        events = (
            await conn.execute(
                select(func.count())
                .select_from(DomainEvent)
                .where(DomainEvent.type == "call.recorded", DomainEvent.subject_id == activity_id)
            )
        ).scalar_one()
    assert payload["call"]["recordings"] == [{"provider": "zadarma", "id": "1.2"}]
    assert payload["call"]["number"] == "+79125550102"  # the rest of the call is kept
    assert events == 1


async def test_only_a_call_can_have_a_recording(screens: Phones) -> None:
    note = LogActivity(activity="meeting", summary="Встреча")
    await screens.hub.deals.apply([note], TESTS)
    assert note.id is not None
    with pytest.raises(Refused, match="not a call"):
        await screens.hub.deals.apply(
            [AttachRecording(activity=note.id, provider="zadarma", recording_id="1.2")], TESTS
        )
    with pytest.raises(NotFound):
        await screens.hub.deals.apply(
            [AttachRecording(activity=999999, provider="zadarma", recording_id="1.2")], TESTS
        )


async def test_a_manager_cannot_attach_a_recording_to_another_managers_call(
    screens: Phones,
) -> None:
    activity_id = await anna_call(screens)
    dmitry = Actor.user(screens.user("dmitry@example.com"), "dmitry@example.com", "manager")
    with pytest.raises(NotFound):
        await screens.hub.deals.apply(
            [AttachRecording(activity=activity_id, provider="zadarma", recording_id="1.2")],
            dmitry,
        )


async def test_a_pbx_lasting_link_is_followed_and_a_call_without_one_answers_404(
    screens: Phones,
) -> None:
    lasting = await anna_call(screens, recording_url="https://pbx.example.ru/rec/c-1.mp3")
    response = await listen(screens, lasting, ANNA_TOKEN)
    assert response.status == 302
    assert response.headers["Location"] == "https://pbx.example.ru/rec/c-1.mp3"
    assert (await listen(screens, lasting, DMITRY_TOKEN)).status == 404
    bare = await anna_call(screens)
    response = await listen(screens, bare)
    assert response.status == 404
    assert (await response.json())["code"] == "no_recording"


async def test_a_recording_whose_provider_plugin_is_not_running_answers_503(
    screens: Phones,
) -> None:
    activity_id = await anna_call(screens)
    await screens.hub.deals.apply(
        [AttachRecording(activity=activity_id, provider="mango", recording_id="r-1")], TESTS
    )
    response = await listen(screens, activity_id)
    assert response.status == 503
    problem = await response.json()
    assert problem["code"] == "provider_unavailable" and problem["provider"] == "mango"
    assert (await listen(screens, activity_id, part="2")).status == 404
    meeting = LogActivity(activity="meeting", summary="Встреча")
    await screens.hub.deals.apply([meeting], TESTS)
    assert meeting.id is not None
    assert (await listen(screens, meeting.id)).status == 404  # not a call


def test_calls_list_shows_the_hubs_link_to_a_recorded_calls_recording(tmp_path: Path) -> None:
    text = (ROOT / "config.example.toml").read_text()
    config = tmp_path / "config.toml"
    config.write_text(
        "\n".join(
            line
            for line in text.splitlines()
            if not line.startswith(("working_hours", "working_days"))
        )
    )

    async def go() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        now = datetime.now(UTC)
        await accept_call(
            hub.intake,
            CallEvent(
                provider="zadarma",
                call_id="in_1",
                direction="in",
                state="ended",
                caller="89123456789",
                duration=40,
                recording_id="1710487265.2287441",
                occurred_at=now,
            ),
        )

        async def settled() -> bool:
            async with hub.store.read() as conn:
                rows = (await conn.execute(select(InboxEvent.status))).scalars().all()
            return rows == ["done"]

        await wait_for(settled)
        await hub.stop()

    asyncio.run(go())
    shown = CliRunner().invoke(main, ["--config", str(config), "calls", "list", "--json"])
    assert shown.exit_code == 0, shown.output
    [call] = orjson.loads(shown.output)
    assert call["recording_url"] == (
        f"http://127.0.0.1:8080/api/v1/calls/{call['activity_id']}/recording"
    )
    assert call["recordings"] == [{"provider": "zadarma", "id": "1710487265.2287441"}]
