"""A real SMTP server on loopback (aiosmtpd), as the email notifier meets one."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from hub.notify import Message
from plugins.email_notify import EmailNotifier
from plugins.email_notify.config import EmailNotifyConfig

USER = "crm@example.ru"
PASSWORD = "app-password-0f3e9a"
SENDER = "crm@example.ru"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated: bool
    starttls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Mailbox:
    """The server's side: what arrived, and the replies it gives some recipients."""

    received: list[Received] = field(default_factory=list)
    # recipient -> the reply to RCPT TO (instead of 250)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    # recipient -> the reply to the message (instead of 250), after DATA
    data_replies: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for address in envelope.rcpt_tos:
            if address in self.data_replies:
                return self.data_replies[address]
        assert isinstance(envelope.content, bytes)
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                data=envelope.content,
                authenticated=bool(session.authenticated),
                starttls=session.ssl is not None,
            )
        )
        return "250 2.0.0 Ok: queued"


class LoopbackServer(Controller):
    """aiosmtpd's threaded controller on a free port of 127.0.0.1 (port=0 is taken as it is
    bound, before the controller's own readiness probe connects)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=0, **kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def accept_one_user(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp_server(mailbox: Mailbox) -> Iterator[Callable[..., LoopbackServer]]:
    """Start a server with aiosmtpd's options (``require_starttls``, ``authenticator`` ...);
    stopped after the test."""
    started: list[LoopbackServer] = []

    def start(**options: Any) -> LoopbackServer:
        server = LoopbackServer(mailbox, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def notifier(port: int, **options: Any) -> EmailNotifier:
    config = EmailNotifyConfig.model_validate(
        {"host": "127.0.0.1", "port": port, "security": "none", "sender": SENDER, **options}
    )
    return EmailNotifier(config)


def notification(address: str = "anna@example.com", **fields: Any) -> Message:
    values: dict[str, Any] = {
        "id": 1,
        "key": "deal.lost:42:anna",
        "notifier": "email",
        "address": address,
        "subject": "Сделка «Поставка труб» проиграна",
        "text": "Сделку «Поставка труб» закрыли как проигранную.\nПричина: цена.",
        "html": "<p>Сделку <b>«Поставка труб»</b> закрыли как проигранную.</p>",
        "link": "https://crm.example.ru/deals/42",
        "event_type": "deal.lost",
        **fields,
    }
    return Message(**values)
