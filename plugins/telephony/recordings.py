"""Call recordings: kept on the call's activity as a reference, listened to through the hub.

A provider's link to a recording expires within minutes (Zadarma's after ``lifetime``,
30 minutes by default; Mango's at the ``expires`` it is signed with), so the activity
keeps what does not expire: the provider and the provider's id of the recording
(``call.recordings``), and the hub's own link, ``call.recording_url`` =
``/api/v1/calls/{activity_id}/recording``. Opening that link (bearer token, as the rest
of the API; a manager only for a call of their own deal or contact, else 404) asks the
provider plugin for a fresh link and answers ``302`` to it: a manager's player follows
it, whenever they listen.

A provider plugin offers its recordings by registering a :class:`RecordingSource` for its
hub (:func:`offer_recordings`, when it starts; :func:`withdraw_recordings` when it stops):
``telephony_zadarma`` asks Zadarma's API, ``telephony_mango`` signs a link on the spot;
the Asterisk adapter has none (AMI reports no recordings). Plugins see each other only
through the hub, so the sources are kept per hub, by its intake (which every plugin is
given), and go with it.

Answers of the route: ``302`` to the provider's link; ``404`` (``no_recording``) for a
call without a recording, or one its provider says it does not have; ``503``
(``provider_unavailable``) when the provider does not answer in time or its plugin is not
running, with ``Retry-After``; ``502`` (``provider_refused``) when it answers something
other than a link. Never a made-up link.

Recording notices that come apart from the call (:class:`~plugins.telephony.calls.CallRecording`)
are stored by the intake like any call event and filed here (:class:`RecordingFiling`):
the recording is attached to the call's activity through the writer
(:class:`hub.deals.changes.AttachRecording`: the same recording twice changes nothing).
A notice that comes before its call is filed waits: a ``started`` one is done with
(the provider's ``ready`` notice follows when the call is over), a ``ready`` one fails
and is retried by the intake until the call is filed.
"""

from __future__ import annotations

import tomllib
import weakref
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from aiohttp import web
from sqlalchemy import select

from hub.api.common import Problem, path_id, problem, scope
from hub.deals import Actor
from hub.deals.changes import AttachRecording
from hub.intake.accept import Intake, idempotency_keys
from hub.intake.handlers import Stored
from hub.store.models import Activity, Contact, Deal, InboxEvent
from plugins.telephony.calls import CHANNEL, CallRecording, final_key

if TYPE_CHECKING:
    from plugins.telephony import Telephony

log = structlog.get_logger("plugins.telephony")

PATH = "/api/v1/calls/{id}/recording"
TEXTS: dict[str, Any] = tomllib.loads(
    (Path(__file__).with_name("templates") / "recordings.toml").read_text("utf-8")
)
NO_WINDOW = timedelta(0)  # a call's key is its own id: no content window applies
RETRY_AFTER = "30"  # seconds: a provider that did not answer is asked again by the manager


def listen_path(activity_id: int) -> str:
    """The hub's lasting link to the recording of a call activity."""
    return PATH.format(id=activity_id)


class NoRecording(Exception):
    """The provider says it has no such recording (deleted, never saved, not yet ready)."""


class ProviderUnavailable(Exception):
    """The provider did not answer (down, too slow, rate-limited): ask again later."""


class ProviderRefused(Exception):
    """The provider answered, but not with a link (refused the key, answered nonsense)."""


class RecordingSource(Protocol):
    """What a provider plugin offers as its ``recordings`` attribute."""

    provider: str  # the CallEvent provider it serves: zadarma, mango

    async def listen_link(self, recording_id: str) -> str:
        """A fresh link to listen to the recording; raises NoRecording, ProviderUnavailable
        or ProviderRefused, each with a message for the manager's problem answer."""
        ...


_SOURCES: weakref.WeakKeyDictionary[Intake, dict[str, RecordingSource]] = (
    weakref.WeakKeyDictionary()
)


def offer_recordings(intake: Intake, source: RecordingSource) -> None:
    """Make ``source`` the one that plays its provider's recordings in this hub."""
    _SOURCES.setdefault(intake, {})[source.provider] = source


def withdraw_recordings(intake: Intake, source: RecordingSource) -> None:
    found = _SOURCES.get(intake, {})
    if found.get(source.provider) is source:
        del found[source.provider]


def recording_sources(intake: Intake) -> dict[str, RecordingSource]:
    """The sources offered in this hub now, by provider."""
    return dict(_SOURCES.get(intake, {}))


class CallNotFiledYet(Exception):
    """A recording's call has not been filed yet; the intake retries the notice later."""


class RecordingFiling:
    """Attaches a recording notice to its call's activity (the intake worker's handler)."""

    def __init__(self, telephony: Telephony, actor: Actor) -> None:
        self.telephony = telephony
        self.actor = actor

    async def handle(self, notice: CallRecording, event: Stored) -> dict[str, Any]:
        found = await call_activity(event, notice.provider, notice.call_id)
        result: dict[str, Any] = {"recording": notice.recording_id, "state": notice.state}
        if found == "not_filed":
            if notice.state == "started":
                # The call is still going; its "ready" notice comes after it and attaches it.
                return {**result, "attached": False, "reason": "call_in_progress"}
            raise CallNotFiledYet(f"call {notice.provider}:{notice.call_id} is not filed yet")
        if found is None:  # an internal call, or one filed as nothing
            return {**result, "attached": False, "reason": "no_call_activity"}
        await attach(self.telephony, event, self.actor, found, notice.provider, notice.recording_id)
        return {**result, "attached": True, "activity_id": found}


