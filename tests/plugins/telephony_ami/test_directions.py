"""In, out or internal, from the call's first channel and the first decisive dial.

The outbound call and the caller giving up in the IVR are SYNTHETIC (:mod:`.synthetic`):
the corpus has neither.
"""

from __future__ import annotations

from tests.plugins.telephony_ami.ami_server import AmiServer
from tests.plugins.telephony_ami.conftest import (
    StartHub,
    expected,
    final_of,
    keys_of,
    stored_calls,
    transcript,
)
from tests.plugins.telephony_ami.synthetic import channel, dial

CLIENT = "89161234567"


async def test_a_phone_dialling_through_a_trunk_is_an_outbound_call_by_that_extension(
    ami_server: AmiServer, start_hub: StartHub
) -> None:
    linked = "1700000200.1"
    phone = ("PJSIP/21-00000010", linked, "21")
    trunk = ("PJSIP/sipnet-00000011", "1700000200.2", CLIENT)
    at_phone = ("Context: from-internal", f"Exten: {CLIENT}")
    blocks = [
        channel("Newchannel", phone, 1700000200.0, *at_phone, linked=linked),
        channel("Newchannel", trunk, 1700000201.0, "Context: from-trunk", linked=linked),
        dial("DialBegin", phone, trunk, 1700000201.0, *at_phone, linked=linked),
        dial("DialEnd", phone, trunk, 1700000210.0, *at_phone, "DialStatus: ANSWER", linked=linked),
        channel("BridgeEnter", trunk, 1700000210.0, "BridgeUniqueid: b1", linked=linked),
        channel("BridgeEnter", phone, 1700000210.0, "BridgeUniqueid: b1", linked=linked),
        channel("Hangup", trunk, 1700000250.0, "Cause: 16", linked=linked),
        channel("Hangup", phone, 1700000250.0, "Cause: 16", linked=linked),
    ]
    hub = await start_hub(ami_server.then(blocks))

    final = await final_of(hub, linked)
    calls = await stored_calls(hub)

    assert keys_of(calls, linked) == ["ringing:21", "answered", "final"]
    for _key, payload in calls:
        assert (payload["direction"], payload["caller"], payload["called"]) == ("out", "21", CLIENT)
        assert payload["extension"] == "21"
    assert (final["state"], final["answered_by"], final["duration"]) == ("ended", "21", 40)


async def test_a_caller_who_hangs_up_in_the_ivr_is_an_inbound_missed_call_nobody_rang_for(
    ami_server: AmiServer, start_hub: StartHub
) -> None:
    linked = "1700000300.1"
    trunk = ("SIP/toOurAster-00000020", linked, CLIENT)
    blocks = [
        channel(
            "Newchannel", trunk, 1700000300.0, "Context: incoming", "Exten: 888999", linked=linked
        ),
        channel("Newexten", trunk, 1700000301.0, "Context: eeivr", "Exten: s", linked=linked),
        channel("HangupRequest", trunk, 1700000320.0, "Cause: 16", linked=linked),
        channel("Hangup", trunk, 1700000320.0, "Cause: 16", linked=linked),
    ]
    hub = await start_hub(ami_server.then(blocks))

    final = await final_of(hub, linked)

    assert keys_of(await stored_calls(hub), linked) == ["final"]
    assert (final["direction"], final["state"], final["reason"]) == ("in", "missed", "cancel")
    assert (final["caller"], final["line"], final["extension"]) == (CLIENT, "888999", None)


async def test_listed_trunks_make_every_other_channel_one_of_our_phones(
    ami_server: AmiServer, start_hub: StartHub
) -> None:
    name = "inbound_trunk_ivr_queue_answered.ami"
    _banner, blocks = transcript(name)
    hub = await start_hub(
        ami_server.then(blocks),
        trunk_channels=["SIP/toOurAster"],
        extension_pattern=r"^\d{3}$",
    )
    call_id = expected(name)["linkedids"][0]

    final = await final_of(hub, call_id)

    assert keys_of(await stored_calls(hub), call_id) == ["ringing:777", "answered", "final"]
    assert (final["direction"], final["answered_by"], final["caller"]) == ("in", "777", "123")
