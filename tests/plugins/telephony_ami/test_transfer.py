"""A transferred call is one call, answered, reporting whoever talked last.

SYNTHETIC transcripts (see :mod:`.synthetic`; the BlindTransfer and AttendedTransfer
blocks follow those events' pages of the Asterisk AMI event reference): the corpus has no
capture of a transfer.
"""

from __future__ import annotations

from tests.plugins.telephony_ami import synthetic
from tests.plugins.telephony_ami.ami_server import AmiServer, blocks_of
from tests.plugins.telephony_ami.conftest import StartHub, final_of, keys_of, stored_calls
from tests.plugins.telephony_ami.synthetic import Leg

CALLER = "79161234567"
DID = "4951234567"
LINKED = "1700000000.1"


def channel(event: str, leg: Leg, at: float, *extra: str, linked: str = LINKED) -> str:
    return synthetic.channel(event, leg, at, *extra, linked=linked)


TRUNK = ("SIP/sipnet-00000001", "1700000000.1", CALLER)
EXT21 = ("PJSIP/21-00000002", "1700000000.2", "21")
EXT22 = ("PJSIP/22-00000003", "1700000000.3", "22")


def dial(event: str, dest: Leg, at: float, *extra: str) -> str:
    return synthetic.dial(
        event, TRUNK, dest, at, "Context: from-trunk", f"Exten: {DID}", *extra, linked=LINKED
    )


def answered_by_21() -> list[str]:
    return [
        channel("Newchannel", TRUNK, 1700000000.0, "Context: from-trunk", f"Exten: {DID}"),
        channel("Newchannel", EXT21, 1700000001.0, "Context: from-internal", "Exten: s"),
        dial("DialBegin", EXT21, 1700000001.0, "DialString: 21"),
        dial("DialEnd", EXT21, 1700000010.0, "DialStatus: ANSWER"),
        channel("BridgeEnter", EXT21, 1700000010.0, "BridgeUniqueid: bridge-a"),
        channel("BridgeEnter", TRUNK, 1700000010.0, "BridgeUniqueid: bridge-a"),
    ]


BLIND_TRANSFER = """
Event: BlindTransfer
Privilege: call,all
Timestamp: 1700000040.000000
Result: Success
TransfererChannel: PJSIP/21-00000002
TransfererCallerIDNum: 21
TransfererUniqueid: 1700000000.2
TransfererLinkedid: 1700000000.1
TransfereeChannel: SIP/sipnet-00000001
TransfereeCallerIDNum: 79161234567
TransfereeUniqueid: 1700000000.1
TransfereeLinkedid: 1700000000.1
BridgeUniqueid: bridge-a
IsExternal: No
Context: from-internal
Extension: 22
"""


async def test_a_blind_transfer_is_one_answered_call_ended_by_the_second_extension(
    ami_server: AmiServer, start_hub: StartHub
) -> None:
    blocks = [
        *answered_by_21(),
        *blocks_of(BLIND_TRANSFER),
        channel("BridgeLeave", EXT21, 1700000040.0, "BridgeUniqueid: bridge-a"),
        channel("BridgeLeave", TRUNK, 1700000040.0, "BridgeUniqueid: bridge-a"),
        channel("Hangup", EXT21, 1700000040.0, "Cause: 16"),
        # The caller goes on in the dialplan at 22: a second dial after the bridge.
        channel("Newchannel", EXT22, 1700000041.0, "Context: from-internal", "Exten: s"),
        dial("DialBegin", EXT22, 1700000041.0, "DialString: 22"),
        dial("DialEnd", EXT22, 1700000045.0, "DialStatus: ANSWER"),
        channel("BridgeEnter", EXT22, 1700000045.0, "BridgeUniqueid: bridge-b"),
        channel("BridgeEnter", TRUNK, 1700000045.0, "BridgeUniqueid: bridge-b"),
        channel("Hangup", TRUNK, 1700000100.0, "Cause: 16"),
        channel("Hangup", EXT22, 1700000100.0, "Cause: 16"),
    ]
    hub = await start_hub(ami_server.then(blocks))

    final = await final_of(hub, "1700000000.1")
    calls = await stored_calls(hub)

    assert keys_of(calls, "1700000000.1") == ["ringing:21", "answered", "ringing:22", "final"]
    assert len(calls) == 4
    answered = next(p for _k, p in calls if p["state"] == "answered")
    assert answered["answered_by"] == "21"
    assert final["state"] == "ended"
    assert final["answered_by"] == "22"
    assert final["direction"] == "in"
    assert (final["caller"], final["line"]) == (CALLER, DID)
    assert final["duration"] == 90  # from the first answer (…010) to the last hangup (…100)
    assert final["occurred_at"].startswith("2023-11-14T22:15:00")
    assert final["started_at"].startswith("2023-11-14T22:13:20")


