"""Calls in progress on the PBX, followed from AMI events (Asterisk 13+ event set).

Asterisk reports channels, not calls: every channel of one call carries the ``Linkedid``
of the call's first channel, which is the call's id here. A channel belongs to the call it
joined first (an attended transfer moves the target's channel into the transferee's
call, whatever Linkedid its later events carry).

What each event means for the call:

- the first channel (``Uniqueid == Linkedid``, normally its ``Newchannel``) gives the
  caller (``CallerIDNum``) and the number dialled (``Exten``); when it is a trunk (or its
  ``Context`` one of ``contexts_inbound``) the call is inbound and that number is the
  ``line`` (the DID).
- ``DialBegin`` to a phone of ours: that extension rings (``ringing``, once per extension:
  a ring group or a queue rings several, a transfer rings another). The first decisive
  dial also fixes the direction of a call from one of our phones: to a trunk ``out``, to
  another phone ``internal``. A ``Local/`` channel decides nothing: the dial it makes does.
- ``DialEnd`` ``ANSWER`` (or a bridge holding one of our phones with the other party):
  ``answered``, by that extension; later answers (a transfer) only change who talked,
  which the final event reports as ``answered_by``. Other ``DialStatus`` values are kept
  as the reason a call may end missed.
- ``Hangup`` of the call's last channel: the one final event, ``ended`` when it was
  answered (``duration`` from the first answer to now) or ``missed`` with the reason of
  the last failed dial (no_answer, busy, cancel, congestion, failed), else from the first
  channel's hangup cause.

Events of a finished call (a replay after reconnecting) are ignored; every state is
emitted once per call here, and the intake's idempotency key catches the rest.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from plugins.telephony.calls import CallEvent, Direction
from plugins.telephony_ami.config import AmiConfig
from plugins.telephony_ami.protocol import Message

PROVIDER = "asterisk"
FINISHED_KEPT = 10_000  # ids of finished calls remembered, to ignore their replayed events
_DIALLED = re.compile(r"^\+?[\d*#]{1,40}$")
DIAL_REASONS = {
    "NOANSWER": "no_answer",
    "BUSY": "busy",
    "CANCEL": "cancel",
    "CONGESTION": "congestion",
    "CHANUNAVAIL": "failed",
}
# Q.850 hangup causes of the first channel, for a call that never got to a dial.
CAUSE_REASONS = {"17": "busy", "18": "no_answer", "19": "no_answer", "34": "congestion"}


@dataclass
class Leg:
    """One channel of a call."""

    uniqueid: str
    name: str
    extension: str | None  # the extension whose phone this channel is
    trunk: bool  # a channel to or from the outside world


@dataclass
class Call:
    linkedid: str
    started_at: datetime
    legs: dict[str, Leg] = field(default_factory=dict)  # live channels by Uniqueid
    gone: set[str] = field(default_factory=set)  # Uniqueids hung up
    direction: Direction | None = None
    origin_seen: bool = False
    origin_trunk: bool = False
    caller: str = ""
    dialled: str = ""
    dialler: str | None = None  # our extension that made the call
    rang: list[str] = field(default_factory=list)
    answered_at: datetime | None = None
    answered_by: str | None = None
    dial_status: str | None = None  # the last DialEnd that was not ANSWER
    origin_cause: str | None = None
    bridges: dict[str, set[str]] = field(default_factory=dict)
    sent: set[str] = field(default_factory=set)


def event_time(message: Message, received: datetime) -> datetime:
    """``Timestamp:`` (manager.conf ``timestampevents = yes``) when there, else ``received``."""
    stamp = message.get("Timestamp").strip()
    if stamp:
        try:
            return datetime.fromtimestamp(float(stamp), UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return received


def _number(value: str) -> str:
    value = value.strip()
    return "" if value in ("<unknown>", "<Unknown>") else value[:64]


class CallsInProgress:
    """The calls the PBX has open, and the :class:`CallEvent` each AMI event adds to them."""

    def __init__(self, config: AmiConfig) -> None:
        self.extension = re.compile(config.extension_pattern)
        self.trunk_prefixes = tuple(config.trunk_channels)
        self.inbound_contexts = frozenset(config.contexts_inbound)
        self.calls: dict[str, Call] = {}
        self.by_channel: dict[str, Call] = {}
        self.finished: OrderedDict[str, None] = OrderedDict()

    # -- channels -------------------------------------------------------------------------

    def classify(self, name: str, callerid: str = "") -> tuple[str | None, bool]:
        """(extension, trunk) of a channel named ``name``; ``(None, False)``: cannot tell."""
        if self.trunk_prefixes and name.startswith(self.trunk_prefixes):
            return None, True
        tech, _, rest = name.partition("/")
        device = rest.rsplit("-", 1)[0] if "-" in rest else rest
        if tech.lower() == "local":  # Local/21@from-queue-00000001;1
            target = device.split("@", 1)[0]
            return (target if self.extension.match(target) else None), False
        if self.extension.match(device):
            return device, False
        if self.trunk_prefixes:  # trunks are listed: any other channel is a phone of ours
            number = _number(callerid)
            return (number if self.extension.match(number) else None), False
        return None, True

    def _leg(self, call: Call, uniqueid: str, name: str, callerid: str) -> Leg | None:
        if not uniqueid or uniqueid in call.gone:
            return None
        leg = call.legs.get(uniqueid)
        if leg is None:
            extension, trunk = self.classify(name, callerid)
            leg = Leg(uniqueid, name, extension, trunk)
            call.legs[uniqueid] = leg
            self.by_channel[uniqueid] = call
        return leg

    def _call_of(self, message: Message, received: datetime, *, create: bool) -> Call | None:
        uniqueid = message.get("Uniqueid")
        call = self.by_channel.get(uniqueid) if uniqueid else None
        if call is not None:
            return call
        linkedid = message.get("Linkedid")
        if not linkedid or linkedid in self.finished:
            return None
        call = self.calls.get(linkedid)
        if call is None and create:
            call = Call(linkedid, event_time(message, received))
            self.calls[linkedid] = call
        return call

    # -- events ---------------------------------------------------------------------------

    def handle(self, message: Message, received: datetime) -> list[CallEvent]:
        """What ``message`` adds to the calls: the call events to store, in order."""
        name = message.event.lower()
        at = event_time(message, received)
        if name == "attendedtransfer":
            return self._attended_transfer(message)
        hangup = name in ("hangup", "hanguprequest", "softhanguprequest")
        call = self._call_of(message, received, create=not hangup)
        if call is None:
            return []
        if name == "hangup":
            return self._hangup(call, message, at)
        if hangup:
            return []
        leg = self._leg(call, message.get("Uniqueid"), message.get("Channel"), _cid(message))
        if leg is not None and message.get("Uniqueid") == call.linkedid and not call.origin_seen:
            self._origin(call, leg, message)
        if name == "dialbegin":
            return self._dial_begin(call, message, at)
        if name == "dialend":
            return self._dial_end(call, message, at)
        if name == "bridgeenter":
            return self._bridge_enter(call, message, at)
        if name == "bridgeleave":
            call.bridges.get(message.get("BridgeUniqueid"), set()).discard(message.get("Uniqueid"))
        return []

    def _origin(self, call: Call, leg: Leg, message: Message) -> None:
        call.origin_seen = True
        call.caller = _number(message.get("CallerIDNum"))
        exten = message.get("Exten").strip()
        call.dialled = exten if _DIALLED.match(exten) else ""
        call.origin_trunk = leg.trunk or message.get("Context").strip() in self.inbound_contexts
        if call.origin_trunk:
            leg.trunk, leg.extension = True, None
            call.direction = "in"
        else:
            call.dialler = leg.extension or (
                call.caller if self.extension.match(call.caller) else None
            )

    def _dial_begin(self, call: Call, message: Message, at: datetime) -> list[CallEvent]:
        dest = self._leg(
            call,
            message.get("DestUniqueid"),
            message.get("DestChannel"),
            message.get("DestCallerIDNum"),
        )
        if dest is None:
            return []
        if call.direction is None:
            if dest.trunk:
                call.direction = "out"
            elif dest.extension is not None and not _is_local(dest):
                call.direction = "internal"
        if not call.dialled and dest.trunk:
            call.dialled = _dialled_of(message.get("DialString"))
        if dest.extension is not None and call.direction in ("in", "internal"):
            if dest.extension not in call.rang:
                call.rang.append(dest.extension)
            return self._emit(call, "ringing", at, extension=dest.extension)
        if dest.trunk and call.direction == "out":
            return self._emit(call, "ringing", at, extension=call.dialler)
        return []

    def _dial_end(self, call: Call, message: Message, at: datetime) -> list[CallEvent]:
        status = message.get("DialStatus").strip().upper()
        dest = call.legs.get(message.get("DestUniqueid"))
        if status != "ANSWER":
            if status:
                call.dial_status = status
            return []
        if dest is None:
            return []
        if call.direction == "out" and dest.trunk:
            return self._answered(call, call.dialler, at)
        if dest.extension is not None and call.direction in ("in", "internal"):
            return self._answered(call, dest.extension, at)
        return []

    def _bridge_enter(self, call: Call, message: Message, at: datetime) -> list[CallEvent]:
        members = call.bridges.setdefault(message.get("BridgeUniqueid"), set())
        members.add(message.get("Uniqueid"))
        legs = [call.legs[u] for u in members if u in call.legs]
        if len(legs) < 2:
            return []
        if call.direction == "out":
            if any(leg.trunk for leg in legs):
                return self._answered(call, call.dialler, at)
            return []
        talkers = [
            leg.extension
            for leg in legs
            if leg.extension is not None
            and not _is_local(leg)
            and leg.uniqueid != call.linkedid
            and leg.extension != call.dialler
        ]
        if len(talkers) == 1:
            return self._answered(call, talkers[0], at)
        return []

    def _answered(self, call: Call, extension: str | None, at: datetime) -> list[CallEvent]:
        call.answered_by = extension or call.answered_by
        if call.answered_at is None:
            call.answered_at = at
        return self._emit(call, "answered", at, extension=extension, answered_by=extension)

    def _attended_transfer(self, message: Message) -> list[CallEvent]:
        """The transfer target's channel now talks to the transferee: it joins that call."""
        if message.get("Result").strip().lower() != "success":
            return []
        call = self.by_channel.get(message.get("TransfereeUniqueid"))
        target_id = message.get("TransferTargetUniqueid")
        source = self.by_channel.get(target_id)
        if call is None or source is None or source is call:
            return []
        leg = source.legs.pop(target_id, None)
        if leg is None:
            return []
        call.legs[target_id] = leg
        self.by_channel[target_id] = call
        if leg.extension is not None:
            call.answered_by = leg.extension
        return []

    def _hangup(self, call: Call, message: Message, at: datetime) -> list[CallEvent]:
        uniqueid = message.get("Uniqueid")
        if uniqueid not in call.legs:
            return []
        self._drop(call, uniqueid)
        if uniqueid == call.linkedid:
            call.origin_cause = message.get("Cause").strip()
        if call.legs:
            return []
        return self._finish(call, at)

    # -- catching up after a reconnect ----------------------------------------------------

    def known_channels(self) -> set[str]:
        return set(self.by_channel)

    def reap(self, known: set[str], alive: set[str], at: datetime) -> list[CallEvent]:
        """Channels in ``known`` the PBX no longer has hung up while we were not listening:
        drop them, and finish each call left without a channel."""
        events: list[CallEvent] = []
        for uniqueid in sorted(known - alive):
            call = self.by_channel.get(uniqueid)
            if call is None:
                continue
            self._drop(call, uniqueid)
            if not call.legs:
                events += self._finish(call, at, lost=True)
        return events

    # -- emitting -------------------------------------------------------------------------

    def _drop(self, call: Call, uniqueid: str) -> None:
        call.legs.pop(uniqueid, None)
        call.gone.add(uniqueid)
        self.by_channel.pop(uniqueid, None)
        for members in call.bridges.values():
            members.discard(uniqueid)

    def _finish(self, call: Call, at: datetime, *, lost: bool = False) -> list[CallEvent]:
        self.calls.pop(call.linkedid, None)
        for uniqueid in list(call.legs):
            self.by_channel.pop(uniqueid, None)
        self.finished[call.linkedid] = None
        while len(self.finished) > FINISHED_KEPT:
            self.finished.popitem(last=False)
        if call.direction is None:  # no decisive dial was seen
            dialled = call.dialled
            call.direction = "out" if dialled and not self.extension.match(dialled) else "internal"
        if call.answered_at is not None:
            seconds = max(0, round((at - call.answered_at).total_seconds()))
            return self._emit(
                call,
                "ended",
                at,
                extension=call.answered_by,
                answered_by=call.answered_by,
                duration=seconds,
                reason="hangup_not_seen" if lost else None,
            )
        if call.dial_status:
            reason: str | None = DIAL_REASONS.get(call.dial_status, call.dial_status.lower())
        elif call.origin_cause is not None:
            # Nobody was dialled, or the dial was cut: the caller gave up (in an IVR, a queue).
            reason = CAUSE_REASONS.get(call.origin_cause, "cancel")
        else:
            reason = "hangup_not_seen" if lost else None
        if call.direction == "out":
            extension = call.dialler
        else:
            extension = call.rang[-1] if call.rang else None
        return self._emit(call, "missed", at, extension=extension, reason=reason)

    def _emit(
        self, call: Call, state: str, at: datetime, *, extension: str | None, **fields: object
    ) -> list[CallEvent]:
        extension = extension[:40] if extension else extension
        if isinstance(fields.get("answered_by"), str):
            fields["answered_by"] = str(fields["answered_by"])[:40]
        key = f"ringing:{extension}" if state == "ringing" else state
        if key in call.sent:
            return []
        call.sent.add(key)
        direction = call.direction or "internal"
        event = CallEvent(
            provider=PROVIDER,
            call_id=call.linkedid,
            direction=direction,
            state=state,  # type: ignore[arg-type]
            caller=call.caller,
            called=call.dialled,
            line=(call.dialled or None) if direction == "in" else None,
            extension=extension,
            occurred_at=at,
            started_at=call.started_at,
            **fields,  # type: ignore[arg-type]
        )
        return [event]


def _cid(message: Message) -> str:
    return message.get("CallerIDNum")


def _is_local(leg: Leg) -> bool:
    return leg.name.lower().startswith("local/")


def _dialled_of(dialstring: str) -> str:
    """The number in a DialString: ``trunk/89161234567``, ``89161234567@trunk``."""
    for part in re.split(r"[/@]", dialstring):
        if _DIALLED.match(part.strip()):
            return part.strip()
    return ""
