"""Notifications: a durable outbox and the notifiers that deliver it.

Whatever decides that someone should hear about something (a trigger, a stage's
actions on enter, an escalation, a digest, a webhook subscription) queues a
:class:`~hub.deals.changes.QueueNotification` through the deal store's writer, in
the same transaction as the event that caused it. The row carries an idempotency
key, so queueing the same thing twice queues it once.

A sender loop (:mod:`hub.notify.sender`) claims due rows, renders each from its
template (:mod:`hub.notify.templates`) into a :class:`Message`, hands it to the
notifier plugin named on the row (``hub_notifiers``), and records what happened:

- :class:`Sent` (with the provider's message id where it gives one): done;
- :class:`RetryLater`: tried again after the given delay or with backoff and
  jitter, until the notifier's ``retry_for`` has passed; then failed;
- :class:`Undeliverable`: failed at once (a blocked bot, a rejected address).

A row claimed by a process that died before recording the result is resolved by
the notifier's ``resend_interrupted``: a channel whose receiver drops repeats
(Standard Webhooks' ``webhook-id``) sends it again; one that cannot tell a repeat
(SMTP, Telegram) marks it ``review`` for a person to look at (``hub notifications
list --review`` / ``retry ID``) instead of sending anyone the same message twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a notification is for, as the config names them: a user of the hub (by id
    and the user's config), or a named address a notifier knows (``chat:sales``)."""

    user_id: int | None
    email: str | None = None
    telegram_chat_id: str | None = None
    name: str | None = None  # a named destination: the part after "chat:" / "webhook:"


@dataclass(frozen=True, slots=True)
class Message:
    """One notification, rendered, as a notifier sends it."""

    id: int  # the outbox row
    key: str  # idempotency key, the same on every attempt (Standard Webhooks' webhook-id)
    notifier: str  # the notifier plugin's name: "telegram", "email", "webhooks"
    address: str  # chat id, email address, endpoint name: what the notifier resolved
    subject: str  # one line
    text: str  # plain text
    html: str  # a full HTML body (email's HTML part)
    link: str | None  # the deal's page, where there is one
    event_type: str | None  # the domain event that caused it ("deal.lost"), if any
    data: dict[str, Any] = field(default_factory=dict)  # the JSON a webhook posts
    # Every block the template rendered, for a notifier with a format of its own:
    # "telegram" (Telegram's HTML subset: b, i, u, s, a, code, pre, blockquote; no <br>).
    blocks: dict[str, str] = field(default_factory=dict)
    attempt: int = 1
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str | None = None


class RetryLater(Exception):
    """A transient failure (timeout, 5xx, 429): try again, after ``after`` if the
    provider said when (Telegram's ``retry_after``, an HTTP Retry-After)."""

    def __init__(self, reason: str, after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class Undeliverable(Exception):
    """A permanent failure: retrying cannot help (4xx other than 408/429, an unknown chat)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Notifier(Protocol):
    """What a notifier plugin returns from ``hub_notifiers``.

    ``name`` is what triggers write in ``via``; ``address(recipient)`` is where this
    notifier would deliver to that recipient (None: it cannot reach them, e.g. a user
    without a Telegram chat id), decided when the notification is queued.
    """

    name: str
    # Keep retrying a transient failure this long after the notification was queued.
    retry_for: timedelta
    # A send cut off by a crash: send again (the receiver drops repeats) or hold for review.
    resend_interrupted: bool
    # At most this many sends of this notifier in flight at once.
    concurrency: int

    def address(self, recipient: Recipient) -> str | None: ...

    async def send(self, message: Message) -> Sent:
        """Deliver ``message``; raise RetryLater or Undeliverable when it was not delivered."""
        ...
