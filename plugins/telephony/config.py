"""Settings of the telephony channel: ``[plugins.telephony]``."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import (
    BaseModel,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.config import Duration, Settings

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

    # The secret a PBX or a script signs POST /telephony/events with (X-Hub-Timestamp and
    # X-Hub-Signature-256, as the signed web forms: README, "Call events"); without one
    # the generic webhook is not served. The provider adapters have their own sections.
    webhook_secret: SecretStr | None = None
    # Where an unknown caller's call makes its contact and deal: a pipeline key of
    # [pipelines] (default: the first) and a stage key (default: its first stage).
    pipeline: str | None = None
    stage: str | None = None
    source: str = "Входящий звонок"  # the source of a deal a call made
    # A missed call asks for a call back within this time: the task's due time.
    callback_within: Duration = timedelta(minutes=15)
    # Notifiers that also get the caller card of a ringing call (["telegram"]), for the
    # owner of a known client or the manager whose extension rings; none by default.
    push_card_via: list[str] = []
    # A ringing call seen later than this (the hub was down, the intake had a backlog) is
    # filed but not shown: nobody is waiting at the phone any more.
    ring_fresh_for: Duration = timedelta(seconds=60)

    @field_validator("default_route")
    @classmethod
    def _dialable(cls, value: str) -> str:
        if not _ROUTE.match(value):
            raise ValueError(
                f"{value!r} is not something a PBX dials: use 1 to 20 digits, letters, *, #, - or _"
            )
        return value

    @field_validator("callback_within")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError('must be positive, e.g. "15m"')
        return value

    @field_validator("route_deadline")
    @classmethod
    def _sane_deadline(cls, value: timedelta) -> timedelta:
        if not timedelta(milliseconds=10) <= value <= timedelta(seconds=10):
            raise ValueError("must be between 10ms and 10s (a ringing caller does not wait long)")
        return value

    @field_validator("route_token", "webhook_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ROUTE_TOKEN:
            raise ValueError(f"must be at least {MIN_ROUTE_TOKEN} characters")
        return value

    @model_validator(mode="after")
    def _pipeline_exists(self, info: ValidationInfo) -> TelephonyConfig:
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
