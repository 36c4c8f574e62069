"""Calls into the deal store: the signed call webhook, and what each call leaves behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from hub.app import build_app
from hub.signing import sign
from hub.store.models import Activity, Contact, Deal, DomainEvent, InboxEvent, Task
from hub.store.types import utcnow
from plugins.telephony import Telephony
from tests.conftest import TEAM, make_hub, wait_for
from tests.plugins.telephony.conftest import Phones, start_phones, telephony_settings

SECRET = "call-webhook-secret-0123456789"
PATH = "/telephony/events"
WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "Content-Type": "application/json",
        "X-Hub-Timestamp": timestamp,
        "X-Hub-Signature-256": sign(secret, timestamp, "POST", PATH, "", body),
    }


def call(state: str, *, call_id: str = "c-1", **fields: Any) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "direction": "in",
        "state": state,
        "caller": "8 (912) 345-67-89",
        "called": "+74951234567",
        "line": "+74951234567",
        "occurred_at": datetime.now(UTC).isoformat(),
        **fields,
    }


@pytest.fixture
async def lines(aiohttp_client: Callable[..., Any], store_url: str) -> Phones:
    """A hub with the call webhook on (the team on duty every day, so assignment is the same
    on a Sunday), on each store."""
    settings = telephony_settings(store_url, webhook_secret=SECRET, callback_within="20m")
    settings.users = [u.model_copy(update={"working_days": WEEK}) for u in settings.users]
    hub = make_hub(settings, extra={"telephony": Telephony})
    return await start_phones(await aiohttp_client(build_app(hub)))


async def post(phones: Phones, event: dict[str, Any], **sign_with: Any) -> Any:
    body = orjson.dumps(event)
    return await phones.client.post(PATH, data=body, headers=signed(body, **sign_with))


async def filed(phones: Phones, event: dict[str, Any]) -> dict[str, Any]:
    """Post ``event`` and wait until the intake worker has filed it; its result."""
    response = await post(phones, event)
    assert response.status == 200, await response.text()
    event_id = (await response.json())["id"]

    async def done() -> Any:
        async with phones.hub.store.read() as conn:
            row = (
                await conn.execute(
                    select(InboxEvent.status, InboxEvent.result, InboxEvent.last_error).where(
                        InboxEvent.id == event_id
                    )
                )
            ).one()
        assert row.last_error is None, row.last_error
        return row.result if row.status == "done" else None

    return await wait_for(done)


async def rows(phones: Phones, statement: Any) -> list[Any]:
    async with phones.hub.store.read() as conn:
        return list(await conn.execute(statement))


async def inbox_count(phones: Phones) -> int:
    return len(await rows(phones, select(InboxEvent.id).where(InboxEvent.channel == "telephony")))


# -- the webhook ----------------------------------------------------------------------------


async def test_a_signed_call_event_is_stored_and_answered_with_its_id(lines):
    response = await post(lines, call("ringing", extension="101"))

    assert response.status == 200
    answer = await response.json()
    assert answer["duplicate"] is False
    stored = await rows(lines, select(InboxEvent.payload).where(InboxEvent.id == answer["id"]))
    assert stored[0].payload["caller"] == "8 (912) 345-67-89"
    assert stored[0].payload["provider"] == "webhook"


async def test_a_wrong_signature_is_refused_and_nothing_is_stored(lines):
    response = await post(lines, call("ringing"), secret="somebody-elses-secret-000")

    assert response.status == 401
    assert (await response.json())["code"] == "signature_invalid"
    assert await inbox_count(lines) == 0


async def test_a_request_signed_ten_minutes_ago_is_refused_as_expired(lines):
    response = await post(lines, call("ringing"), at=time.time() - 600)

    assert response.status == 401
    assert (await response.json())["code"] == "signature_expired"
    assert await inbox_count(lines) == 0


async def test_a_replayed_request_is_refused_and_a_resent_event_stores_nothing_new(lines):
    body = orjson.dumps(call("ended", duration=30, answered_by="101"))
    headers = signed(body)
    first = await lines.client.post(PATH, data=body, headers=headers)
    replay = await lines.client.post(PATH, data=body, headers=headers)
    resent = await lines.client.post(PATH, data=body, headers=signed(body, at=time.time() + 1))

    assert first.status == 200
    assert replay.status == 401
    assert (await replay.json())["code"] == "signature_replayed"
    assert resent.status == 200
    assert (await resent.json()) == {"id": (await first.json())["id"], "duplicate": True}
    assert await inbox_count(lines) == 1


async def test_a_body_that_is_not_a_call_event_is_refused_naming_the_bad_field(lines):
    response = await post(lines, call("hung up"))

    assert response.status == 400
    assert "state" in (await response.json())["detail"]
    assert await inbox_count(lines) == 0


async def test_a_time_without_a_timezone_is_refused(lines):
    response = await post(lines, call("ringing", occurred_at="2026-12-07T09:15:00"))

    assert response.status == 400
    assert "timezone" in (await response.json())["detail"]


# -- what a call leaves in the store --------------------------------------------------------


async def test_a_finished_call_from_a_known_client_is_an_activity_on_their_open_deal(lines):
    contact = await lines.add_client("Пётр Волков", "+79123456789")
    deal = await lines.add_deal(contact, "Поставка труб")

    result = await filed(
        lines,
        call(
            "ended",
            duration=125,
            extension="101",
            answered_by="101",
            recording_url="https://pbx.example.ru/rec/c-1.mp3",
        ),
    )

    assert result["deal_id"] == deal
    activity = (await rows(lines, select(Activity).where(Activity.kind == "call")))[0]
    assert (activity.deal_id, activity.contact_id, activity.direction) == (deal, contact, "in")
    assert activity.summary == "Входящий звонок, 2 мин 05 с (101)"
    assert activity.payload["call"]["recording_url"] == "https://pbx.example.ru/rec/c-1.mp3"
    assert activity.payload["call"]["number"] == "+79123456789"
    assert activity.payload["result"] == "answered"


async def test_a_ringing_or_answered_state_writes_nothing_to_the_deal(lines):
    contact = await lines.add_client("Пётр Волков", "+79123456789")
    await lines.add_deal(contact, "Поставка труб")

    await filed(lines, call("ringing", extension="101"))
    await filed(lines, call("answered", answered_by="101"))

    assert await rows(lines, select(Activity.id).where(Activity.kind == "call")) == []


async def test_an_unknown_callers_answered_call_makes_a_contact_and_a_deal_from_the_call(lines):
    result = await filed(lines, call("ended", duration=40, answered_by="101"))

    assert result["decision"] == "new_contact"
    deal = (await rows(lines, select(Deal).where(Deal.id == result["deal_id"])))[0]
    assert deal.source == "Входящий звонок"
    assert deal.owner_id is not None
    activity = (await rows(lines, select(Activity).where(Activity.kind == "call")))[0]
    assert activity.deal_id == deal.id
    assert activity.payload["call"]["duration"] == 40
    task = (await rows(lines, select(Task).where(Task.deal_id == deal.id)))[0]
    assert task.kind == "call"  # the pipeline's first task: an answered caller needs no call back


async def test_a_missed_call_asks_the_owner_to_call_back_within_the_configured_time(lines):
    contact = await lines.add_client("Пётр Волков", "+79123456789", owner="dmitry@example.com")
    deal = await lines.add_deal(contact, "Поставка труб", owner="anna@example.com")
    before = utcnow()

    result = await filed(lines, call("missed", reason="no_answer", extension="101"))

    assert result["callback"] == "created"
    task = (await rows(lines, select(Task).where(Task.id == result["task_id"])))[0]
    assert (task.kind, task.title) == ("callback", "Перезвонить: пропущенный звонок")
    assert (task.deal_id, task.contact_id) == (deal, contact)
    assert task.owner_id == lines.user("anna@example.com")  # the deal's owner
    assert before + timedelta(minutes=19) < task.due_at <= utcnow() + timedelta(minutes=20)
    summary = (await rows(lines, select(Activity.summary).where(Activity.kind == "call")))[0]
    assert summary.summary == "Пропущенный входящий звонок (нет ответа)"


async def test_several_missed_calls_before_the_call_back_are_one_task_with_their_count(lines):
    contact = await lines.add_client("Пётр Волков", "+79123456789")
    await lines.add_deal(contact, "Поставка труб")

    for n in range(3):
        await filed(lines, call("missed", call_id=f"m-{n}"))

    tasks = await rows(lines, select(Task).where(Task.kind == "callback"))
    assert len(tasks) == 1
    assert tasks[0].title == "Перезвонить: пропущенных звонков — 3"
    missed = await rows(lines, select(Activity.id).where(Activity.kind == "call"))
    assert len(missed) == 3


async def test_an_outbound_call_to_the_number_closes_the_call_back_with_the_call(lines):
    contact = await lines.add_client("Пётр Волков", "+79123456789")
    await lines.add_deal(contact, "Поставка труб")
    await filed(lines, call("missed", call_id="m-1"))

    result = await filed(
        lines,
        call(
            "ended",
            call_id="o-1",
            direction="out",
            caller="101",
            called="+7 912 345-67-89",
            duration=65,
            answered_by="101",
        ),
    )

    assert result["callback"] == "closed"
    task = (await rows(lines, select(Task).where(Task.kind == "callback")))[0]
    assert task.done_at is not None
    assert task.result == "Перезвонили: исходящий звонок, 1 мин 05 с"
    outbound = await rows(lines, select(Activity).where(Activity.direction == "out"))
    assert outbound[0].contact_id == contact


async def test_an_unanswered_outbound_attempt_leaves_the_call_back_open(lines):
    contact = await lines.add_client("Пётр Волков", "+79123456789")
    await lines.add_deal(contact, "Поставка труб")
    await filed(lines, call("missed", call_id="m-1"))

    await filed(
        lines,
        call(
            "missed",
            call_id="o-1",
            direction="out",
            caller="101",
            called="89123456789",
            reason="busy",
        ),
    )

    task = (await rows(lines, select(Task).where(Task.kind == "callback")))[0]
    assert task.done_at is None
    outbound = (await rows(lines, select(Activity).where(Activity.direction == "out")))[0]
    assert outbound.summary == "Исходящий звонок без ответа (занято)"


async def test_an_unknown_numbers_missed_call_gives_the_assigned_manager_a_call_back(lines):
    result = await filed(lines, call("missed", caller="+7 (913) 000-11-22"))

    assert result["decision"] == "new_contact"
    deal = (await rows(lines, select(Deal).where(Deal.id == result["deal_id"])))[0]
    assert deal.source == "Входящий звонок"
    tasks = await rows(lines, select(Task).where(Task.deal_id == deal.id))
    assert [(t.kind, t.title) for t in tasks] == [("callback", "Перезвонить: пропущенный звонок")]
    managers = {lines.user(u["email"]) for u in TEAM if u["role"] == "manager"}
    assert tasks[0].owner_id in managers
    assert tasks[0].owner_id == deal.owner_id


async def test_a_missed_call_is_a_call_missed_event_for_triggers(lines):
    contact = await lines.add_client("Пётр Волков", "+79123456789")
    deal = await lines.add_deal(contact, "Поставка труб")

    await filed(lines, call("missed", extension="101"))

    events = await rows(lines, select(DomainEvent).where(DomainEvent.type == "call.missed"))
    assert len(events) == 1
    assert events[0].payload["deal_id"] == deal
    assert events[0].payload["number"] == "+79123456789"
    assert events[0].payload["extension"] == "101"


async def test_a_withheld_number_is_logged_without_making_a_client(lines):
    result = await filed(lines, call("missed", caller="anonymous"))

    assert result["contact_id"] is None
    assert await rows(lines, select(Contact.id)) == []
    activity = (await rows(lines, select(Activity).where(Activity.kind == "call")))[0]
    assert activity.payload["call"]["number"] == "anonymous"


async def test_an_internal_call_between_extensions_is_not_filed(lines):
    result = await filed(
        lines, call("ended", direction="internal", caller="101", called="102", duration=10)
    )

    assert result == {"call": "ended", "filed": False}
    assert await rows(lines, select(Activity.id)) == []


# -- the card pushed to Telegram ------------------------------------------------------------


async def test_a_ringing_call_pushes_the_caller_card_to_the_owners_telegram(
    aiohttp_client, aiohttp_server, store_url
):
    from plugins.telegram import Telegram
    from tests.plugins.telegram.fakebot import TOKEN, FakeTelegram

    bot = FakeTelegram()
    api = await aiohttp_server(bot.app())
    settings = telephony_settings(store_url, webhook_secret=SECRET, push_card_via=["telegram"])
    settings.plugins["telegram"] = {"token": TOKEN, "api_url": str(api.make_url("/"))}
    settings.users = [
        u.model_copy(update={"telegram_chat_id": "1001"} if u.email == "anna@example.com" else {})
        for u in settings.users
    ]
    hub = make_hub(settings, extra={"telephony": Telephony, "telegram": Telegram})
    phones = await start_phones(await aiohttp_client(build_app(hub)))
    contact = await phones.add_client("Пётр Волков", "+79123456789", company="ООО «Трубы»")
    await phones.add_deal(contact, "Поставка труб")

    result = await filed(phones, call("ringing", extension="102"))
    again = await post(phones, call("ringing", extension="102"))  # the PBX's retry

    assert result["pushed"] == 1
    assert (await again.json())["duplicate"] is True
    messages = await wait_for(lambda: _async(bot.messages))
    assert [m["chat"]["id"] for m in messages] == [1001]
    assert "Пётр Волков" in messages[0]["text"]
    assert "Поставка труб" in messages[0]["text"]


async def _async(value: Any) -> Any:
    return value
