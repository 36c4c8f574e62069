"""Who a segment is, as the config and the API write it (see :mod:`hub.campaigns.segments`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Audience(BaseModel):
    """Who a segment is: each field given narrows it (see the module's table)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None  # how the segment is shown to people
    segments: list[str] = Field(default_factory=list)
    cities: list[str] = Field(default_factory=list)
    companies: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)
    pipeline: str | None = None
    stages: list[str] = Field(default_factory=list)
    won_since: date | None = None
    won_until: date | None = None
    won_amount_min: Decimal | None = Field(None, ge=0)
    active_since: date | None = None
    inactive_since: date | None = None
    has_phone: bool | None = None
    has_email: bool | None = None
    consent: Literal["sms", "email"] | None = None

    @model_validator(mode="after")
    def _stages_need_a_pipeline(self) -> Audience:
        if self.stages and self.pipeline is None:
            raise ValueError("stages: name the pipeline they belong to")
        if self.won_since and self.won_until and self.won_until < self.won_since:
            raise ValueError("won_until: before won_since")
        return self

    def filters(self) -> dict[str, Any]:
        """The fields given, as stored with a campaign and shown in a preview."""
        return self.model_dump(mode="json", exclude_defaults=True)
