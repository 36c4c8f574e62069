"""Campaign mail through the same SMTP account: the gateway ``email``.

Unlike a notification (one session per message), a campaign keeps up to
``campaign_connections`` sessions open and reuses them from message to message; a
session the server dropped or that failed is closed and a new one opened for the next.
Each letter carries the unsubscribe headers of RFC 2369 and RFC 8058
(``List-Unsubscribe`` with the hub's one-click address, ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click``), ``Precedence: bulk`` and a Message-ID derived from the
outbox row's key. SMTP cannot say whether a message cut off by a crash went out, so
``find`` answers "cannot tell" and such a row is held for review, never sent twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib

from hub.campaigns.gateway import Accepted, DeliveryReport, Outgoing, Permanent, Transient
from hub.notify import RetryLater
from plugins.email_notify.config import EmailNotifyConfig, email_address
from plugins.email_notify.letter import POLICY, message_id, one_line
from plugins.email_notify.smtp import connect, send_failure


class CampaignMail:
    name = "email"
    channel = "email"

    def __init__(self, config: EmailNotifyConfig, prepare: Callable[[], Any]) -> None:
        self.config = config
        self.rate = config.campaign_rate
        self.concurrency = config.campaign_connections
        self._prepare = prepare  # the notifier's TLS context and host name, found once
        self._idle: list[aiosmtplib.SMTP] = []

    def letter(self, message: Outgoing, to: str) -> EmailMessage:
        letter = EmailMessage(policy=POLICY)
        letter["From"] = Address(display_name=self.config.sender_name, addr_spec=self.config.sender)
        letter["To"] = Address(addr_spec=to)
        if self.config.reply_to:
            letter["Reply-To"] = Address(addr_spec=self.config.reply_to)
        letter["Subject"] = one_line(message.subject)
        letter["Date"] = format_datetime(datetime.now(UTC))
        letter["Message-ID"] = message_id(message.key, self.config.sender_domain)
        letter["Precedence"] = "bulk"
        for name, value in message.headers.items():
            letter[name] = value
        letter.set_content(message.text.rstrip() + "\n")
        if message.html.strip():
            letter.add_alternative(message.html, subtype="html")
        return letter

    async def send(self, message: Outgoing) -> Accepted:
        try:
            to = email_address(message.address, "recipient")
        except ValueError as error:
            raise Permanent(str(error), code="address") from None
        letter = self.letter(message, to)
        tls, hostname = await self._prepare()
        client = self._idle.pop() if self._idle else None
        try:
            if client is None or not client.is_connected:
                client = await connect(self.config, tls, hostname)
            await client.send_message(letter, sender=self.config.sender, recipients=[to])
        except Exception as error:
            if client is not None:
                client.close()
            failure = send_failure(error, self.config)
            if isinstance(failure, RetryLater):
                raise Transient(failure.reason, failure.after) from error
            raise Permanent(failure.reason) from error
        self._idle.append(client)
        return Accepted(provider_id=str(letter["Message-ID"]))

    async def find(self, message: Outgoing) -> None:
        return None  # SMTP keeps no record we can ask: a person decides

    async def status(self, provider_ids: Sequence[str]) -> list[DeliveryReport]:
        return []  # bounces come back as mail, to the inbound mailbox

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await asyncio.wait_for(client.quit(), 2)
            except Exception:
                client.close()
