"""Settings of the Asterisk AMI adapter: ``[plugins.telephony_ami]``."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.config import Credential, Duration


class AmiConfig(BaseModel):
    """``[plugins.telephony_ami]``: where the PBX's manager interface is and how to read it."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"  # the Asterisk box (manager.conf [general] bindaddr)
    port: int = Field(5038, ge=1, le=65535)  # manager.conf [general] port
    username: str = Field(min_length=1)  # a manager.conf [user] with read = call,agent,system
    secret: Credential  # that user's secret; or HUB__PLUGINS__TELEPHONY_AMI__SECRET
    # Login's Events mask: "on" (everything) or a list of classes such as "call,agent".
    events: str = "on"
    # What a number or a phone's device name looks like when it is one of our extensions.
    extension_pattern: str = r"^\d{2,5}$"
    # Channel name prefixes of the trunks ("SIP/trunk", "PJSIP/sipnet"). Empty: any channel
    # whose device name is not an extension (SIP/toOurAster-000000bb) counts as a trunk.
    trunk_channels: list[str] = []
    # Dialplan contexts where calls from outside enter (the first channel's Context).
    contexts_inbound: list[str] = ["from-trunk", "from-pstn", "from-did-direct"]
    connect_timeout: Duration = timedelta(seconds=5)  # TCP connect, banner and Login
    reconnect_min: Duration = timedelta(seconds=1)  # first wait after a dropped connection
    reconnect_max: Duration = timedelta(seconds=60)  # the wait doubles up to this (with jitter)
    # A Ping every this long; no answer within as long again: the connection is dead.
    ping_interval: Duration = timedelta(seconds=30)

    @field_validator("extension_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return value

    @field_validator("connect_timeout", "reconnect_min", "reconnect_max", "ping_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError('must be longer than 0s, e.g. "5s"')
        return value

    @model_validator(mode="after")
    def _ordered(self) -> AmiConfig:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min must not be longer than reconnect_max")
        return self
