"""A lead: what a channel hands to the lead pipeline, whatever it came from."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

# Fields a channel may map its input to; anything else goes into ``custom``.
LEAD_FIELDS = (
    "name",
    "phone",
    "email",
    "company",
    "tax_id",
    "city",
    "title",
    "message",
    "amount",
    "currency",
    "source",
    "segment",
    "consent_sms",
    "consent_email",
    *UTM_FIELDS,
)


class Lead(BaseModel):
    """A request from a possible client, already parsed by its channel."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    name: str | None = None
    phones: list[str] = []
    emails: list[str] = []
    company: str | None = None
    tax_id: str | None = None  # the company's (or sole trader's) tax id, ИНН in Russia
    city: str | None = None
    title: str | None = None
    message: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    source: str | None = None
    segment: str | None = None
    utm: dict[str, str] = {}
    custom: dict[str, Any] = {}
    # Consent to advertising the client gave with the lead (a form's checkbox): sms, email.
    consents: dict[Literal["sms", "email"], bool] = {}
    consent_source: str | None = None  # the form's name, the import's file
    external_id: str | None = None  # the client's id in another system (an import's key)
    owner: str | None = None  # email of the manager who should own a new contact (imports)
    pipeline: str | None = None
    stage: str | None = None
    activity_kind: str = "form"
    activity_direction: str = "in"
    activity_result: str | None = None  # a call's: answered, missed
    activity_payload: dict[str, Any] = Field(default_factory=dict)  # kept with the activity
    summary: str = ""
    # The lead's task, where the channel knows better than the pipeline's first task: a
    # missed call asks for a call back within minutes, not a first contact within a day.
    task: str | None = None
    task_kind: str = "call"
    task_within: timedelta | None = None
    # False: added to the client's open deal as an activity only, no task for the owner (a
    # channel's loop guard: the twentieth autoresponder letter within the hour).
    follow_up: bool = True
    # What the client actually sent, shown in the deal's history.
    submission: dict[str, Any] = Field(default_factory=dict)
    received_at: datetime | None = None
