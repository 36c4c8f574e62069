"""Settings of outgoing webhooks: ``[plugins.webhooks]`` and one ``[[plugins.webhooks.endpoints]]``
table per receiver."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yarl import URL

from hub.config import Duration, Settings, is_loopback

SECRET_PREFIX = "whsec_"
# Standard Webhooks: a symmetric signing secret is random, 24 to 64 bytes (192 to 512 bits).
SECRET_BYTES = (24, 64)
# The example config's secret decodes to this; it is refused where the hub listens beyond
# this machine, as every example secret is (hub.config.weak_secrets).
EXAMPLE_SECRET = b"change-me"
GENERATE = (
    "generate one with: python -c "
    "\"import os,base64;print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Standard Webhooks' event types are full-stop delimited [a-zA-Z0-9_] identifiers; "*" is a
# wildcard for any run of characters ("deal.*", "*.created", "*").
_PATTERN = re.compile(r"^[A-Za-z0-9_.*]{1,100}$")


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for (the base64 after the prefix)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    # Unpadded base64 is accepted, as the reference implementations accept it.
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


class Endpoint(BaseModel):
    """One receiver of webhooks."""

    model_config = ConfigDict(extra="forbid")

    name: str  # what the status, the logs and triggers' "webhook:NAME" call it
    url: str
    secret: SecretStr
    events: list[str] = ["*"]
    enabled: bool = True
    # To switch on again an endpoint disabled after days of failures or a 410: failures of
    # webhooks queued before this time are forgiven (an ISO time with its offset).
    enabled_since: datetime | None = None

    @field_validator("enabled_since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("write the time with its offset, e.g. 2026-11-25T18:00:00+03:00")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not an endpoint name: use 1 to 64 letters, digits, _ or -"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = URL(value)
        except ValueError:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"{value!r} is not an http(s) address such as https://example.com/hooks"
            )
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        # Never repeat the secret in the message: config errors are logged and shown.
        raw = value.get_secret_value().strip()
        if not raw.startswith(SECRET_PREFIX):
            raise ValueError(f"must start with {SECRET_PREFIX} followed by base64; {GENERATE}")
        try:
            key = secret_bytes(raw)
        except (binascii.Error, ValueError):
            raise ValueError(f"the part after {SECRET_PREFIX} is not base64; {GENERATE}") from None
        low, high = SECRET_BYTES
        if not low <= len(key) <= high:
            raise ValueError(
                f"decodes to {len(key)} bytes; Standard Webhooks asks for {low} to {high}; "
                f"{GENERATE}"
            )
        settings = (info.context or {}).get("settings")
        if (
            (info.context or {}).get("enabled", True)  # a switched-off plugin's example is fine
            and key.startswith(EXAMPLE_SECRET)
            and isinstance(settings, Settings)
            and not is_loopback(settings.hub.host)
        ):
            raise ValueError(
                f"still the example value, and hub.host {settings.hub.host!r} is reachable "
                f"from other machines; {GENERATE}"
            )
        return SecretStr(raw)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('subscribe to at least one event type, or ["*"] for all')
        bad = [p for p in value if not _PATTERN.match(p)]
        if bad:
            raise ValueError(
                f'not an event type: {", ".join(map(repr, bad))} (e.g. "deal.won", "deal.*", "*")'
            )
        return value


class WebhooksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[Endpoint] = []
    # Standard Webhooks recommends waiting 15 to 30 s for the receiver's answer.
    timeout: Duration = timedelta(seconds=15)
    # At most this many deliveries in flight at once, over all endpoints.
    concurrency: int = Field(8, ge=1, le=100)
    # A delivery that keeps failing is retried with backoff this long after it was queued.
    retry_for: Duration = timedelta(days=3)
    # An endpoint with no successful delivery this long after a failure is disabled.
    disable_after: Duration = timedelta(days=5)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(minutes=2):
            raise ValueError("must be between 1s and 2m (Standard Webhooks suggests 15s to 30s)")
        return value

    @field_validator("retry_for")
    @classmethod
    def _retry_for(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=24):
            raise ValueError(
                "must be at least 24h: a receiver down overnight must still get its webhooks"
            )
        return value

    @field_validator("disable_after")
    @classmethod
    def _disable_after(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError("must be at least 1h")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> WebhooksConfig:
        names = [e.name for e in self.endpoints]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"endpoints: more than one endpoint named {', '.join(twice)}")
        return self
