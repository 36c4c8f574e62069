"""What can change in the deal store, described as typed objects.

Callers (the lead pipeline, import, merge, the API, the CLI, plugins) build these
and hand a batch to :class:`hub.deals.writer.DealWriter`; nothing else writes the
store. A change that creates a row (a contact, a company, a deal, a task, a note,
an activity, a merge) gets its ``id`` set by the writer, and later changes of the
same batch may point at it instead of at an id: ``AddTask(deal=create_deal, ...)``.

``UNSET`` marks a field a change leaves as it is (``None`` would clear it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, Final, Literal, TypeAlias

from hub.domain.normalize import Point


class _Unset(Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET


@dataclass(eq=False, slots=True, kw_only=True)
class Change:
    """One change of the store; ``kind`` names it in refusals and logs."""

    kind: ClassVar[str] = "change"


@dataclass(eq=False, slots=True, kw_only=True)
class Creates(Change):
    """A change that creates a row; ``id`` is set by the writer when it is written."""

    id: int | None = field(default=None, init=False)


# A row of the store: its id, or the change of this batch that creates it.
ContactRef: TypeAlias = "int | CreateContact"
CompanyRef: TypeAlias = "int | CreateCompany"
DealRef: TypeAlias = "int | CreateDeal"
TaskRef: TypeAlias = "int | AddTask"
ActivityRef: TypeAlias = "int | LogActivity"


def ref_id(ref: int | Creates | None) -> int | None:
    """The id ``ref`` stands for, once its creating change was written."""
    if ref is None or isinstance(ref, int):
        return ref
    if ref.id is None:
        raise LookupError(f"{ref.kind} is referred to before it is written")
    return ref.id


# -- contacts and companies -----------------------------------------------------------------

# An external id names its source system before a colon: ``1c:000123``, ``bitrix:5567``.
_QUALIFIED = re.compile(r"((?=[0-9_.-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_.-]{0,31}):(.+)", re.DOTALL)


def split_external_id(value: str) -> tuple[str, str]:
    """``"1C:000123"`` → ``("1c", "000123")``; an id without a system → ``("", id)``."""
    value = value.strip()
    found = _QUALIFIED.fullmatch(value)
    if found is None:
        return "", value
    return found.group(1).lower(), found.group(2).strip()


def external_id(system: str, value: str) -> str:
    """The one-string form of an external id: ``1c:000123``, or the bare id without system."""
    return f"{system}:{value}" if system else value


@dataclass(eq=False, slots=True, kw_only=True)
class CreateCompany(Creates):
    kind: ClassVar[str] = "create_company"
    name: str
    name_key: str | None = None  # the name without legal form: how companies are found
    tax_id: str | None = None
    external_id: str | None = None
    city: str | None = None
    owner_id: int | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class CreateContact(Creates):
    kind: ClassVar[str] = "create_contact"
    name: str | None = None
    owner_id: int | None = None
    city: str | None = None
    segment: str | None = None
    external_id: str | None = None  # also kept among ``external_ids``
    external_ids: list[str] = field(default_factory=list)  # more ids: "1c:000123", ...
    company: CompanyRef | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)


@dataclass(eq=False, slots=True, kw_only=True)
class UpdateContact(Change):
    """Set fields of a contact and add or remove its phones and emails.

    ``fill_only`` sets a field only where the contact has none (an import or a
    repeat lead never overwrites what a manager entered).

    External ids are only ever added: ``external_id`` and ``add_external_ids`` join the
    ids the contact keeps (``contact_external_ids``) whatever ``fill_only`` says; an id
    another contact holds refuses the change. ``external_id`` also sets the contact's one
    shown id (the column) as any other field.
    """

    kind: ClassVar[str] = "update_contact"
    contact: ContactRef
    name: str | _Unset | None = UNSET
    city: str | _Unset | None = UNSET
    segment: str | _Unset | None = UNSET
    external_id: str | _Unset | None = UNSET
    owner_id: int | _Unset | None = UNSET
    company: CompanyRef | _Unset | None = UNSET
    custom: dict[str, Any] | _Unset = UNSET  # merged key by key
    add_points: list[Point] = field(default_factory=list)
    remove_points: list[tuple[str, str]] = field(default_factory=list)  # (kind, normalized)
    add_external_ids: list[str] = field(default_factory=list)
    fill_only: bool = False


# -- deals ----------------------------------------------------------------------------------


@dataclass(eq=False, slots=True, kw_only=True)
class CreateDeal(Creates):
    kind: ClassVar[str] = "create_deal"
    title: str
    pipeline_id: int
    stage_id: int
    contact: ContactRef | None
    company: CompanyRef | None = None
    owner_id: int | None = None
    amount: Decimal | None = None
    currency: str | None = None
    source: str | None = None
    segment: str | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    utm: dict[str, str] = field(default_factory=dict)
    inbox_id: int | None = None  # the lead that made it
    channel: str | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class MoveStage(Change):
    """Move an open deal to another open stage of its pipeline (by the stage's key)."""

    kind: ClassVar[str] = "move_stage"
    deal: DealRef
    stage: str
    override: str | None = None  # a reason: a guard may let an allowed role skip its rule


@dataclass(eq=False, slots=True, kw_only=True)
class SetDealFields(Change):
    kind: ClassVar[str] = "set_deal_fields"
    deal: DealRef
    title: str | _Unset = UNSET
    amount: Decimal | _Unset | None = UNSET
    currency: str | _Unset | None = UNSET
    segment: str | _Unset | None = UNSET
    custom: dict[str, Any] | _Unset = UNSET  # merged key by key; a None value removes the key


@dataclass(eq=False, slots=True, kw_only=True)
class AssignOwner(Change):
    """Give a deal (and, with ``with_contact``, its contact) to another manager."""

    kind: ClassVar[str] = "assign_owner"
    deal: DealRef
    owner_id: int | None
    with_contact: bool = False


@dataclass(eq=False, slots=True, kw_only=True)
class CloseWon(Change):
    kind: ClassVar[str] = "close_won"
    deal: DealRef
    amount: Decimal | _Unset | None = UNSET
    override: str | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class CloseLost(Change):
    kind: ClassVar[str] = "close_lost"
    deal: DealRef
    reason: str | None
    competitor: str | None = None
    override: str | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class Reopen(Change):
    """Reopen a won or lost deal at ``stage`` (default: the pipeline's first stage)."""

    kind: ClassVar[str] = "reopen"
    deal: DealRef
    stage: str | None = None
    owner_id: int | _Unset | None = UNSET
    inbox_id: int | None = None  # the lead that reopened it
    channel: str | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class RepeatInquiry(Change):
    """A known client asked again about an open deal; the request is added to it."""

    kind: ClassVar[str] = "repeat_inquiry"
    deal: DealRef
    inbox_id: int | None = None
    channel: str | None = None


# -- tasks, notes, activities ---------------------------------------------------------------


@dataclass(eq=False, slots=True, kw_only=True)
class AddTask(Creates):
    kind: ClassVar[str] = "add_task"
    title: str
    due_at: datetime
    deal: DealRef | None = None
    contact: ContactRef | None = None
    owner_id: int | _Unset | None = UNSET  # default: the deal's (or contact's) owner
    task_kind: str = "call"


@dataclass(eq=False, slots=True, kw_only=True)
class CompleteTask(Change):
    kind: ClassVar[str] = "complete_task"
    task: TaskRef
    result: str | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class RescheduleTask(Change):
    kind: ClassVar[str] = "reschedule_task"
    task: TaskRef
    due_at: datetime | _Unset = UNSET
    owner_id: int | _Unset | None = UNSET
    title: str | _Unset = UNSET


@dataclass(eq=False, slots=True, kw_only=True)
class AddNote(Creates):
    kind: ClassVar[str] = "add_note"
    body: str
    deal: DealRef | None = None
    contact: ContactRef | None = None


ActivityKind = Literal["form", "email", "call", "sms", "meeting", "note", "chat", "other"]


@dataclass(eq=False, slots=True, kw_only=True)
class LogActivity(Creates):
    """Something that happened with a client: a form, a call, a meeting, an email."""

    kind: ClassVar[str] = "log_activity"
    activity: str  # form | email | call | sms | meeting | note | chat | other
    summary: str
    deal: DealRef | None = None
    contact: ContactRef | None = None
    direction: str = "in"  # in | out
    result: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None  # default: now
    inbox_id: int | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class AttachRecording(Change):
    """A call's recording, kept on its ``call`` activity as a reference (the provider and
    the provider's id of it), never as the provider's link: those expire. ``listen_url``
    is where the hub serves a fresh link (the activity's ``call.recording_url``).
    Attaching a recording the activity already has changes nothing and emits nothing,
    so a provider's repeated notice is harmless."""

    kind: ClassVar[str] = "attach_recording"
    activity: ActivityRef
    provider: str
    recording_id: str
    listen_url: str | None = None


# -- leads, duplicates, merges --------------------------------------------------------------


@dataclass(eq=False, slots=True, kw_only=True)
class RecordLead(Change):
    """What the lead pipeline made of one inbox event; writes no row, emits lead.received."""

    kind: ClassVar[str] = "record_lead"
    inbox_id: int
    channel: str
    decision: str
    contact: ContactRef
    deal: DealRef
    task: TaskRef | None
    owner_id: int | None
    assigned_by: str
    match: dict[str, Any] | None = None
    possible_duplicate_of: int | None = None

    def result(self) -> dict[str, Any]:
        """The decision as stored on the inbox event (``GET /api/v1/leads/{id}``)."""
        out: dict[str, Any] = {
            "decision": self.decision,
            "contact_id": ref_id(self.contact),
            "deal_id": ref_id(self.deal),
            "task_id": ref_id(self.task),
            "owner_id": self.owner_id,
            "assigned_by": self.assigned_by,
        }
        if self.match is not None:
            out["match"] = self.match
        if self.possible_duplicate_of is not None:
            out["possible_duplicate_of"] = self.possible_duplicate_of
        return out


@dataclass(eq=False, slots=True, kw_only=True)
class FlagDuplicate(Change):
    """Two contacts that may be one person, for a person to decide (a pair flagged once)."""

    kind: ClassVar[str] = "flag_duplicate"
    contact: ContactRef
    other: ContactRef
    score: float
    reasons: list[str]
    origin: str  # intake | scan | import
    inbox_id: int | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class DismissDuplicate(Change):
    """A person decided the pair is two different clients."""

    kind: ClassVar[str] = "dismiss_duplicate"
    pair_id: int


@dataclass(eq=False, slots=True, kw_only=True)
class MergeContacts(Creates):
    """Merge ``other`` into ``keep``; ``id`` becomes the merge's id, for undoing it."""

    kind: ClassVar[str] = "merge_contacts"
    keep: int
    other: int


@dataclass(eq=False, slots=True, kw_only=True)
class MergeCompanies(Creates):
    kind: ClassVar[str] = "merge_companies"
    keep: int
    other: int


@dataclass(eq=False, slots=True, kw_only=True)
class Unmerge(Change):
    kind: ClassVar[str] = "unmerge"
    merge_id: int
    restored: dict[str, Any] = field(default_factory=dict, init=False)  # set by the writer


ALL: tuple[type[Change], ...] = (
    CreateCompany,
    CreateContact,
    UpdateContact,
    CreateDeal,
    MoveStage,
    SetDealFields,
    AssignOwner,
    CloseWon,
    CloseLost,
    Reopen,
    RepeatInquiry,
    AddTask,
    CompleteTask,
    RescheduleTask,
    AddNote,
    LogActivity,
    AttachRecording,
    RecordLead,
    FlagDuplicate,
    DismissDuplicate,
    MergeContacts,
    MergeCompanies,
    Unmerge,
)


# -- the rules' findings --------------------------------------------------------------------


@dataclass(eq=False, slots=True, kw_only=True)
class OpenViolation(Creates):
    """An audit found a rule broken: kept until it clears, reported once."""

    kind: ClassVar[str] = "open_violation"
    rule: str
    subject: str  # deal | task | contact | stage_change
    subject_id: int
    owner_id: int | None
    severity: str  # red | yellow
    detail: str


@dataclass(eq=False, slots=True, kw_only=True)
class ResolveViolation(Change):
    """The broken rule holds again (the task was done, the segment filled in)."""

    kind: ClassVar[str] = "resolve_violation"
    violation_id: int
    rule: str
    subject: str
    subject_id: int


ALL = (*ALL, OpenViolation, ResolveViolation)


# -- notifications ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True, kw_only=True)
class QueueNotification(Creates):
    """A message for someone, queued in the notification outbox with the change that caused
    it; the sender delivers it after the commit (:mod:`hub.notify`). Queueing a ``key``
    that is already queued does nothing, so a retried batch notifies once. It has no event
    of its own: a notification is the effect of an event, never a cause."""

    kind: ClassVar[str] = "queue_notification"
    key: str  # idempotency key: "rule:deal_lost:event:123:user:4:telegram"
    notifier: str  # the notifier plugin that delivers it
    address: str  # where: a chat id, an email address, an endpoint name
    template: str | None  # hub/templates/notifications/NAME.j2; None: ``context`` is the body
    context: dict[str, Any] = field(default_factory=dict)  # JSON: what the template shows
    event_type: str | None = None
    deal_id: int | None = None
    user_id: int | None = None
    not_before: datetime | None = None  # quiet hours: hold until then


ALL = (*ALL, QueueNotification)


# -- consent and campaigns -------------------------------------------------------------------


@dataclass(eq=False, slots=True, kw_only=True)
class SetConsent(Change):
    """A contact agreed to advertising on ``channel`` (sms, email), or withdrew: a form's
    checkbox, an import column, the API, an unsubscribe link, a STOP reply, a hard bounce.
    The latest word stands; each is an event, so the history says who, how and when."""

    kind: ClassVar[str] = "set_consent"
    contact: ContactRef
    channel: Literal["sms", "email"]
    granted: bool
    source: str  # "form:contact-us", "import:clients.csv", "unsubscribe:campaign:4", "smsru:reply"


@dataclass(eq=False, slots=True, kw_only=True)
class CreateCampaign(Creates):
    """A campaign, as a draft: who (the segment's filter, kept as it is now), through what,
    what it says, how fast and when not."""

    kind: ClassVar[str] = "create_campaign"
    name: str
    channel: Literal["sms", "email"]
    gateway: str
    segment: str
    audience: dict[str, Any]
    text: str
    subject: str | None = None
    html: str | None = None
    service: bool = False
    rate: float = 10.0
    quiet_hours: str | None = None
    start_at: datetime | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class StartCampaign(Change):
    """Write the campaign's outbox: one row per contact of its segment, in one statement,
    the ones it must not reach skipped with the reason. ``recipients`` is the segment's
    ``SELECT contacts.id`` (:func:`hub.campaigns.segments.contact_ids`); the counts are
    set by the writer."""

    kind: ClassVar[str] = "start_campaign"
    campaign_id: int
    recipients: Any  # a SQLAlchemy Select of contact ids
    queued: int = field(default=0, init=False)
    skipped: dict[str, int] = field(default_factory=dict, init=False)


@dataclass(eq=False, slots=True, kw_only=True)
class SetCampaignState(Change):
    """Pause, resume or finish a running campaign."""

    kind: ClassVar[str] = "set_campaign_state"
    campaign_id: int
    state: Literal["running", "paused", "finished", "cancelled"]


@dataclass(eq=False, slots=True, kw_only=True)
class SettleHeldMessages(Change):
    """A person's decision on messages a crash left unknown (held for review): send them
    again, or take them as sent. ``message_ids`` None: every held one of the campaign.
    Resending on a finished campaign runs it again until they are out."""

    kind: ClassVar[str] = "settle_held_messages"
    campaign_id: int
    resend: bool
    message_ids: list[int] | None = None
    settled: list[int] = field(default_factory=list, init=False)


ALL = (*ALL, SetConsent, CreateCampaign, StartCampaign, SetCampaignState, SettleHeldMessages)
