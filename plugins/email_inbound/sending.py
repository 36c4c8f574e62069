"""Mail sent from a deal: ``POST /api/v1/deals/{id}/emails``, through the notification outbox.

A manager writes to the deal's client from the hub; the hub gives the letter a
Message-ID, records it on the deal as an outgoing ``email`` activity and queues it in
the notification outbox, in one transaction with the request (``Idempotency-Key``
honoured). The hub's sender then delivers it through the ``deal_mail`` notifier over
the configured SMTP account (``[plugins.email_inbound.smtp]``, aiosmtplib): at most
once, a send cut off by a crash held for review rather than sent again blindly, never
lost (:mod:`hub.notify`). The client's reply names the Message-ID in In-Reply-To or
References, and the filing finds the deal by it (outbox key ``deal-mail:<id>``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from hub.api.common import HUB_KEY, Problem, body, path_id, scope, write
from hub.deals import NotFound, Refusal, Refused
from hub.deals.changes import LogActivity, QueueNotification
from hub.notify import Message, Recipient, Sent, Undeliverable
from hub.store.models import Activity, ContactPoint, Deal, User
from hub.store.types import utcnow
from plugins.email_notify.config import EmailNotifyConfig, email_address
from plugins.email_notify.letter import POLICY, one_line
from plugins.email_notify.smtp import send_failure, session, tls_context

NOTIFIER = "deal_mail"
PATH = "/api/v1/deals/{id}/emails"
KEY_PREFIX = "deal-mail:"  # + the Message-ID without <>: how a reply finds its deal
NO_ADDRESS = 'the deal\'s contact has no email: give one in "to"'


def outbox_key(message_id: str) -> str:
    return f"{KEY_PREFIX}{message_id.strip().strip('<>')}"[:300]


class DealEmail(BaseModel):
    """What a manager sends: the subject and the text; ``to`` defaults to the contact's
    email."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=300)
    text: str = Field(min_length=1, max_length=100_000)
    to: str | None = None

    @field_validator("to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return email_address(value, "to") if value else None


class DealMail:
    """The ``deal_mail`` notifier: a manager's letter to a client, sent over SMTP."""

    name = NOTIFIER
    # Writes letters a person composes on a deal, recorded as activities of this kind: how
    # the core's ``hub deals email`` finds it without naming the channel (see :meth:`draft`).
    deal_letters = "email"
    # A send a crash cut off is held for review: a client must not get the letter twice.
    resend_interrupted = False

    def __init__(self, config: EmailNotifyConfig) -> None:
        self.config = config
        self.retry_for = config.retry_for
        self.concurrency = config.concurrency
        self._tls: ssl.SSLContext | None = None
        self._hostname: str | None = None

    def address(self, recipient: Recipient) -> str | None:
        return None  # only letters queued from a deal, never a rule's "tell someone"

    def compose(self, message: Message) -> EmailMessage:
        data = message.data
        letter = EmailMessage(policy=POLICY)
        letter["From"] = Address(
            display_name=data.get("from_name") or self.config.sender_name,
            addr_spec=self.config.sender,
        )
        letter["To"] = Address(addr_spec=message.address)
        if self.config.reply_to:
            letter["Reply-To"] = Address(addr_spec=self.config.reply_to)
        letter["Subject"] = one_line(data.get("subject", ""))
        letter["Date"] = format_datetime(message.created_at or utcnow())
        letter["Message-ID"] = f"<{data['message_id']}>"
        if data.get("in_reply_to"):
            letter["In-Reply-To"] = f"<{data['in_reply_to']}>"
            letter["References"] = f"<{data['in_reply_to']}>"
        letter.set_content(data.get("text", "").rstrip() + "\n")
        return letter

    def letter(self, found: Addressed, sent: DealEmail) -> DealLetter:
        """The letter with a new Message-ID of the sender's domain, as an activity on the deal
        and a row of the outbox (``deal-mail:<Message-ID>``, how the reply finds the deal)."""
        message_id = make_msgid(domain=self.config.sender_domain).strip("<>")
        letter: dict[str, Any] = {
            "message_id": message_id,
            "subject": sent.subject,
            "text": sent.text,
            "to": found.to,
            "in_reply_to": found.in_reply_to,
            "from_name": found.owner_name,
        }
        activity = LogActivity(
            activity="email",
            direction="out",
            deal=found.deal_id,
            contact=found.contact_id,
            summary=sent.subject,
            payload={
                "email": {k: v for k, v in letter.items() if k != "text"} | {"text": sent.text}
            },
        )
        queued = QueueNotification(
            key=outbox_key(message_id),
            notifier=NOTIFIER,
            address=found.to,
            template=None,
            context=letter,
            deal_id=found.deal_id,
            user_id=found.owner_id,
        )
        return DealLetter(message_id=message_id, to=found.to, activity=activity, queued=queued)

    async def draft(
        self, conn: Any, deal_id: int, fields: Mapping[str, Any], viewer: int | None = None
    ) -> DealLetter:
        """The letter the API would write for this body (``subject``, ``text``, ``to``), for
        callers outside HTTP (``hub deals email``): raises pydantic's ValidationError for a
        body the API refuses, :class:`NotFound` and :class:`Refused` as :func:`addressed`.
        Write its ``changes`` through the writer; the hub's sender delivers it."""
        sent = DealEmail.model_validate({k: v for k, v in fields.items() if v is not None})
        return self.letter(await addressed(conn, deal_id, sent, viewer), sent)

    async def send(self, message: Message) -> Sent:
        try:
            to = email_address(message.address, "recipient")
        except ValueError as error:
            raise Undeliverable(str(error)) from None
        letter = self.compose(message)
        if self._tls is None and self.config.security != "none":
            self._tls = await asyncio.to_thread(tls_context, self.config)
        if self._hostname is None:
            self._hostname = await asyncio.to_thread(socket.getfqdn)
        try:
            async with session(self.config, self._tls, self._hostname) as client:
                await client.send_message(letter, sender=self.config.sender, recipients=[to])
        except Exception as error:
            raise send_failure(error, self.config) from error
        return Sent(provider_id=str(letter["Message-ID"]))


async def post_email(request: web.Request) -> web.Response:
    """``POST /api/v1/deals/{id}/emails``: 201 with the letter's Message-ID and activity."""
    hub = request.app[HUB_KEY]
    deal_id = path_id(request)
    sent = await body(request, DealEmail)
    async with hub.store.read() as conn:
        try:
            found = await addressed(conn, deal_id, sent, scope(request))
        except NotFound:
            raise Problem(404, f"deal {deal_id} not found") from None
        except Refused as refused:
            raise Problem(422, str(refused)) from None
    if NOTIFIER not in hub.notifiers:
        raise Problem(503, "sending mail is not configured ([plugins.email_inbound.smtp])")
    sender: DealMail = hub.notifiers[NOTIFIER]  # type: ignore[assignment]
    letter = sender.letter(found, sent)

    async def respond(_conn: Any) -> tuple[int, Any]:
        return 201, letter.result()

    return await write(request, letter.changes, respond)


@dataclass(frozen=True, slots=True)
class Addressed:
    """Where a letter from a deal goes: the deal, its contact's address, the thread."""

    deal_id: int
    contact_id: int | None
    owner_id: int | None
    owner_name: str | None
    to: str
    in_reply_to: str | None


@dataclass(frozen=True, slots=True)
class DealLetter:
    """A letter from a deal, ready for the writer: the outgoing ``email`` activity and the
    outbox row that sends it, written in one batch (``changes``)."""

    message_id: str
    to: str
    activity: LogActivity
    queued: QueueNotification

    @property
    def changes(self) -> list[Any]:
        return [self.activity, self.queued]

    @property
    def key(self) -> str:
        """The outbox row's key: how its state is found after the write."""
        return self.queued.key

    def result(self) -> dict[str, Any]:
        """What the API answers (after the write, when the activity has its id)."""
        return {"message_id": self.message_id, "to": self.to, "activity_id": self.activity.id}


async def addressed(conn: Any, deal_id: int, sent: DealEmail, viewer: int | None) -> Addressed:
    """The deal (``viewer``: only a deal of this owner) and the address to write to: ``to``,
    else its contact's email. :class:`NotFound` without such a deal, :class:`Refused` without
    an address."""
    deal = (
        await conn.execute(
            select(Deal.id, Deal.contact_id, Deal.owner_id, User.name.label("owner_name"))
            .outerjoin(User, User.id == Deal.owner_id)
            .where(Deal.id == deal_id)
        )
    ).first()
    if deal is None or (viewer is not None and deal.owner_id != viewer):
        raise NotFound("deal", deal_id)
    to = sent.to or await _contact_email(conn, deal.contact_id)
    if to is None:
        raise Refused([Refusal(None, NO_ADDRESS, field="to")])
    return Addressed(
        deal_id=deal_id,
        contact_id=deal.contact_id,
        owner_id=deal.owner_id,
        owner_name=deal.owner_name,
        to=to,
        in_reply_to=await _last_received(conn, deal_id),
    )


async def _contact_email(conn: Any, contact_id: int | None) -> str | None:
    if contact_id is None:
        return None
    return (
        await conn.execute(
            select(ContactPoint.value)
            .where(ContactPoint.contact_id == contact_id, ContactPoint.kind == "email")
            .order_by(ContactPoint.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def _last_received(conn: Any, deal_id: int) -> str | None:
    """The Message-ID of the client's last letter on the deal, to answer it in its thread."""
    rows = await conn.execute(
        select(Activity.payload)
        .where(Activity.deal_id == deal_id, Activity.kind == "email", Activity.direction == "in")
        .order_by(Activity.occurred_at.desc(), Activity.id.desc())
        .limit(1)
    )
    row = rows.first()
    email = (row.payload or {}).get("email", {}) if row else {}
    return email.get("message_id")
