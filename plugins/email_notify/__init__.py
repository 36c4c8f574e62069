"""Email notifier: the outbox's notifications as mail through the team's SMTP server.

One notifier, ``email``, reaching every user with an email address. Each send is
one SMTP session (connect, STARTTLS or TLS, login, the message, quit); the sender
loop bounds how many run at once (``concurrency``). A message carries the same
Message-ID on every attempt, derived from the notification's key, and
``Auto-Submitted: auto-generated`` so autoresponders stay quiet. SMTP cannot tell
a repeat, so a send cut off by a crash is held for review, not sent again.

At start the plugin connects and logs in once: refused credentials stop it
(``auth_failed``), a server that is not there yet leaves it ``not_ready``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from hub.hookspecs import hookimpl
from hub.logging import debug_enabled
from hub.notify import Message, Notifier, Recipient, RetryLater, Sent, Undeliverable
from hub.plugins import PluginConfigError
from plugins.email_notify.campaigns import CampaignMail
from plugins.email_notify.config import EmailNotifyConfig, email_address
from plugins.email_notify.letter import compose
from plugins.email_notify.smtp import send_failure, session, startup_failure, tls_context

if TYPE_CHECKING:
    from hub.context import Hub

log = structlog.get_logger("plugins.email_notify")


class EmailNotifier:
    """Notifications by email."""

    Config = EmailNotifyConfig

    name = "email"
    resend_interrupted = False  # SMTP cannot tell a repeat: a cut-off send goes to review

    def __init__(self, config: EmailNotifyConfig, hub: Hub | None = None) -> None:
        self.config = config
        self.retry_for: timedelta = config.retry_for
        self.concurrency: int = config.concurrency
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None
        self.campaigns = CampaignMail(config, self._session_needs)

    # -- hooks ----------------------------------------------------------------------------

    @hookimpl
    def hub_notifiers(self) -> list[Notifier]:
        return [self]

    @hookimpl
    def hub_campaign_gateways(self) -> list[CampaignMail]:
        return [self.campaigns]

    @hookimpl
    async def hub_shutdown(self) -> None:
        await self.campaigns.close()

    @hookimpl
    async def hub_startup(self) -> None:
        """Connect and log in once, so that wrong credentials show now, not at the first send."""
        try:
            await self._prepare()
        except (OSError, ssl.SSLError) as error:
            raise PluginConfigError(f"ca_file {self.config.ca_file}: {error}") from None
        try:
            async with session(self.config, self._tls, self._local_hostname):
                pass
        except Exception as error:
            raise startup_failure(error, self.config) from None
        log.info(
            "email_ready",
            server=self.config.server,
            security=self.config.security,
            user=self.config.user,
        )

    # -- the notifier ---------------------------------------------------------------------

    def address(self, recipient: Recipient) -> str | None:
        email = (recipient.email or "").strip()
        return email or None

    async def send(self, message: Message) -> Sent:
        try:
            to = email_address(message.address, "recipient")
        except ValueError as error:
            raise Undeliverable(str(error)) from None
        letter = compose(message, to, self.config)
        message_id = str(letter["Message-ID"])
        try:
            await self._prepare()
            async with session(self.config, self._tls, self._local_hostname) as client:
                await client.send_message(letter, sender=self.config.sender, recipients=[to])
        except Exception as error:
            failure = send_failure(error, self.config)
            if debug_enabled("plugins.email_notify"):  # the sender logs the outcome itself
                log.debug(
                    "email_not_sent",
                    notification=message.id,
                    to=to,
                    retry=isinstance(failure, RetryLater),
                    reason=failure.reason,
                )
            raise failure from error
        if debug_enabled("plugins.email_notify"):
            log.debug("email_sent", notification=message.id, to=to, message_id=message_id)
        return Sent(provider_id=message_id)

    async def _session_needs(self) -> tuple[ssl.SSLContext | None, str | None]:
        await self._prepare()
        return self._tls, self._local_hostname

    async def _prepare(self) -> None:
        """What every session needs, found once: the TLS context, the name to greet with."""
        if self._tls is None and self.config.security != "none":
            self._tls = await asyncio.to_thread(tls_context, self.config)
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
