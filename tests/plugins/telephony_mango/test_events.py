"""Mango Office's events, posted as the VPBX posts them, become the calls they report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from tests.plugins.telephony_mango.conftest import FORM, Vpbx, sample, signed

ENTRY = "MzUyODbvczg4OTo0MDE="  # entry_id of 02 and 03: one call


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def ok(vpbx: Vpbx, response: Any) -> None:
    assert response.status == 200, await response.text()
    assert await response.read() == b""


async def test_a_call_appearing_in_the_ivr_is_stored_ringing_on_the_line(vpbx: Vpbx) -> None:
    await ok(vpbx, await vpbx.send(sample("01_events_call_appeared_ivr")))
    [(_key, call)] = await vpbx.calls()
    assert call == {
        "provider": "mango",
        "call_id": "MzUyODbvczkxMjo0MDE=",
        "direction": "in",
        "state": "ringing",
        "caller": "74991102914",
        "called": "74995013402",
        "line": "74995013402",
        "extension": None,
        "answered_by": None,
        "duration": None,
        "recording_url": None,
        "recording_id": None,
        "reason": None,
        "occurred_at": "2018-01-20T13:29:00Z",
        "started_at": None,
    }


async def test_a_call_offered_to_an_extension_of_a_group_rings_that_extension(
    vpbx: Vpbx,
) -> None:
    await ok(vpbx, await vpbx.send(sample("02_events_call_appeared_abonent_acd")))
    assert await vpbx.states() == ["ringing:101"]
    call = (await vpbx.calls())[0][1]
    assert (call["caller"], call["called"], call["line"]) == (
        "74991102914",
        "74952129298",  # the line dialled, not the SIP address of the phone that rings
        "74952129298",
    )
    assert call["occurred_at"] == at(1522347638).isoformat().replace("+00:00", "Z")


async def test_an_answered_summary_is_ended_with_the_seconds_talked(vpbx: Vpbx) -> None:
    await ok(vpbx, await vpbx.send(sample("03_events_summary_inbound_answered")))
    [(key, call)] = await vpbx.calls()
    assert key.endswith(":final")
    assert (call["call_id"], call["direction"], call["state"]) == (ENTRY, "in", "ended")
    assert call["duration"] == 6  # end_time 1516454946 - talk_time 1516454940
    assert call["occurred_at"] == "2018-01-20T13:29:06Z"
    assert call["started_at"] == "2018-01-20T13:29:00Z"
    assert call["line"] == "74991102914"


@pytest.mark.parametrize("suffix", ["/events/dtmf"])
async def test_other_events_are_answered_200_and_store_nothing(vpbx: Vpbx, suffix: str) -> None:
    recording = sample("04_events_recording_started")
    await ok(vpbx, await vpbx.post(suffix, recording.body, recording.headers))
    assert await vpbx.calls() == []


async def test_the_connection_check_ping_is_answered_200(vpbx: Vpbx) -> None:
    await ok(vpbx, await vpbx.post("/ping", b""))
    assert await vpbx.calls() == []


def leg(seq: int, state: str, location: str, at: int, **parties: Any) -> dict[str, Any]:
    return {
        "entry_id": "Q2FsbE9mUGV0cm92YTo0MDE=",
        "call_id": f"leg-{parties.get('leg', 1)}",
        "timestamp": at,
        "seq": seq,
        "call_state": state,
        "location": location,
        "from": parties.get("origin", {"number": "79161234567"}),
        "to": parties.get("target", {"number": "74951234567", "line_number": "74951234567"}),
    }


AT_101 = {"extension": "101", "number": "sip:101@example.mangosip.ru", "line_number": "74951234567"}
AT_102 = {"extension": "102", "number": "sip:102@example.mangosip.ru", "line_number": "74951234567"}


def summary(result: int, talk: int, reason: int, direction: int = 1, **parties: Any) -> dict:
    return {
        "entry_id": "Q2FsbE9mUGV0cm92YTo0MDE=",
        "call_direction": direction,
        "from": parties.get("origin", {"number": "79161234567"}),
        "to": parties.get("target", {"extension": "102", "number": "74951234567"}),
        "line_number": "74951234567",
        "create_time": 1710487265,
        "forward_time": 1710487270,
        "talk_time": talk,
        "end_time": 1710487340,
        "entry_result": result,
        "disconnect_reason": reason,
    }


async def test_a_group_call_answered_by_the_second_extension_is_ended_not_missed(
    vpbx: Vpbx,
) -> None:
    events = [
        ("/events/call", leg(1, "Appeared", "ivr", 1710487265)),
        ("/events/call", leg(2, "Connected", "ivr", 1710487265)),  # the IVR: not a person
        ("/events/call", leg(3, "Appeared", "abonent", 1710487270, target=AT_101, leg=2)),
        ("/events/call", leg(4, "Disconnected", "abonent", 1710487290, target=AT_101, leg=2)),
        ("/events/call", leg(5, "Appeared", "abonent", 1710487290, target=AT_102, leg=3)),
        ("/events/call", leg(6, "Connected", "abonent", 1710487295, target=AT_102, leg=3)),
        ("/events/call", leg(7, "Disconnected", "abonent", 1710487340, target=AT_102, leg=3)),
        ("/events/summary", summary(1, 1710487295, 1100)),
    ]
    for suffix, event in events:
        await ok(vpbx, await vpbx.post(suffix, signed(event)))
    assert await vpbx.states() == ["ringing", "ringing:101", "ringing:102", "answered", "final"]
    calls = [call for _key, call in await vpbx.calls()]
    assert calls[3]["answered_by"] == "102"
    final = calls[-1]
    assert (final["state"], final["duration"], final["answered_by"]) == ("ended", 45, "102")


async def test_a_missed_inbound_call_is_stored_as_missed_with_its_reason(vpbx: Vpbx) -> None:
    await ok(vpbx, await vpbx.post("/events/call", signed(leg(1, "Appeared", "ivr", 1710487265))))
    await ok(vpbx, await vpbx.post("/events/summary", signed(summary(0, 0, 1110))))
    calls = [call for _key, call in await vpbx.calls()]
    assert [(c["state"], c["reason"]) for c in calls] == [("ringing", None), ("missed", "cancel")]
    assert calls[-1]["duration"] == 0
    assert calls[-1]["occurred_at"] == "2024-03-15T07:22:20Z"


async def test_an_outbound_call_to_a_busy_client_rings_from_the_extension_and_is_missed(
    vpbx: Vpbx,
) -> None:
    manager = {"extension": "101", "number": "sip:101@example.mangosip.ru"}
    client = {"number": "79161234567", "line_number": "74951234567"}
    ring = leg(1, "Appeared", "abonent", 1710487265, origin=manager, target=client)
    end = summary(0, 0, 1120, direction=2, origin=manager, target={"number": "79161234567"})
    await ok(vpbx, await vpbx.post("/events/call", signed(ring)))
    await ok(vpbx, await vpbx.post("/events/summary", signed(end)))
    assert await vpbx.states() == ["ringing:101", "final"]
    calls = [call for _key, call in await vpbx.calls()]
    assert [(c["direction"], c["state"], c["called"]) for c in calls] == [
        ("out", "ringing", "79161234567"),
        ("out", "missed", "79161234567"),
    ]
    assert calls[-1]["reason"] == "mango_1120"  # a code without a name is kept as it came


async def test_a_replayed_event_is_answered_200_and_stores_nothing_new(vpbx: Vpbx) -> None:
    item = sample("03_events_summary_inbound_answered")
    await ok(vpbx, await vpbx.send(item))
    await ok(vpbx, await vpbx.send(item))
    assert await vpbx.states() == ["final"]


def changed(body: bytes, **fields: str) -> bytes:
    return urlencode({**dict(parse_qsl(body.decode())), **fields}).encode()


@pytest.mark.parametrize(
    "fields",
    [
        {"sign": "0" * 64},
        {"vpbx_api_key": "someone_elses_vpbx_key_0123456789"},
        {"json": '{"entry_id":"MzUyODbvczg4OTo0MDE=","call_direction":1,"entry_result":0}'},
    ],
    ids=["wrong sign", "another VPBX's key", "changed json"],
)
async def test_an_event_not_signed_by_our_vpbx_is_refused_401_and_not_stored(
    vpbx: Vpbx, fields: dict[str, str]
) -> None:
    item = sample("03_events_summary_inbound_answered")
    response = await vpbx.post(item.path, changed(item.body, **fields), item.headers)
    assert response.status == 401
    assert "sign" in (await response.json())["detail"]
    assert await vpbx.calls() == []


async def test_the_sign_covers_the_json_as_posted_not_as_reserialised(vpbx: Vpbx) -> None:
    item = sample("03_events_summary_inbound_answered")
    spaced = item.facts["json"].replace(",", ", ")  # the same event, other bytes
    response = await vpbx.post(item.path, changed(item.body, json=spaced), item.headers)
    assert response.status == 401
    assert await vpbx.calls() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (urlencode({"vpbx_api_key": "k", "json": "{}"}).encode(), "sign"),
        (signed({"entry_id": "x", "call_state": "Appeared"}) + b"%ff", "UTF-8"),
        (signed(["not", "an", "object"]), "one JSON object"),  # type: ignore[arg-type]
        (signed({"call_state": "Appeared", "location": "ivr", "timestamp": 1}), "entry_id"),
        (signed({"entry_id": "x", "call_state": "Appeared", "location": "ivr"}), "timestamp"),
        (signed({"entry_id": "x", "call_state": "Appeared", "timestamp": "soon"}), "timestamp"),
    ],
)
async def test_a_malformed_call_event_is_refused_400_naming_what_is_wrong(
    vpbx: Vpbx, body: bytes, message: str
) -> None:
    response = await vpbx.post("/events/call", body)
    assert response.status == 400
    assert message in (await response.json())["detail"]
    assert await vpbx.calls() == []


async def test_a_summary_without_its_end_or_result_is_refused_400(vpbx: Vpbx) -> None:
    event = summary(1, 1710487295, 1100)
    del event["end_time"]
    response = await vpbx.post("/events/summary", signed(event))
    assert response.status == 400
    assert "end_time" in (await response.json())["detail"]
    response = await vpbx.post("/events/summary", signed({**summary(1, 0, 0), "entry_result": 7}))
    assert response.status == 400
    assert "entry_result" in (await response.json())["detail"]
    assert await vpbx.calls() == []


async def test_an_event_that_is_not_a_form_is_refused_400(vpbx: Vpbx) -> None:
    response = await vpbx.post(
        "/events/call", b'{"entry_id": "x"}', {"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert FORM["Content-Type"] in (await response.json())["detail"]


async def test_a_hub_that_cannot_store_answers_503_so_the_vpbx_sends_it_again(vpbx: Vpbx) -> None:
    await vpbx.hub.intake.stop()
    response = await vpbx.send(sample("03_events_summary_inbound_answered"))
    assert response.status == 503
    assert await vpbx.calls() == []
