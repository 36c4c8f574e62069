"""Settings of the Zadarma adapter: ``[plugins.telephony_zadarma]``."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator

from hub.config import Credential, Duration

# Zadarma issues the secret (20 characters in its cabinet); shorter is a paste gone wrong.
MIN_SECRET = 16


class ZadarmaConfig(BaseModel):
    """``[plugins.telephony_zadarma]``: the secret Zadarma signs its notifications with, and
    the API key the hub asks for recordings with."""

    model_config = ConfigDict(extra="forbid")

    # The API secret of the Zadarma account (personal account, "API" page); Zadarma signs
    # every notification with it. Or HUB__PLUGINS__TELEPHONY_ZADARMA__API_SECRET.
    api_secret: Credential
    # The clock of the account: call_start is a local "YYYY-MM-DD HH:MM:SS".
    timezone: str = "Europe/Moscow"
    # Answer NOTIFY_START with a redirect to the owner's extension for a known client.
    route_known_callers: bool = True
    # The API key of the account (the same API page, beside the secret): recordings are
    # fetched through the API with it. Without it a call's recording is still kept on its
    # activity, but cannot be played. Or HUB__PLUGINS__TELEPHONY_ZADARMA__API_KEY.
    api_key: Credential | None = None
    # Zadarma's API, and how long it may take to give a recording's link before the manager
    # is told to try again (503).
    api_url: str = "https://api.zadarma.com"
    api_timeout: Duration = timedelta(seconds=5)

    @field_validator("api_secret")
    @classmethod
    def _long_enough(cls, value: Credential) -> Credential:
        if len(value.get_secret_value().strip()) < MIN_SECRET:
            raise ValueError(
                f"must be at least {MIN_SECRET} characters: the API secret from Zadarma's "
                "personal account, API page"
            )
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (Zadarma's API: https://api.zadarma.com)")
        return value.rstrip("/")

    @field_validator("api_timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(seconds=60):
            raise ValueError("must be above 0 and at most 60s: a manager is waiting")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not a time zone: {value!r} (e.g. Europe/Moscow)") from None
        return value
