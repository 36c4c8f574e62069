"""The inbound email channel as a plugin: its mailboxes, its filing, mail sent from a deal."""

from __future__ import annotations

import hashlib
from email import policy
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from hub.context import PluginView
from hub.hookspecs import BackgroundTask, hookimpl
from hub.intake import Accepted
from hub.notify import Notifier
from plugins.email_inbound.config import EmailInboundConfig
from plugins.email_inbound.filing import CHANNEL, MailFiling
from plugins.email_inbound.mailbox import MailboxReader, Seen
from plugins.email_inbound.sending import PATH as EMAILS_PATH
from plugins.email_inbound.sending import DealMail, post_email

if TYPE_CHECKING:
    from plugins.email_inbound.smtp_intake import Forwarded, SmtpIntake

log = structlog.get_logger("plugins.email_inbound")

_HEADERS = BytesHeaderParser(policy=policy.compat32)


def message_key(raw: bytes) -> str:
    """The intake's key for a message: its Message-ID, or a hash of its bytes without one.
    The same letter read from two mailboxes (sales@ and info@ in copy) is one event."""
    found = _HEADERS.parsebytes(raw[: 256 * 1024]).get("Message-ID")
    if found:
        text = str(found).strip().strip("<>").strip()
        if text and " " not in text:
            return f"mid:{text}"
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


class EmailInbound:
    """Mailboxes read into leads and deals; letters sent from deals."""

    Config = EmailInboundConfig

    def __init__(self, config: EmailInboundConfig, hub: PluginView) -> None:
        self.config = config
        self.hub = hub
        self.filing = MailFiling(config, hub)
        self.readers = {
            name: MailboxReader(name, mailbox, hub.intake.store, self.keep)
            for name, mailbox in config.mailboxes.items()
        }
        self.sender = DealMail(config.smtp) if config.smtp is not None else None
        self.listener: SmtpIntake | None = None
        if config.smtp_intake.enabled:
            # Imported only when enabled: a hub that reads mailboxes needs no SMTP server.
            from plugins.email_inbound.smtp_intake import SmtpIntake

            self.listener = SmtpIntake(config.smtp_intake, config.max_message, self.keep_forwarded)

    @hookimpl
    def hub_background_tasks(self) -> dict[str, BackgroundTask]:
        tasks: dict[str, BackgroundTask] = {
            f"mailbox:{name}": reader.run for name, reader in self.readers.items()
        }
        if self.listener is not None:
            tasks["smtp_intake"] = self.listener.run
        return tasks

    @hookimpl
    def hub_intake_handler(self, channel: str) -> MailFiling | None:
        return self.filing if channel == CHANNEL else None

    @hookimpl
    def hub_notifiers(self) -> list[Notifier]:
        return [self.sender] if self.sender is not None else []  # type: ignore[list-item]

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        return [web.post(EMAILS_PATH, post_email)]

    async def keep(self, raw: bytes, seen: Seen) -> None:
        """Store a message read from a mailbox; returns once it is on disk and in the intake."""
        payload: dict[str, Any] = {
            "mailbox": seen.mailbox,
            "folder": seen.folder,
            "uidvalidity": seen.uidvalidity,
            "uid": seen.uid,
            "size": len(raw),
        }
        if len(raw) > self.config.max_message:
            payload["too_large"] = True  # kept in the inbox with its reason, not its bytes
        else:
            payload["raw"] = await self.hub.attachments.save(raw)
        accepted = await self.hub.intake.accept(CHANNEL, payload, external_id=message_key(raw))
        log.debug(
            "mail_stored",
            mailbox=seen.mailbox,
            uid=seen.uid,
            event_id=accepted.id,
            duplicate=accepted.duplicate,
        )

    async def keep_forwarded(self, raw: bytes, forwarded: Forwarded) -> Accepted:
        """Store a letter handed over by SMTP; returns once it is on disk and in the intake
        (the listener refuses a letter over its size before it gets here)."""
        payload: dict[str, Any] = {
            "via": "smtp",
            "recipient": forwarded.recipient,
            "mail_from": forwarded.mail_from,
            "rcpt_to": list(forwarded.rcpt_to),
            "peer": forwarded.peer,
            "user": forwarded.user,
            "size": len(raw),
            "raw": await self.hub.attachments.save(raw),
        }
        accepted = await self.hub.intake.accept(CHANNEL, payload, external_id=message_key(raw))
        log.info(
            "mail_forwarded_stored",
            recipient=forwarded.recipient,
            peer=forwarded.peer,
            event_id=accepted.id,
            duplicate=accepted.duplicate,
        )
        return accepted
