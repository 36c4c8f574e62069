"""Filing calls: what a call's states become in the deal store.

The intake worker hands every stored :class:`~plugins.telephony.calls.CallEvent` here
(``hub_intake_handler``), in its batch's transaction. By state:

- *ringing*: shown on the screens of the managers it is for (:mod:`.screen`, in every
  hub process: :mod:`.rings`) and, with
  ``push_card_via``, pushed to them through those notifiers; nothing else is written.
  A ring seen later than ``ring_fresh_for`` is not shown: nobody waits at the phone.
- *answered*: nothing yet; the call is filed when it ends.
- *ended* / *missed*: the call becomes a ``call`` activity (direction, duration, who
  talked, the recording) on the client's contact and their latest open deal.

  A missed inbound call asks for a call back: a ``callback`` task due within
  ``callback_within`` for the owner, who is notified. More missed calls from the number
  before the call back make no more tasks: the open one counts them in its title. A
  call that gets through afterwards (the manager's outbound call, or the client's
  answered call) closes it with the call as its result.

  The recording a final event names (``recording_id``) is attached to the activity as a
  reference the hub serves fresh links for (:mod:`.recordings`); a recording notice
  that comes apart from the call (:class:`~plugins.telephony.calls.CallRecording`) is
  attached to the activity its call was filed as.

  An unknown number's call goes through the lead pipeline as a lead with the source
  ``source`` ("Входящий звонок"): a contact and a deal in the configured pipeline,
  owned by whom assignment picks (round robin), as a form's lead would be; a missed one
  gets the call-back task as its first task. A withheld number is logged only.

Every write goes through the deal store's writer as the actor ``plugin:telephony``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import func, or_, select

from hub.deals import Actor
from hub.deals.changes import (
    AddTask,
    Change,
    CompleteTask,
    LogActivity,
    RescheduleTask,
)
from hub.domain.lead import Lead
from hub.domain.normalize import InvalidPoint
from hub.intake.handlers import Stored
from hub.store.models import Activity, Contact, ContactPoint, Deal, Task
from plugins.telephony.calls import CHANNEL, CallEvent, CallRecording, is_recording
from plugins.telephony.card import best_first, number_params, phone_points
from plugins.telephony.recordings import RecordingFiling, attach

if TYPE_CHECKING:
    from plugins.telephony import Telephony

log = structlog.get_logger("plugins.telephony")

ACTOR = Actor.plugin("telephony")
CALLBACK = "callback"  # the kind of a call-back task
TEXTS: dict[str, Any] = tomllib.loads(
    (Path(__file__).with_name("templates") / "calls.toml").read_text("utf-8")
)


@dataclass(frozen=True, slots=True)
class Client:
    """Whose number called: the contact, their owner and latest open deal."""

    contact_id: int
    owner_id: int | None
    deal_id: int | None
    deal_owner_id: int | None

    @property
    def owner(self) -> int | None:
        return self.deal_owner_id if self.deal_id is not None else self.owner_id


def _client_query() -> Any:
    def latest_open(column: Any) -> Any:
        return (
            select(column)
            .where(Deal.contact_id == Contact.id, Deal.status == "open")
            .order_by(Deal.id.desc())
            .limit(1)
            .correlate(Contact)
            .scalar_subquery()
        )

    return (
        select(
            Contact.id,
            Contact.owner_id,
            latest_open(Deal.id).label("deal_id"),
            latest_open(Deal.owner_id).label("deal_owner_id"),
        )
        .select_from(ContactPoint)
        .join(Contact, Contact.id == ContactPoint.contact_id)
        .where(phone_points())
        .order_by(*best_first(limited=False))
        .limit(1)
    )


def duration_text(seconds: int | None) -> str:
    """``125`` → ``"2 мин 05 с"``: how long they talked, as the activity shows it."""
    if not seconds:
        return TEXTS["duration"]["zero"]
    minutes, rest = divmod(seconds, 60)
    if minutes == 0:
        return TEXTS["duration"]["seconds"].format(s=rest)
    return TEXTS["duration"]["minutes"].format(m=minutes, s=f"{rest:02d}")


def summary(call: CallEvent, answered: bool) -> str:
    """The activity's line in the deal's history: "Входящий звонок, 2 мин 05 с (101)"."""
    texts = TEXTS["summary"]
    key = f"{call.direction}_{'answered' if answered else 'missed'}"
    return (
        texts[key]
        .format(
            duration=duration_text(call.duration),
            who=call.answered_by or call.extension or "",
            reason=TEXTS["reasons"].get((call.reason or "").lower(), call.reason or ""),
        )
        .replace(" ()", "")
        .rstrip(", ")
    )


class CallFiling:
    """The ``hub_intake_handler`` of the telephony channel."""

    def __init__(self, telephony: Telephony) -> None:
        self.telephony = telephony
        self.config = telephony.config
        self.recordings = RecordingFiling(telephony, ACTOR)

    async def handle(self, event: Stored) -> dict[str, Any]:
        if is_recording(event.payload):
            notice = CallRecording.model_validate(event.payload)
            return await self.recordings.handle(notice, event)
        call = CallEvent.model_validate(event.payload)
        if call.state == "ringing":
            return await self.ringing(call, event)
        if call.state == "answered" or call.direction == "internal":
            return {"call": call.state, "filed": False}
        return await self.finished(call, event)

    # -- a ringing phone --------------------------------------------------------------------

    async def ringing(self, call: CallEvent, event: Stored) -> dict[str, Any]:
        if event.now - call.occurred_at > self.config.ring_fresh_for:
            return {"call": "ringing", "shown": False, "reason": "stale"}
        await self.telephony.rings.publish(event.conn, call)
        pushed = 0
        if self.config.push_card_via and call.direction == "in":
            notes = await self._push(call, event)
            if notes:
                await self.telephony.hub.deals.apply_in(event.conn, notes, ACTOR, event.now)
            pushed = len(notes)
        return {"call": "ringing", "shown": True, "pushed": pushed}

    async def _push(self, call: CallEvent, event: Stored) -> list[Change]:
        """The caller card for the owner of a known client, else for the extension ringing."""
        e164 = self._normalize(call.client_number)
        client = await self._client(event, e164) if e164 else None
        to: list[str] = []
        deal = None
        if client is not None and client.owner is not None:
            deal = {"id": client.deal_id, "owner_id": client.owner}
            to.append("owner")
        else:
            rung = self._user_at(call.extension)
            if rung is not None:
                to.append(f"user:{rung}")
        if not to:
            return []
        card = await self.telephony.card(e164, None) if e164 else {"known": False}
        return list(
            self.telephony.hub.notifications.queue(
                to=to,
                template="incoming_call",
                context={"call": call.model_dump(mode="json"), "card": card, "number": e164},
                key=f"call:{call.provider}:{call.call_id}:ring",
                now=event.now,
                via=self.config.push_card_via,
                deal=deal,
                event_type="call.ringing",
            )
        )

    def _user_at(self, extension: str | None) -> str | None:
        if not extension:
            return None
        for user in self.telephony.hub.settings.users:
            if user.extension == extension and user.active:
                return user.email
        return None

    # -- a finished call ------------------------------------------------------------------

    async def finished(self, call: CallEvent, event: Stored) -> dict[str, Any]:
        answered = call.state == "ended"
        e164 = self._normalize(call.client_number)
        client = await self._client(event, e164) if e164 else None
        record = self._record(call, e164)
        if client is None and e164 is not None and call.direction == "in":
            return await self._new_caller(call, event, record, answered)
        activity = LogActivity(
            activity="call",
            summary=summary(call, answered),
            deal=client.deal_id if client else None,
            contact=client.contact_id if client else None,
            direction=call.direction,
            result="answered" if answered else "missed",
            payload={"call": record},
            occurred_at=call.occurred_at,
            inbox_id=event.id,
        )
        changes: list[Change] = [activity]
        result: dict[str, Any] = {
            "call": call.state,
            "contact_id": client.contact_id if client else None,
            "deal_id": client.deal_id if client else None,
        }
        if client is not None:
            callback = await self._open_callback(event, client.contact_id)
            if not answered and call.direction == "in":
                changes += await self._ask_callback(call, event, client, callback)
                result["callback"] = "counted" if callback else "created"
            elif answered and callback is not None:
                changes.append(CompleteTask(task=callback[0], result=self._closing(call)))
                result["callback"] = "closed"
        applied = await self.telephony.hub.deals.apply_in(event.conn, changes, ACTOR, event.now)
        for change in applied.changes:
            if isinstance(change, AddTask):
                result["task_id"] = change.id
        activity_id = activity.id
        assert activity_id is not None
        # Named in the result, so a recording notice coming later finds the activity.
        result["activity_id"] = activity_id
        await self._attach_recording(call, event, activity_id)
        return result

    async def _attach_recording(self, call: CallEvent, event: Stored, activity_id: int) -> None:
        if call.recording_id:
            await attach(
                self.telephony, event, ACTOR, activity_id, call.provider, call.recording_id
            )

    async def _new_caller(
        self, call: CallEvent, event: Stored, record: dict[str, Any], answered: bool
    ) -> dict[str, Any]:
        """An unknown number's call: a lead, as a form's would be."""
        lead = Lead(
            channel=CHANNEL,
            phones=[record["number"]],
            source=self.config.source,
            pipeline=self.config.pipeline,
            stage=self.config.stage,
            activity_kind="call",
            activity_result="answered" if answered else "missed",
            activity_payload={"call": record},
            summary=summary(call, answered),
            received_at=call.occurred_at,
            task=None if answered else self._callback_title(1),
            task_kind="call" if answered else CALLBACK,
            task_within=None if answered else self.config.callback_within,
        )
        decision = await event.lead(lead)
        result = {"call": call.state, **decision}
        activity_id = await self._lead_activity(event, decision.get("contact_id"))
        if activity_id is not None:
            result["activity_id"] = activity_id
            await self._attach_recording(call, event, activity_id)
        if not answered and decision.get("owner_id") is not None:
            notes = self._tell_owner(call, event, decision["deal_id"], decision["owner_id"], 1)
            if notes:
                await self.telephony.hub.deals.apply_in(event.conn, notes, ACTOR, event.now)
        return result

    async def _ask_callback(
        self,
        call: CallEvent,
        event: Stored,
        client: Client,
        callback: tuple[int, datetime] | None,
    ) -> list[Change]:
        if callback is not None:
            task_id, since = callback
            missed = await self._missed_since(event, client.contact_id, since) + 1
            return [RescheduleTask(task=task_id, title=self._callback_title(missed))]
        task = AddTask(
            title=self._callback_title(1),
            due_at=event.now + self.config.callback_within,
            deal=client.deal_id,
            contact=client.contact_id,
            owner_id=client.owner,
            task_kind=CALLBACK,
        )
        return [task, *self._tell_owner(call, event, client.deal_id, client.owner, 1)]

    def _tell_owner(
        self, call: CallEvent, event: Stored, deal_id: int | None, owner_id: int | None, count: int
    ) -> list[Change]:
        if owner_id is None:
            return []
        return list(
            self.telephony.hub.notifications.queue(
                to=["owner"],
                template="missed_call",
                context={
                    "call": call.model_dump(mode="json"),
                    "number": self._normalize(call.client_number) or call.client_number,
                    "count": count,
                    "within_minutes": int(self.config.callback_within.total_seconds() // 60),
                },
                key=f"call:{call.provider}:{call.call_id}:missed",
                now=event.now,
                deal={"id": deal_id, "owner_id": owner_id},
                event_type="call.missed",
            )
        )

    @staticmethod
    def _callback_title(missed: int) -> str:
        texts = TEXTS["callback"]
        return texts["one"] if missed == 1 else texts["many"].format(n=missed)

    @staticmethod
    def _closing(call: CallEvent) -> str:
        key = "outbound" if call.direction == "out" else "inbound"
        return TEXTS["callback"][f"closed_{key}"].format(duration=duration_text(call.duration))

    # -- lookups --------------------------------------------------------------------------

    def _normalize(self, raw: str) -> str | None:
        try:
            return self.telephony.normalize(raw) if raw.strip() else None
        except InvalidPoint:
            return None

    async def _client(self, event: Stored, e164: str) -> Client | None:
        row = (await event.store.execute(CLIENT, number_params(e164))).first()
        if row is None:
            return None
        return Client(row.id, row.owner_id, row.deal_id, row.deal_owner_id)

    @staticmethod
    async def _lead_activity(event: Stored, contact_id: Any) -> int | None:
        """The call activity the lead pipeline just logged for this event."""
        if not isinstance(contact_id, int):
            return None
        return (
            await event.store.execute(
                select(Activity.id)
                .where(
                    Activity.contact_id == contact_id,
                    Activity.inbox_id == event.id,
                    Activity.kind == "call",
                )
                .order_by(Activity.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()

    @staticmethod
    async def _open_callback(event: Stored, contact_id: int) -> tuple[int, datetime] | None:
        row = (
            await event.store.execute(
                select(Task.id, Task.created_at)
                .where(
                    Task.contact_id == contact_id,
                    Task.kind == CALLBACK,
                    Task.done_at.is_(None),
                )
                .order_by(Task.id.desc())
                .limit(1)
            )
        ).first()
        return (row.id, row.created_at) if row else None

    @staticmethod
    async def _missed_since(event: Stored, contact_id: int, since: datetime) -> int:
        """Missed inbound calls of the contact since they last talked (an answered call),
        and not before the open call-back task was asked for by the first of them."""
        talked = (
            select(func.max(Activity.occurred_at))
            .where(
                Activity.contact_id == contact_id,
                Activity.kind == "call",
                Activity.payload["result"].as_string() == "answered",
            )
            .scalar_subquery()
        )
        first_missed = (
            select(func.max(Activity.occurred_at))
            .where(
                Activity.contact_id == contact_id,
                Activity.kind == "call",
                Activity.direction == "in",
                Activity.occurred_at <= since,
                Activity.payload["result"].as_string() == "missed",
            )
            .scalar_subquery()
        )
        count = await event.store.execute(
            select(func.count())
            .select_from(Activity)
            .where(
                Activity.contact_id == contact_id,
                Activity.kind == "call",
                Activity.direction == "in",
                Activity.payload["result"].as_string() == "missed",
                Activity.occurred_at >= func.coalesce(first_missed, since),
                or_(talked.is_(None), Activity.occurred_at > talked),
            )
        )
        return max(int(count.scalar_one()), 1)

    @staticmethod
    def _record(call: CallEvent, e164: str | None) -> dict[str, Any]:
        """What the activity keeps of the call (``hub calls list`` reads it)."""
        return {
            "provider": call.provider,
            "call_id": call.call_id,
            "number": e164 or call.client_number,
            "line": call.line,
            "extension": call.extension,
            "answered_by": call.answered_by,
            "duration": call.duration,
            "recording_url": call.recording_url,
            "reason": call.reason,
            "started_at": call.started_at.isoformat() if call.started_at else None,
        }


CLIENT = _client_query()
