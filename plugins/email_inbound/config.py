"""Settings of the inbound email channel: ``[plugins.email_inbound]`` and its mailboxes."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.config import Credential, Duration, Settings, is_loopback, weak_secrets
from plugins.email_notify.config import EmailNotifyConfig

# The port each way of securing the connection is usually served on.
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class Route(BaseModel):
    """Where a new sender's letter makes its deal: a mailbox's, or an SMTP recipient's."""

    model_config = ConfigDict(extra="forbid")

    # Default: the default pipeline, its first stage.
    pipeline: str | None = None
    stage: str | None = None
    source: str = "Email"

    @model_validator(mode="after")
    def _configured(self, info: ValidationInfo) -> Route:
        settings = (info.context or {}).get("settings")
        if isinstance(settings, Settings):
            key = self.pipeline or settings.default_pipeline
            pipeline = settings.pipelines.get(key)
            if pipeline is None:
                raise ValueError(f"pipeline {key!r} is not configured under [pipelines]")
            if self.stage and not any(
                s.key == self.stage and s.kind == "open" for s in pipeline.stages
            ):
                raise ValueError(f"stage {self.stage!r} is not an open stage of pipeline {key!r}")
        return self


class MailboxConfig(Route):
    """``[plugins.email_inbound.mailboxes.NAME]``: one IMAP folder read for requests."""

    host: str
    port: int | None = Field(None, ge=1, le=65535)  # default: 993 with tls, 143 otherwise
    # tls: TLS from the first byte (993); starttls: a plain connection upgraded before login;
    # none: no encryption, for a server on this machine only.
    security: Literal["tls", "starttls", "none"] = "tls"
    user: str
    password: Credential  # HUB__PLUGINS__EMAIL_INBOUND__MAILBOXES__NAME__PASSWORD
    folder: str = "INBOX"
    # pipeline, stage, source: where a new sender's mail makes its deal (see Route).
    # The first connection to a mailbox takes only mail received on or after this date
    # (default: the day it is first connected), not years of old mail.
    since: date | None = None
    # What to do with a message on the server once it is stored: flag it \Seen, move it to
    # ``move_to``, or leave it as it is.
    after_storing: Literal["seen", "move", "leave"] = "seen"
    move_to: str | None = None
    idle: bool = True  # wait with IDLE where the server offers it; else poll
    poll_interval: Duration = timedelta(seconds=60)
    timeout: Duration = timedelta(seconds=30)  # one IMAP command
    validate_certs: bool = True

    @field_validator("host", "user", "folder")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("poll_interval")
    @classmethod
    def _poll(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MailboxConfig:
        if self.after_storing == "move" and not self.move_to:
            raise ValueError('after_storing = "move" needs move_to (a folder name)')
        return self

    @property
    def imap_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


class SmtpRecipient(Route):
    """``[plugins.email_inbound.smtp_intake.recipients.NAME]``: addresses the listener takes
    mail for, and where a new sender's letter to them makes its deal."""

    # "sales@firm.ru", or "@firm.ru" for every address of the domain.
    addresses: list[str] = Field(min_length=1)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        out = []
        for address in value:
            address = address.strip().lower()
            _, at, domain = address.rpartition("@")
            if not at or not domain or "." not in domain or " " in address:
                raise ValueError(f"{address!r}: write an address (sales@firm.ru) or @firm.ru")
            out.append(address)
        return out


LOOPBACK = ["127.0.0.0/8", "::1/128"]


class SmtpIntakeConfig(BaseModel):
    """``[plugins.email_inbound.smtp_intake]``: an SMTP listener taking forwarded mail into
    the same intake as the mailboxes (for setups that forward instead of exposing IMAP)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=0, le=65535)  # 0: any free port (tests)
    hostname: str | None = None  # the name in the greeting; default: this machine's name
    # Bytes; a larger letter is refused with 552 (announced in EHLO as SIZE). Default: the
    # plugin's max_message.
    max_message: int | None = Field(None, ge=64 * 1024)
    # Who may hand over mail without AUTH: hosts or networks (the forwarding MTA).
    allow_from: list[IPvAnyNetwork] = Field(
        default_factory=lambda: list(LOOPBACK), validate_default=True
    )
    # AUTH PLAIN/LOGIN accounts, user = password, for senders outside allow_from.
    users: dict[str, SecretStr] = {}
    # STARTTLS with this certificate and key (PEM); without them, no STARTTLS.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_tls: bool = False  # refuse MAIL before STARTTLS
    auth_require_tls: bool = True  # offer AUTH only after STARTTLS
    timeout: Duration = timedelta(minutes=5)  # a silent session is closed
    recipients: dict[str, SmtpRecipient] = {}

    @field_validator("recipients")
    @classmethod
    def _names(cls, value: dict[str, SmtpRecipient]) -> dict[str, SmtpRecipient]:
        seen: dict[str, str] = {}
        for name, recipient in value.items():
            if not _NAME.match(name):
                raise ValueError(f"{name!r}: name a recipient with a-z, 0-9, _ or - (e.g. sales)")
            for address in recipient.addresses:
                if address in seen:
                    raise ValueError(f"{address!r} is in both {seen[address]!r} and {name!r}")
                seen[address] = name
        return value

    @model_validator(mode="after")
    def _safe(self) -> SmtpIntakeConfig:
        if not self.enabled:
            return self
        if not self.recipients:
            raise ValueError(
                "name the addresses it takes mail for: [plugins.email_inbound.smtp_intake."
                'recipients.sales] addresses = ["sales@firm.ru"]'
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("STARTTLS needs both tls_cert and tls_key")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{str(path)!r} is not a readable file")
        if self.require_tls and self.tls_cert is None:
            raise ValueError("require_tls needs tls_cert and tls_key")
        if self.users and self.auth_require_tls and self.tls_cert is None:
            raise ValueError(
                "AUTH is offered only after STARTTLS: set tls_cert and tls_key, or "
                "auth_require_tls = false (a trusted network only)"
            )
        if not self.allow_from and not self.users:
            raise ValueError(
                "nobody could hand over mail: list the forwarding hosts in allow_from, or "
                "add users for AUTH"
            )
        if not is_loopback(self.host):
            problems = weak_secrets(
                (f"plugins.email_inbound.smtp_intake.users.{user}", password)
                for user, password in self.users.items()
            )
            if problems:
                raise ValueError("; ".join(problems))
        return self

    def recipient(self, address: str) -> str | None:
        """The name of the recipient taking mail for ``address``, or None."""
        address = address.strip().strip("<>").lower()
        domain = "@" + address.rpartition("@")[2]
        for name, recipient in self.recipients.items():
            if address in recipient.addresses:
                return name
        for name, recipient in self.recipients.items():
            if domain in recipient.addresses:
                return name
        return None

    def allowed(self, peer: str | None) -> bool:
        """Whether the host ``peer`` may hand over mail without AUTH."""
        try:
            ip = ipaddress.ip_address((peer or "").split("%")[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allow_from)


class EmailInboundConfig(BaseModel):
    """``[plugins.email_inbound]``."""

    model_config = ConfigDict(extra="forbid")

    mailboxes: dict[str, MailboxConfig] = {}
    # Mail from these is the company's own (a colleague, a copy of a sent letter): not a lead.
    own_addresses: list[str] = []
    own_domains: list[str] = []
    # Senders never taken as leads: addresses or whole domains.
    block: list[str] = []
    # A loop guard: at most this many new leads from one sender per hour; the rest of their
    # mail is kept as activities on the last one (Odoo's alias limit is 5 per 60 minutes).
    leads_per_sender_per_hour: int = Field(5, ge=1, le=1000)
    max_attachment: int = Field(10 * 1024 * 1024, ge=1024)  # bytes; larger parts are dropped
    max_message: int = Field(25 * 1024 * 1024, ge=64 * 1024)  # bytes; larger are refused
    # The SMTP account mail sent from a deal goes out through (POST /api/v1/deals/{id}/emails);
    # its sender should be a mailbox above, so the client's reply comes back to the deal.
    # The same keys as [plugins.email_notify]. Without it, deals cannot send mail.
    smtp: EmailNotifyConfig | None = None
    smtp_intake: SmtpIntakeConfig = SmtpIntakeConfig()

    @field_validator("mailboxes")
    @classmethod
    def _names(cls, value: dict[str, MailboxConfig]) -> dict[str, MailboxConfig]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r}: name a mailbox with a-z, 0-9, _ or - (e.g. sales)")
        return value

    @field_validator("own_addresses", "own_domains", "block")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.strip().lower().lstrip("@") for v in value if v.strip()]

    def route(self, payload: Mapping[str, Any]) -> Route | None:
        """Where a stored letter's new deal goes: its SMTP recipient's or its mailbox's."""
        if payload.get("via") == "smtp":
            return self.smtp_intake.recipients.get(payload.get("recipient", ""))
        return self.mailboxes.get(payload.get("mailbox", ""))
