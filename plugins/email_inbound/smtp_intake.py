"""An SMTP listener for mail forwarded to the hub (``aiosmtpd``), into the mailboxes' intake.

For setups that forward sales@ to the hub instead of letting it read the mailbox over
IMAP. Off unless ``[plugins.email_inbound.smtp_intake] enabled = true``; it runs as the
plugin's background task, on the hub's event loop, so it starts and stops with the
plugin (and a port that cannot be bound fails the plugin, retried with backoff).

A session goes:

- ``MAIL FROM`` from a host in ``allow_from``, or after ``AUTH`` as one of ``users``;
  anyone else gets 530 (AUTH is possible) or 554, so the hub is nobody's relay;
- ``RCPT TO`` an address of one of ``recipients`` (an address, or ``@domain``); another
  address gets 550. The first recipient named says where a new sender's deal goes;
- ``DATA`` up to ``max_message`` bytes (announced as ``SIZE``; more gets 552); the letter
  is stored as a mailbox's is (the attachment store, synced, then the intake, committed,
  keyed by its Message-ID or a hash of its bytes) and only then answered 250. When it
  cannot be stored the answer is 451, so the sending server keeps it and tries again;
  the same letter sent again is stored once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from hub.intake import Accepted, IntakeClosed, UnstorableEvent
from plugins.email_inbound.config import SmtpIntakeConfig

log = structlog.get_logger("plugins.email_inbound")


@dataclass(frozen=True, slots=True)
class Forwarded:
    """Where a letter came from over SMTP."""

    recipient: str  # the name of the recipient in the config
    mail_from: str
    rcpt_to: tuple[str, ...]
    peer: str | None
    user: str | None  # who authenticated, if anyone


# keep(raw letter, how it came) -> the intake's answer, once it is stored durably
KeepForwarded = Callable[[bytes, Forwarded], Awaitable[Accepted]]


class SmtpIntake:
    """The listener: its settings, its server while it runs, the sessions it holds."""

    def __init__(self, config: SmtpIntakeConfig, max_message: int, keep: KeepForwarded) -> None:
        self.config = config
        self.max_message = config.max_message or max_message
        self.keep = keep
        self.state = "stopped"
        self.port: int | None = None  # the port bound (port = 0 binds any free one)
        self._sessions: set[_Session] = set()

    async def run(self) -> None:
        """Listen until cancelled; raises when the port cannot be bound (the host retries)."""
        config = self.config
        loop = asyncio.get_running_loop()
        library_log = logging.getLogger("mail.log")  # aiosmtpd's: lines per command, per session
        if library_log.level == logging.NOTSET:
            library_log.setLevel(logging.WARNING)  # our own lines say what was taken or refused
        tls = self._tls()
        hostname = config.hostname or socket.gethostname()  # getfqdn() may wait for DNS
        handler = _Handler(self)

        def session() -> _Session:
            return _Session(
                self,
                handler,
                data_size_limit=self.max_message,
                enable_SMTPUTF8=True,
                hostname=hostname,
                ident="crm-hub",
                tls_context=tls,
                require_starttls=config.require_tls,
                timeout=config.timeout.total_seconds(),
                auth_require_tls=config.auth_require_tls,
                authenticator=self._authenticate if config.users else None,
                loop=loop,
            )

        server = await loop.create_server(session, host=config.host, port=config.port)
        self.port = server.sockets[0].getsockname()[1]
        self.state = "listening"
        log.info("smtp_intake_listening", host=config.host, port=self.port, tls=tls is not None)
        try:
            await asyncio.Event().wait()  # until the plugin stops
        finally:
            server.close()
            for open_session in list(self._sessions):
                open_session.close()
            await server.wait_closed()
            self.state = "stopped"
            log.info("smtp_intake_stopped", port=self.port)

    def _tls(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None or self.config.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = data.login.decode("utf-8", "replace")
        expected = self.config.users.get(user)
        given = data.password
        ok = expected is not None and hmac.compare_digest(
            expected.get_secret_value().encode(), given
        )
        if not ok:
            log.warning("smtp_intake_auth_refused", user=user, peer=_peer(session))
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)


class _Session(SMTP):
    """One client's session; says plainly why a letter is too large."""

    def __init__(self, intake: SmtpIntake, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._intake = intake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._intake._sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._intake._sessions.discard(self)
        super().connection_lost(error)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith(
            "552 Error"
        ):  # aiosmtpd's own, for SIZE= and for the data
            status = (
                f"552 5.3.4 The letter is larger than the {self._intake.max_message} bytes "
                "this hub takes"
            )
        await super().push(status)


class _Handler:
    """What aiosmtpd asks at each step of a session."""

    def __init__(self, intake: SmtpIntake) -> None:
        self.intake = intake
        self.config = intake.config

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not (session.authenticated or self.config.allowed(_peer(session))):
            log.warning("smtp_intake_sender_refused", peer=_peer(session), mail_from=address)
            if self.config.users:
                return "530 5.7.0 Authentication required"
            return f"554 5.7.1 {_peer(session)} may not hand mail to this hub"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.config.recipient(address) is None:
            log.info("smtp_intake_recipient_refused", peer=_peer(session), rcpt_to=address)
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > self.intake.max_message:  # aiosmtpd counts line by line; be exact
            return f"552 5.3.4 The letter is larger than the {self.intake.max_message} bytes"
        names = [self.config.recipient(a) for a in envelope.rcpt_tos]
        forwarded = Forwarded(
            recipient=next(n for n in names if n is not None),
            mail_from=envelope.mail_from or "",
            rcpt_to=tuple(envelope.rcpt_tos),
            peer=_peer(session),
            user=session.auth_data if session.authenticated else None,
        )
        try:
            accepted = await self.intake.keep(raw, forwarded)
        except IntakeClosed:
            return "451 4.3.2 The hub is shutting down; try again later"
        except UnstorableEvent as error:
            return f"554 5.6.0 The letter cannot be stored: {error}"
        except Exception as error:
            log.error("smtp_intake_store_failed", peer=forwarded.peer, exc_info=error)
            return "451 4.3.0 The letter could not be stored; try again later"
        if accepted.duplicate:
            return f"250 2.0.0 Already stored as event {accepted.id}"
        return f"250 2.0.0 Stored as event {accepted.id}"


def _peer(session: Session) -> str | None:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer) if peer else None