CONSULT = ("PJSIP/21-00000004", "1700000000.4", "21")
CONSULTED = ("PJSIP/22-00000005", "1700000000.5", "22")


def consult(event: str, at: float, *extra: str) -> str:
    return channel(
        event,
        CONSULT,
        at,
        "Context: from-internal",
        "Exten: 22",
        f"DestChannel: {CONSULTED[0]}",
        "DestCallerIDNum: 22",
        f"DestUniqueid: {CONSULTED[1]}",
        *extra,
        linked="1700000000.4",
    )


ATTENDED_TRANSFER = """
Event: AttendedTransfer
Privilege: call,all
Timestamp: 1700000050.000000
Result: Success
OrigTransfererChannel: PJSIP/21-00000002
OrigTransfererUniqueid: 1700000000.2
OrigTransfererLinkedid: 1700000000.1
OrigBridgeUniqueid: bridge-a
SecondTransfererChannel: PJSIP/21-00000004
SecondTransfererUniqueid: 1700000000.4
SecondTransfererLinkedid: 1700000000.4
SecondBridgeUniqueid: bridge-c
TransfereeChannel: SIP/sipnet-00000001
TransfereeUniqueid: 1700000000.1
TransfereeLinkedid: 1700000000.1
TransferTargetChannel: PJSIP/22-00000005
TransferTargetUniqueid: 1700000000.5
TransferTargetLinkedid: 1700000000.4
IsExternal: No
DestType: Bridge
DestBridgeUniqueid: bridge-a
"""


async def test_an_attended_transfer_ends_the_call_with_the_target_as_the_one_who_talked(
    ami_server: AmiServer, start_hub: StartHub
) -> None:
    linked = "1700000000.4"
    blocks = [
        *answered_by_21(),
        # 21 puts the caller on hold and calls 22 from a second channel: a call of its own.
        channel(
            "Newchannel",
            CONSULT,
            1700000030.0,
            "Context: from-internal",
            "Exten: 22",
            linked=linked,
        ),
        channel(
            "Newchannel",
            CONSULTED,
            1700000030.0,
            "Context: from-internal",
            "Exten: s",
            linked=linked,
        ),
        consult("DialBegin", 1700000030.0, "DialString: 22"),
        consult("DialEnd", 1700000035.0, "DialStatus: ANSWER"),
        channel("BridgeEnter", CONSULTED, 1700000035.0, "BridgeUniqueid: bridge-c", linked=linked),
        channel("BridgeEnter", CONSULT, 1700000035.0, "BridgeUniqueid: bridge-c", linked=linked),
        *blocks_of(ATTENDED_TRANSFER),
        channel("BridgeLeave", EXT21, 1700000050.0, "BridgeUniqueid: bridge-a"),
        channel("BridgeLeave", CONSULT, 1700000050.0, "BridgeUniqueid: bridge-c", linked=linked),
        channel("BridgeEnter", CONSULTED, 1700000050.0, "BridgeUniqueid: bridge-a", linked=linked),
        channel("Hangup", EXT21, 1700000050.0, "Cause: 16"),
        channel("Hangup", CONSULT, 1700000050.0, "Cause: 16", linked=linked),
        channel("Hangup", TRUNK, 1700000110.0, "Cause: 16"),
        # The target's channel keeps the Linkedid of the consultation call it was born in.
        channel("Hangup", CONSULTED, 1700000110.0, "Cause: 16", linked=linked),
    ]
    hub = await start_hub(ami_server.then(blocks))

    final = await final_of(hub, "1700000000.1")
    consultation = await final_of(hub, linked)
    calls = await stored_calls(hub)

    assert keys_of(calls, "1700000000.1") == ["ringing:21", "answered", "final"]
    assert final["state"] == "ended"
    assert final["answered_by"] == "22"
    assert final["direction"] == "in"
    assert final["duration"] == 100
    # 21 asking 22 first is a short internal call of its own, answered and ended.
    assert keys_of(calls, linked) == ["ringing:22", "answered", "final"]
    assert (consultation["direction"], consultation["state"]) == ("internal", "ended")
    assert consultation["occurred_at"].startswith("2023-11-14T22:14:10")  # when 21 left it
