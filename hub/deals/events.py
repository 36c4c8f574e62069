"""Every kind of domain event, declared once.

The writer (:mod:`hub.deals.writer`) emits one of these per change, in the same
transaction as the change; plugins receive them through ``hub_domain_event`` as
dicts (``type``, ``subject``, ``subject_id``, ``payload``, ``occurred_at``), where
``payload`` holds the event's fields plus ``actor`` (who made the change) and
``v`` (the event's schema version, raised when a field changes meaning or goes
away). :func:`parse` turns such a dict back into its dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    type: ClassVar[str] = "event"
    subject: ClassVar[str] = "none"
    version: ClassVar[int] = 1

    subject_id: int | None

    def payload(self) -> dict[str, Any]:
        # Thousands of events a second come from the lead pipeline: the field names and
        # their getter are worked out once per kind.
        found = _GETTERS.get(type(self))
        if found is None:
            names = tuple(f.name for f in fields(self) if f.name != "subject_id")
            found = _GETTERS[type(self)] = (names, attrgetter(*names))
        names, getter = found
        values = getter(self)
        return dict(zip(names, values if len(names) > 1 else (values,), strict=True))


_GETTERS: dict[type[Event], tuple[tuple[str, ...], Any]] = {}


# -- leads -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadReceived(Event):
    """A channel's lead was placed: ``subject_id`` is the lead (inbox event) id."""

    type: ClassVar[str] = "lead.received"
    subject: ClassVar[str] = "lead"
    channel: str
    decision: str
    contact_id: int | None
    deal_id: int | None
    task_id: int | None
    owner_id: int | None
    assigned_by: str
    match: dict[str, Any] | None = None
    possible_duplicate_of: int | None = None


# -- contacts and companies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactCreated(Event):
    type: ClassVar[str] = "contact.created"
    subject: ClassVar[str] = "contact"
    name: str | None
    owner_id: int | None
    company_id: int | None
    phones: list[str]
    emails: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactUpdated(Event):
    """Fields set (``changed``: field → new value) and phones or emails added or removed."""

    type: ClassVar[str] = "contact.updated"
    subject: ClassVar[str] = "contact"
    changed: dict[str, Any]
    points_added: list[str]
    points_removed: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactsMerged(Event):
    """``other_id`` was merged into the contact ``subject_id``; ``moved`` counts rows moved."""

    type: ClassVar[str] = "contacts.merged"
    subject: ClassVar[str] = "contact"
    merge_id: int
    other_id: int
    moved: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactsUnmerged(Event):
    """The contact ``subject_id`` is back, separated from ``keep_id`` again."""

    type: ClassVar[str] = "contacts.unmerged"
    subject: ClassVar[str] = "contact"
    merge_id: int
    keep_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CompanyCreated(Event):
    type: ClassVar[str] = "company.created"
    subject: ClassVar[str] = "company"
    name: str
    tax_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompaniesMerged(Event):
    type: ClassVar[str] = "companies.merged"
    subject: ClassVar[str] = "company"
    merge_id: int
    other_id: int
    moved: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CompaniesUnmerged(Event):
    type: ClassVar[str] = "companies.unmerged"
    subject: ClassVar[str] = "company"
    merge_id: int
    keep_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PossibleDuplicate(Event):
    type: ClassVar[str] = "contact.possible_duplicate"
    subject: ClassVar[str] = "contact"
    other_id: int
    score: float
    origin: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateDismissed(Event):
    """A person said the pair ``subject_id`` (a review row) is two different clients."""

    type: ClassVar[str] = "duplicate.dismissed"
    subject: ClassVar[str] = "duplicate"
    contact_id: int
    other_id: int


# -- deals -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DealCreated(Event):
    type: ClassVar[str] = "deal.created"
    subject: ClassVar[str] = "deal"
    title: str
    pipeline: str
    stage: str
    owner_id: int | None
    contact_id: int | None
    company_id: int | None
    amount: Decimal | None
    source: str | None
    channel: str | None
    lead_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DealStageChanged(Event):
    type: ClassVar[str] = "deal.stage_changed"
    subject: ClassVar[str] = "deal"
    pipeline: str
    from_stage: str
    to_stage: str
    owner_id: int | None
    override: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DealUpdated(Event):
    """Fields of the deal set: ``changed`` maps each to its new value."""

    type: ClassVar[str] = "deal.updated"
    subject: ClassVar[str] = "deal"
    changed: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class DealOwnerChanged(Event):
    type: ClassVar[str] = "deal.owner_changed"
    subject: ClassVar[str] = "deal"
    from_owner_id: int | None
    to_owner_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DealWon(Event):
    type: ClassVar[str] = "deal.won"
    subject: ClassVar[str] = "deal"
    pipeline: str
    from_stage: str
    stage: str
    amount: Decimal | None
    currency: str | None
    owner_id: int | None
    override: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DealLost(Event):
    type: ClassVar[str] = "deal.lost"
    subject: ClassVar[str] = "deal"
    pipeline: str
    from_stage: str
    stage: str
    reason: str | None
    competitor: str | None
    owner_id: int | None
    override: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DealReopened(Event):
    type: ClassVar[str] = "deal.reopened"
    subject: ClassVar[str] = "deal"
    pipeline: str
    from_stage: str
    to_stage: str
    owner_id: int | None
    lead_id: int | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DealRepeatInquiry(Event):
    """A known client asked again; the request was added to this open deal."""

    type: ClassVar[str] = "deal.repeat_inquiry"
    subject: ClassVar[str] = "deal"
    owner_id: int | None
    contact_id: int | None
    lead_id: int | None
    channel: str | None


