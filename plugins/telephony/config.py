"""Settings of the telephony channel: ``[plugins.telephony]``."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from hub.config import Duration

# What a PBX can dial: an extension, a queue, a ring group, an IVR (digits, letters, *, #, -, _).
_ROUTE = re.compile(r"^[A-Za-z0-9*#_-]{1,20}$")
MIN_ROUTE_TOKEN = 16  # as the API's tokens; 32+ where the hub listens beyond this machine


class TelephonyConfig(BaseModel):
    """``[plugins.telephony]``; every key is optional."""

    model_config = ConfigDict(extra="forbid")

    # Where the PBX sends a caller the hub cannot route to their owner's extension: an
    # unknown number, an owner without an extension, a lookup past the deadline.
    default_route: str = "0"
    # How long GET /telephony/route may look for the owner before answering default_route.
    route_deadline: Duration = timedelta(milliseconds=300)
    # The shared secret a PBX sends (X-Hub-Token header or ?token=) to GET /telephony/route;
    # without one the route is not served. The caller card uses the API's bearer tokens.
    route_token: SecretStr | None = None

    @field_validator("default_route")
    @classmethod
    def _dialable(cls, value: str) -> str:
        if not _ROUTE.match(value):
            raise ValueError(
                f"{value!r} is not something a PBX dials: use 1 to 20 digits, letters, *, #, - or _"
            )
        return value

    @field_validator("route_deadline")
    @classmethod
    def _sane_deadline(cls, value: timedelta) -> timedelta:
        if not timedelta(milliseconds=10) <= value <= timedelta(seconds=10):
            raise ValueError("must be between 10ms and 10s (a ringing caller does not wait long)")
        return value

    @field_validator("route_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ROUTE_TOKEN:
            raise ValueError(f"must be at least {MIN_ROUTE_TOKEN} characters")
        return value