async def attach(
    telephony: Telephony,
    event: Stored,
    actor: Actor,
    activity_id: int,
    provider: str,
    recording_id: str,
) -> None:
    """Attach a recording to a call activity in the event's transaction, through the writer."""
    change = AttachRecording(
        activity=activity_id,
        provider=provider,
        recording_id=recording_id,
        listen_url=listen_path(activity_id),
    )
    await telephony.hub.deals.apply_in(event.conn, [change], actor, event.now)


async def call_activity(event: Stored, provider: str, call_id: str) -> int | str | None:
    """The id of the ``call`` activity the call's final event was filed as; ``"not_filed"``
    while that event is not stored or not yet filed; None when it was filed as nothing."""
    key, _ = idempotency_keys(
        external_id=final_key(provider, call_id), fingerprint=None, now=event.now, window=NO_WINDOW
    )
    row = (
        await event.store.execute(
            select(InboxEvent.id, InboxEvent.status, InboxEvent.result).where(
                InboxEvent.channel == CHANNEL, InboxEvent.idem_key == key
            )
        )
    ).first()
    if row is None or row.status != "done":
        return "not_filed"
    result = row.result or {}
    if isinstance(result.get("activity_id"), int):
        return int(result["activity_id"])
    if result.get("filed") is False:
        return None
    # Filed before activities were named in results: the activity points at the event.
    stmt = select(Activity.id).where(Activity.inbox_id == row.id, Activity.kind == "call")
    if isinstance(result.get("contact_id"), int):
        stmt = stmt.where(Activity.contact_id == result["contact_id"])  # indexed
    return (await event.store.execute(stmt.limit(1))).scalar_one_or_none()


class RecordingRoute:
    """``GET /api/v1/calls/{id}/recording``: a fresh link to a call's recording."""

    def __init__(self, telephony: Telephony) -> None:
        self.telephony = telephony

    async def get(self, request: web.Request) -> web.StreamResponse:
        activity_id = path_id(request)
        call = await self._call(activity_id, scope(request))
        texts = TEXTS["problems"]
        if call is None:
            raise Problem(404, texts["no_call"].format(id=activity_id), code="no_call")
        recordings = [r for r in call.get("recordings") or [] if isinstance(r, dict)]
        if not recordings:
            lasting = call.get("recording_url")
            if isinstance(lasting, str) and lasting.startswith(("https://", "http://")):
                return _redirect(lasting)  # a PBX's own lasting link (the generic webhook)
            raise Problem(404, texts["no_recording"], code="no_recording")
        part = _part(request, len(recordings))
        recording = recordings[part - 1]
        provider, recording_id = str(recording.get("provider")), str(recording.get("id"))
        source = recording_sources(self.telephony.hub.intake).get(provider)
        if source is None:
            return _unavailable(texts["no_source"].format(provider=provider), provider)
        try:
            link = await source.listen_link(recording_id)
        except NoRecording as error:
            raise Problem(
                404, texts["gone"].format(detail=error), code="no_recording", provider=provider
            ) from None
        except ProviderUnavailable as error:
            log.warning("recording_provider_unavailable", provider=provider, error=str(error))
            return _unavailable(texts["unavailable"].format(detail=error), provider)
        except ProviderRefused as error:
            log.warning("recording_provider_refused", provider=provider, error=str(error))
            raise Problem(
                502,
                texts["refused"].format(detail=error),
                code="provider_refused",
                provider=provider,
            ) from None
        log.info("recording_listened", activity_id=activity_id, provider=provider, part=part)
        return _redirect(link)

    async def _call(self, activity_id: int, viewer: int | None) -> dict[str, Any] | None:
        """The activity's ``call`` payload, None unless it is a call ``viewer`` may see."""
        stmt = (
            select(
                Activity.kind,
                Activity.payload,
                Activity.deal_id,
                Deal.owner_id.label("deal_owner"),
                Contact.owner_id.label("contact_owner"),
            )
            .outerjoin(Deal, Deal.id == Activity.deal_id)
            .outerjoin(Contact, Contact.id == Activity.contact_id)
            .where(Activity.id == activity_id)
        )
        async with self.telephony.hub.read() as reader:
            row = (await reader.execute(stmt)).first()
        if row is None or row.kind != "call":
            return None
        if viewer is not None:
            owner = row.deal_owner if row.deal_id is not None else row.contact_owner
            if owner != viewer:
                return None  # not found, never forbidden: a token learns nothing of others'
        call = (row.payload or {}).get("call")
        return call if isinstance(call, dict) else {}


def _part(request: web.Request, count: int) -> int:
    raw = request.query.get("part", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= count:
        raise Problem(404, TEXTS["problems"]["no_part"].format(count=count), code="no_recording")
    return int(raw)


def _redirect(link: str) -> web.Response:
    # The link is the provider's short-lived secret for this manager: never cached.
    return web.Response(status=302, headers={"Location": link, "Cache-Control": "no-store"})


def _unavailable(detail: str, provider: str) -> web.Response:
    answer = problem(503, detail, code="provider_unavailable", provider=provider)
    answer.headers["Retry-After"] = RETRY_AFTER
    return answer
