"""What a campaign gateway plugin is: how one message of a campaign leaves the hub.

A plugin returns gateways from ``hub_campaign_gateways``. The campaign sender
claims outbox rows at the gateway's ``rate``, hands each to :meth:`Gateway.send`
as an :class:`Outgoing`, and records what came back:

- :class:`Accepted` (the provider's message id): ``sent``; delivery reports later
  move it to ``delivered`` or ``failed``;
- :class:`Transient` (timeout, 5xx, 429 with Retry-After): retried with backoff;
- :class:`Permanent` (a rejected number, no money on the account): ``failed``.

A row claimed by a process that died before the result was recorded is resolved
by :meth:`Gateway.find` (the provider's status query by our own message id):
found means sent, :data:`NOT_THERE` means it never arrived and is sent again, and
``None`` (the provider cannot tell) holds it for review: nobody gets an
advertisement twice.

Delivery reports (a provider's callback or a status poll) and replies (an SMS
"СТОП") come back through :class:`CampaignDesk`, which the plugin reaches as
``hub.campaigns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

Channel = Literal["sms", "email"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One rendered message of a campaign, as the gateway sends it."""

    id: int  # the outbox row
    key: str  # "campaign:<id>:contact:<id>:<channel>": the same on every attempt
    campaign_id: int
    contact_id: int
    channel: Channel
    address: str  # E.164 phone ("+79161234567") or an email address
    text: str  # the SMS, or the email's plain-text part
    subject: str = ""  # email only
    html: str = ""  # email only
    # Headers the email must carry (List-Unsubscribe, List-Unsubscribe-Post).
    headers: dict[str, str] = field(default_factory=dict)
    sender: str | None = None  # the campaign's sender name or address, if it sets one
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the message."""

    provider_id: str | None
    parts: int | None = None  # SMS parts the provider counted
    cost: Decimal | None = None


class Transient(Exception):
    """Try again later: after ``after`` when the provider said (Retry-After)."""

    def __init__(self, reason: str, after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class Permanent(Exception):
    """Retrying cannot help. ``code`` is the provider's, ``reason`` says it in words."""

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What the provider says became of a message it accepted."""

    provider_id: str
    state: Literal["sent", "delivered", "failed"]
    error: str | None = None  # the provider's code in words ("абонент недоступен")
    at: datetime | None = None


class _NotThere:
    def __repr__(self) -> str:
        return "NOT_THERE"


# find(): the provider has no such message, so it never left and may be sent again.
NOT_THERE = _NotThere()


@runtime_checkable
class Gateway(Protocol):
    name: str  # "smsru", "smsc", "email"
    channel: Channel
    rate: float  # messages per second this gateway may be given, at most
    concurrency: int  # sends in flight at once

    async def send(self, message: Outgoing) -> Accepted:
        """Send; raise Transient or Permanent when the provider did not take it."""
        ...

    async def find(self, message: Outgoing) -> Accepted | _NotThere | None:
        """After a crash: did ``message`` reach the provider? None when it cannot tell."""
        ...

    async def status(self, provider_ids: Sequence[str]) -> list[DeliveryReport]:
        """Poll delivery for messages sent earlier; [] where reports come by callback."""
        ...


class CampaignDesk(Protocol):
    """What a gateway plugin tells the hub (``hub.campaigns``)."""

    async def delivered(self, gateway: str, reports: Sequence[DeliveryReport]) -> int:
        """Record delivery reports (stored before this returns); the number of rows moved."""
        ...

    async def opted_out(self, channel: Channel, address: str, *, source: str) -> int:
        """A STOP reply or a hard bounce from ``address``: withdraw its consent for
        ``channel``. Returns the number of contacts it withdrew."""
        ...
