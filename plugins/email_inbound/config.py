"""Settings of the inbound email channel: ``[plugins.email_inbound]`` and its mailboxes."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from hub.config import Credential, Duration, Settings
from plugins.email_notify.config import EmailNotifyConfig

# The port each way of securing the connection is usually served on.
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class MailboxConfig(BaseModel):
    """``[plugins.email_inbound.mailboxes.NAME]``: one IMAP folder read for requests."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int | None = Field(None, ge=1, le=65535)  # default: 993 with tls, 143 otherwise
    # tls: TLS from the first byte (993); starttls: a plain connection upgraded before login;
    # none: no encryption, for a server on this machine only.
    security: Literal["tls", "starttls", "none"] = "tls"
    user: str
    password: Credential  # HUB__PLUGINS__EMAIL_INBOUND__MAILBOXES__NAME__PASSWORD
    folder: str = "INBOX"
    # Where a new sender's mail makes its deal (default: the default pipeline, first stage).
    pipeline: str | None = None
    stage: str | None = None
    source: str = "Email"
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
    def _consistent(self, info: ValidationInfo) -> MailboxConfig:
        if self.after_storing == "move" and not self.move_to:
            raise ValueError('after_storing = "move" needs move_to (a folder name)')
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

    @property
    def imap_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


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
