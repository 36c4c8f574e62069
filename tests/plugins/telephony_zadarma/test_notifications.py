"""Zadarma's notifications, sent as the corpus has them, become the calls they report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.store.types import utcnow
from tests.plugins.telephony_zadarma.conftest import Pbx, Sample, sample, signed_form

IN_ANSWERED = "in_5b0f3a8c2d4e6f7081929a3b4c5d6e7f80911a2b"
IN_MISSED = "in_9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d"
OUT_BUSY = "out_0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5"

# What each sample must store, beside provider zadarma and its pbx_call_id (None: nothing).
EXPECTED: dict[str, dict[str, Any] | None] = {
    "01_incoming_answered_NOTIFY_START": {
        "call_id": IN_ANSWERED, "direction": "in", "state": "ringing", "extension": None,
        "caller": "79161234567", "called": "74951234567", "line": "74951234567",
    },
    "02_incoming_answered_NOTIFY_INTERNAL": {
        "call_id": IN_ANSWERED, "direction": "in", "state": "ringing", "extension": "100",
        "caller": "79161234567", "line": "74951234567",
    },
    "03_incoming_answered_NOTIFY_ANSWER": {
        "call_id": IN_ANSWERED, "direction": "in", "state": "answered", "answered_by": "100",
        "caller": "79161234567",
    },
    "04_incoming_answered_NOTIFY_END": {
        "call_id": IN_ANSWERED, "direction": "in", "state": "ended", "duration": 37,
        "answered_by": "100", "caller": "79161234567", "line": "74951234567",
        "recording_url": None, "reason": None, "recording_id": "1710487265.2287441",
    },
    "05_incoming_answered_NOTIFY_RECORD": None,  # a recording notice, not a call state
    "06_incoming_missed_NOTIFY_START": {
        "call_id": IN_MISSED, "direction": "in", "state": "ringing", "caller": "79031112233",
    },
    "07_incoming_missed_NOTIFY_END": {
        "call_id": IN_MISSED, "direction": "in", "state": "missed", "reason": "cancel",
        "extension": None, "answered_by": None, "caller": "79031112233",
    },
    "08_outgoing_NOTIFY_OUT_START": {
        "call_id": OUT_BUSY, "direction": "out", "state": "ringing", "extension": "100",
        "called": "79161234567",
    },
    "09_outgoing_busy_NOTIFY_OUT_END": {
        "call_id": OUT_BUSY, "direction": "out", "state": "missed", "reason": "busy",
        "extension": "100", "called": "79161234567", "line": "74951234567",
    },
}  # fmt: skip

# call_start of the samples is Moscow time (UTC+3, no summer time since 2014).
STARTED = {
    IN_ANSWERED: datetime(2024, 3, 15, 7, 21, 5, tzinfo=UTC),
    IN_MISSED: datetime(2024, 3, 15, 16, 2, 44, tzinfo=UTC),
    OUT_BUSY: datetime(2024, 3, 15, 8, 0, 0, tzinfo=UTC),
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def send_ok(pbx: Pbx, item: Sample) -> None:
    """Zadarma's answer: 200 with an empty body (an empty body changes no call's scenario)."""
    response = await pbx.send(item)
    assert response.status == 200, await response.text()
    assert await response.read() == b""


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_notification_is_answered_200_empty_and_stores_the_call_state_it_reports(
    pbx: Pbx, name: str
) -> None:
    before = utcnow()
    await send_ok(pbx, sample(name))
    calls = await pbx.calls()
    expected = EXPECTED[name]
    if expected is None:
        [(key, notice)] = calls  # the recording is ready: a notice of the call, not a state
        assert key.endswith(":recording:1710487265.2287441:ready")
        assert (notice["kind"], notice["call_id"]) == ("recording", IN_ANSWERED)
        return
    [(_key, call)] = calls
    assert call["provider"] == "zadarma"
    assert {field: call[field] for field in expected} == expected
    assert at(call["started_at"]) == STARTED[expected["call_id"]]
    assert before - timedelta(seconds=1) <= at(call["occurred_at"]) <= utcnow()


async def test_an_answered_inbound_call_rings_the_line_then_its_extension_is_answered_and_ends(
    pbx: Pbx,
) -> None:
    for name in sorted(EXPECTED)[:5]:
        await send_ok(pbx, sample(name))
    assert await pbx.states() == [
        "ringing",
        "ringing:100",
        "answered",
        "final",
        "recording:1710487265.2287441:ready",
    ]
    final = (await pbx.calls())[-2][1]
    assert (final["state"], final["duration"], final["answered_by"]) == ("ended", 37, "100")


async def test_a_missed_inbound_call_is_stored_as_missed_with_its_reason(pbx: Pbx) -> None:
    await send_ok(pbx, sample("06_incoming_missed_NOTIFY_START"))
    await send_ok(pbx, sample("07_incoming_missed_NOTIFY_END"))
    calls = await pbx.calls()
    assert [(c["state"], c["reason"]) for _k, c in calls] == [
        ("ringing", None),
        ("missed", "cancel"),
    ]
    assert {c["call_id"] for _k, c in calls} == {IN_MISSED}


async def test_an_outbound_call_to_a_busy_client_rings_from_the_extension_and_is_missed_busy(
    pbx: Pbx,
) -> None:
    await send_ok(pbx, sample("08_outgoing_NOTIFY_OUT_START"))
    await send_ok(pbx, sample("09_outgoing_busy_NOTIFY_OUT_END"))
    assert await pbx.states() == ["ringing:100", "final"]
    calls = [c for _k, c in await pbx.calls()]
    assert [(c["direction"], c["state"], c["reason"]) for c in calls] == [
        ("out", "ringing", None),
        ("out", "missed", "busy"),
    ]


async def test_a_replayed_notification_is_answered_200_and_stores_nothing_new(pbx: Pbx) -> None:
    end = sample("04_incoming_answered_NOTIFY_END")
    await send_ok(pbx, end)
    await send_ok(pbx, end)  # Zadarma's retry, or someone replaying what they captured
    assert await pbx.states() == ["final"]


@pytest.mark.parametrize(
    "signature",
    [
        "wrong_signature_if_raw_digest_used",  # base64 of the raw digest, not of its hex
        "another_secret",
        "none",
    ],
)
async def test_a_notification_without_zadarmas_signature_is_refused_401_and_not_stored(
    pbx: Pbx, signature: str
) -> None:
    item = sample("01_incoming_answered_NOTIFY_START")
    headers = dict(item.headers)
    if signature == "none":
        del headers["Signature"]
    elif signature == "another_secret":
        headers = signed_form(item.form, secret="someone_elses_secret_0123456789")[0]
    else:
        headers["Signature"] = item.facts[signature]
    response = await pbx.post(headers, item.body)
    assert response.status == 401
    assert "Signature" in (await response.json())["detail"]
    assert await pbx.calls() == []


async def test_a_changed_signed_field_breaks_the_signature(pbx: Pbx) -> None:
    item = sample("01_incoming_answered_NOTIFY_START")
    body = item.body.replace(b"caller_id=79161234567", b"caller_id=79161234568")
    response = await pbx.post(item.headers, body)
    assert response.status == 401
    assert await pbx.calls() == []


START = {
    "event": "NOTIFY_START",
    "call_start": "2024-03-15 10:21:05",
    "pbx_call_id": IN_ANSWERED,
    "caller_id": "79161234567",
    "called_did": "74951234567",
}
END = {
    **START,
    "event": "NOTIFY_END",
    "internal": "100",
    "duration": "37",
    "disposition": "answered",
    "status_code": "16",
    "is_recorded": "0",
    "call_id_with_rec": "",
}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({k: v for k, v in START.items() if k != "event"}, "no event"),
        ({k: v for k, v in START.items() if k != "called_did"}, "called_did"),
        ({k: v for k, v in START.items() if k != "pbx_call_id"}, "pbx_call_id"),
        ({**START, "call_start": "15.03.2024 10:21"}, "call_start"),
        ({**END, "duration": "a while"}, "duration"),
        ({**END, "caller_id": "7" * 80}, "caller"),
    ],
)
async def test_a_malformed_notification_is_refused_400_naming_what_is_wrong(
    pbx: Pbx, form: dict[str, str], message: str
) -> None:
    headers, body = signed_form(form)
    response = await pbx.post(headers, body)
    assert response.status == 400
    assert message in (await response.json())["detail"]
    assert await pbx.calls() == []


async def test_a_notification_that_is_not_a_form_is_refused_400(pbx: Pbx) -> None:
    headers, _body = signed_form(START)
    headers["Content-Type"] = "application/json"
    response = await pbx.post(headers, b'{"event": "NOTIFY_START"}')
    assert response.status == 400
    assert "application/x-www-form-urlencoded" in (await response.json())["detail"]
    assert await pbx.calls() == []


async def test_an_event_zadarma_added_later_is_answered_200_and_stores_nothing(pbx: Pbx) -> None:
    headers, body = signed_form(START)
    response = await pbx.post(headers, body.replace(b"NOTIFY_START", b"NOTIFY_SMS"))
    assert response.status == 200
    assert await pbx.calls() == []


async def test_saving_the_url_in_zadarma_is_answered_with_its_zd_echo(pbx: Pbx) -> None:
    response = await pbx.client.get("/telephony/zadarma", params={"zd_echo": "a1b2c3d4e5"})
    assert response.status == 200
    assert await response.text() == "a1b2c3d4e5"
    bare = await pbx.client.get("/telephony/zadarma")
    assert bare.status == 400
    assert "zd_echo" in (await bare.json())["detail"]


async def test_a_hub_that_cannot_store_answers_503_so_zadarma_sends_it_again(pbx: Pbx) -> None:
    await pbx.hub.intake.stop()  # as at shutdown: the intake takes nothing more
    response = await pbx.send(sample("01_incoming_answered_NOTIFY_START"))
    assert response.status == 503
    assert await pbx.calls() == []
