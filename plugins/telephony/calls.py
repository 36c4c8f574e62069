"""One call, whatever PBX reported it: the model every telephony adapter produces.

An adapter (the generic webhook, Zadarma, Mango Office, Asterisk AMI) turns each of its
provider's notifications into a :class:`CallEvent`, one per state a call passes through,
and hands it to :func:`accept_call`. The event is stored by the intake before the
adapter answers its PBX; the intake worker then files it (:mod:`plugins.telephony.filing`):
a ringing call is shown on the managers' screens, a finished one becomes an activity, a
missed one a call-back task.

The intake is idempotent on provider, call id and state (:func:`idempotency_key`): a
provider's retry, a webhook replayed, or an AMI reconnect replaying what it saw before
stores nothing new. A call has one final event, ``ended`` or ``missed``: an adapter that
cannot tell them apart until the end sends only that one.

A recording is a reference, never a link: the provider and the provider's id of it
(``recording_id`` on the final event when the provider names it there, as Zadarma's
NOTIFY_END does, or a :class:`CallRecording` of its own when it comes apart, as Mango's
``events/recording`` and Zadarma's NOTIFY_RECORD do). Providers' links expire within
minutes; the hub asks the provider for a fresh one each time a manager listens
(:mod:`plugins.telephony.recordings`). ``recording_url`` is for a PBX that serves its
recordings at a lasting address of its own (the generic webhook).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from hub.intake.accept import Accepted, Intake

CHANNEL = "telephony"  # the intake channel every adapter stores its calls under

Direction = Literal["in", "out", "internal"]
State = Literal["ringing", "answered", "ended", "missed"]
FINAL: frozenset[str] = frozenset({"ended", "missed"})


class CallEvent(BaseModel):
    """A call in one of its states, as an adapter understood its provider."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    provider: str = Field(min_length=1, max_length=40)  # webhook | zadarma | mango | asterisk
    call_id: str = Field(min_length=1, max_length=120)  # the provider's id of the whole call
    direction: Direction
    state: State
    # Numbers as the PBX gave them (any local format); the filing normalizes them.
    caller: str = Field(default="", max_length=64)  # who called: the client on an inbound call
    called: str = Field(default="", max_length=64)  # whom: the client on an outbound call
    line: str | None = Field(default=None, max_length=64)  # the company's number that was used
    extension: str | None = Field(default=None, max_length=40)  # the extension that rang/dialled
    answered_by: str | None = Field(default=None, max_length=40)  # the extension that talked
    duration: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)  # seconds talked
    recording_url: str | None = Field(default=None, max_length=2000)  # a lasting link of the PBX
    recording_id: str | None = Field(default=None, max_length=200)  # the provider's id of it
    reason: str | None = Field(default=None, max_length=100)  # busy, no answer, cancel...
    occurred_at: datetime  # when the call reached this state
    started_at: datetime | None = None

    @field_validator("occurred_at", "started_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must carry a timezone (e.g. 2026-12-07T09:15:00+03:00)")
        return value.astimezone(UTC)

    @property
    def client_number(self) -> str:
        """The outside party's number: the caller of an inbound call, the called of an
        outbound one."""
        return self.called if self.direction == "out" else self.caller

    @property
    def final(self) -> bool:
        return self.state in FINAL


RecordingState = Literal["started", "ready"]


class CallRecording(BaseModel):
    """A provider's notice that a call is (being) recorded, apart from the call's states.

    ``started``: the recording began while the call goes on (Mango's ``Started``); the
    call is filed later, so such a notice may find no call yet. ``ready``: the recording
    is complete (Zadarma's NOTIFY_RECORD, Mango's ``Completed``).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Literal["recording"] = "recording"  # how the filing tells it from a CallEvent
    provider: str = Field(min_length=1, max_length=40)
    call_id: str = Field(min_length=1, max_length=120)  # the call's id, as in its CallEvents
    recording_id: str = Field(min_length=1, max_length=200)
    state: RecordingState
    occurred_at: datetime

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a timezone (e.g. 2026-12-07T09:15:00+03:00)")
        return value.astimezone(UTC)


def is_recording(payload: dict[str, object]) -> bool:
    """Whether a stored telephony payload is a :class:`CallRecording`."""
    return payload.get("kind") == "recording"


def final_key(provider: str, call_id: str) -> str:
    """The idempotency key of a call's one final event (see :func:`idempotency_key`)."""
    return f"{provider}:{call_id}:final"[:190]


def idempotency_key(event: CallEvent) -> str:
    """What makes a call event the same event again.

    The final state is one key whether it says ended or missed, so a provider that
    reports both ("hung up", then "missed") files the call once. A call rings several
    extensions in turn (a ring group, a transfer): each of those rings is its own event.
    """
    if event.final:
        return final_key(event.provider, event.call_id)
    state = event.state
    if event.state == "ringing" and event.extension:
        state = f"ringing:{event.extension}"
    return f"{event.provider}:{event.call_id}:{state}"[:190]


def recording_key(event: CallRecording) -> str:
    """One notice per recording and state: a provider's retry stores nothing new."""
    return f"{event.provider}:{event.call_id}:recording:{event.recording_id}:{event.state}"[:190]


async def accept_call(intake: Intake, event: CallEvent) -> Accepted:
    """Store ``event`` durably (returns once committed); a repeat comes back as
    ``duplicate=True`` and stores nothing."""
    return await intake.accept(
        CHANNEL, event.model_dump(mode="json"), external_id=idempotency_key(event)
    )


async def accept_recording(intake: Intake, event: CallRecording) -> Accepted:
    """Store a recording notice durably, as :func:`accept_call` stores a call's state."""
    return await intake.accept(
        CHANNEL, event.model_dump(mode="json"), external_id=recording_key(event)
    )
