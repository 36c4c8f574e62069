"""SYNTHETIC AMI event blocks for the cases the corpus has no capture of (transfers, an
outbound call, an inbound caller giving up): written in the Asterisk 13+ event format
(the field names of the AMI event reference for Newchannel, DialBegin, DialEnd,
BridgeEnter, Hangup), trimmed to the fields the adapter reads plus a few for realism.
``Timestamp:`` is there as ``timestampevents = yes`` adds it, so times are exact.
"""

from __future__ import annotations

Leg = tuple[str, str, str]  # channel name, Uniqueid, CallerIDNum


def channel(event: str, leg: Leg, at: float, *extra: str, linked: str) -> str:
    """An event about one channel of the call ``linked``."""
    name, uid, cid = leg
    lines = [
        f"Event: {event}",
        "Privilege: call,all",
        f"Timestamp: {at:.6f}",
        f"Channel: {name}",
        f"CallerIDNum: {cid}",
        "AccountCode: ",
        f"Uniqueid: {uid}",
        f"Linkedid: {linked}",
        *extra,
    ]
    return "\n".join(lines)


def dial(event: str, source: Leg, dest: Leg, at: float, *extra: str, linked: str) -> str:
    """A DialBegin / DialEnd from ``source`` to ``dest``."""
    return channel(
        event,
        source,
        at,
        f"DestChannel: {dest[0]}",
        f"DestCallerIDNum: {dest[2]}",
        f"DestUniqueid: {dest[1]}",
        f"DestLinkedid: {linked}",
        *extra,
        linked=linked,
    )