# -- tasks, notes, activities ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCreated(Event):
    type: ClassVar[str] = "task.created"
    subject: ClassVar[str] = "task"
    title: str
    deal_id: int | None
    contact_id: int | None
    owner_id: int | None
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompleted(Event):
    type: ClassVar[str] = "task.completed"
    subject: ClassVar[str] = "task"
    deal_id: int | None
    owner_id: int | None
    result: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRescheduled(Event):
    type: ClassVar[str] = "task.rescheduled"
    subject: ClassVar[str] = "task"
    deal_id: int | None
    due_at: datetime
    previous_due_at: datetime
    owner_id: int | None
    previous_owner_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteAdded(Event):
    type: ClassVar[str] = "note.added"
    subject: ClassVar[str] = "note"
    deal_id: int | None
    contact_id: int | None
    author_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityLogged(Event):
    type: ClassVar[str] = "activity.logged"
    subject: ClassVar[str] = "activity"
    kind: str
    direction: str
    deal_id: int | None
    contact_id: int | None
    result: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMissed(Event):
    """A client's call nobody answered (logged as a ``call`` activity with the result
    ``missed``): what triggers call a client back on. ``subject_id`` is the activity."""

    type: ClassVar[str] = "call.missed"
    subject: ClassVar[str] = "activity"
    deal_id: int | None
    contact_id: int | None
    number: str | None
    extension: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecorded(Event):
    """A call's recording was attached to its ``call`` activity (``subject_id``): the
    manager can listen to it from the deal."""

    type: ClassVar[str] = "call.recorded"
    subject: ClassVar[str] = "activity"
    deal_id: int | None
    contact_id: int | None
    provider: str
    recording_id: str


# -- the rules' findings ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOverdue(Event):
    """A task passed its due time undone; once per task until it is done or moved."""

    type: ClassVar[str] = "task.overdue"
    subject: ClassVar[str] = "task"
    violation_id: int
    owner_id: int | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DealStale(Event):
    """A deal stayed in its stage past the stage's time limit; once per stay."""

    type: ClassVar[str] = "deal.stale"
    subject: ClassVar[str] = "deal"
    violation_id: int
    owner_id: int | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleViolated(Event):
    """An audit found a rule broken (``rule``: no_task, cadence_broken, no_segment, ...);
    ``subject_id`` is the violation; ``on``/``on_id`` what it is about."""

    type: ClassVar[str] = "rule.violated"
    subject: ClassVar[str] = "violation"
    rule: str
    on: str
    on_id: int
    owner_id: int | None
    severity: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleResolved(Event):
    type: ClassVar[str] = "rule.resolved"
    subject: ClassVar[str] = "violation"
    rule: str
    on: str
    on_id: int


# -- consent and campaigns -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentGiven(Event):
    type: ClassVar[str] = "consent.given"
    subject: ClassVar[str] = "contact"
    channel: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentWithdrawn(Event):
    type: ClassVar[str] = "consent.withdrawn"
    subject: ClassVar[str] = "contact"
    channel: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignCreated(Event):
    type: ClassVar[str] = "campaign.created"
    subject: ClassVar[str] = "campaign"
    name: str
    channel: str
    segment: str
    service: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignStarted(Event):
    type: ClassVar[str] = "campaign.started"
    subject: ClassVar[str] = "campaign"
    queued: int
    skipped: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignStateChanged(Event):
    type: ClassVar[str] = "campaign.state_changed"
    subject: ClassVar[str] = "campaign"
    state: str
    was: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignHeldSettled(Event):
    """Messages held for review were sent again or taken as sent, by a person."""

    type: ClassVar[str] = "campaign.held_settled"
    subject: ClassVar[str] = "campaign"
    messages: int
    resend: bool


EVENTS: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        LeadReceived,
        ContactCreated,
        ContactUpdated,
        ContactsMerged,
        ContactsUnmerged,
        CompanyCreated,
        CompaniesMerged,
        CompaniesUnmerged,
        PossibleDuplicate,
        DuplicateDismissed,
        DealCreated,
        DealStageChanged,
        DealUpdated,
        DealOwnerChanged,
        DealWon,
        DealLost,
        DealReopened,
        DealRepeatInquiry,
        TaskCreated,
        TaskCompleted,
        TaskRescheduled,
        NoteAdded,
        ActivityLogged,
        CallMissed,
        CallRecorded,
        TaskOverdue,
        DealStale,
        RuleViolated,
        RuleResolved,
        ConsentGiven,
        ConsentWithdrawn,
        CampaignCreated,
        CampaignStarted,
        CampaignStateChanged,
    )
}


def parse(event: dict[str, Any]) -> Event:
    """The typed event behind a delivered event dict (unknown payload keys are ignored)."""
    cls = EVENTS[event["type"]]
    payload = event["payload"]
    names = {f.name for f in fields(cls)} - {"subject_id"}
    return cls(subject_id=event["subject_id"], **{k: payload.get(k) for k in names})
