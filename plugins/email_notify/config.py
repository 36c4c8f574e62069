"""Settings of the email notifier: ``[plugins.email_notify]``, one SMTP submission server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.config import Credential, Duration, Settings, is_loopback

# The port each way of securing the connection is usually served on.
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 587}


def email_address(value: str, key: str) -> str:
    """``value`` as the plain ASCII address SMTP can carry anywhere (an IDN domain in punycode)."""
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise ValueError(f"{key}: {value!r} is not an email address ({error})") from None
    return checked.ascii_email or checked.normalized


class EmailNotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    # 587 (submission with STARTTLS); 465 when security = "tls".
    port: int | None = Field(None, ge=1, le=65535)
    # starttls: plain connection upgraded before login; tls: TLS from the first byte (465);
    # none: no encryption, for a relay on this machine.
    security: Literal["starttls", "tls", "none"] = "starttls"
    user: str | None = None
    password: Credential | None = None  # the mail server's to judge, not the hub's
    sender: str  # the From address
    sender_name: str = "crm-hub"
    reply_to: str | None = None
    # One SMTP command (connect, login, the message) may take this long.
    timeout: Duration = timedelta(seconds=15)
    concurrency: int = Field(2, ge=1, le=32)
    # A notification the server keeps deferring (greylisting, a full mailbox) is tried this long.
    retry_for: Duration = timedelta(hours=24)
    # Campaigns (`hub campaigns`) send through this account too, as the gateway "email":
    # at most this many messages a second (a campaign may go slower), over this many
    # connections kept open between messages.
    campaign_rate: float = Field(5.0, gt=0, le=1000)
    campaign_connections: int = Field(2, ge=1, le=32)
    # For a self-hosted server: trust this CA bundle (PEM), or check no certificate at all.
    validate_certs: bool = True
    ca_file: Path | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the SMTP server's name or address is required")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return email_address(value, "sender")

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        return None if value is None else email_address(value, "reply_to")

    @field_validator("sender_name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError("must be one line")
        return value.strip()

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("retry_for")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must be 0s or longer")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        settings = (info.context or {}).get("settings")
        if (
            not value.is_absolute()
            and isinstance(settings, Settings)
            and settings.config_path is not None
        ):
            value = settings.config_path.parent / value
        if not value.is_file():
            raise ValueError(f"{str(value)!r} is not a file (a PEM bundle of CA certificates)")
        return value

    @model_validator(mode="after")
    def _login(self) -> EmailNotifyConfig:
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together: set both, or neither")
        if self.user and self.security == "none" and not is_loopback(self.host):
            raise ValueError(
                f"security = 'none' would send the password to {self.host} unencrypted; "
                "use 'starttls' or 'tls' (none is for a relay on this machine)"
            )
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]

    @property
    def server(self) -> str:
        """``host:port``, as the reasons for a failure name the server."""
        return f"{self.host}:{self.smtp_port}"
