"""What a rule does to a deal, shared by the triggers and the stages' actions on enter.

A rule answers a batch's events inside the writer's transaction, so everything it
needs about the deals is read at once: :func:`load` reads every deal the matching
events name, with its client, in one query (and, only when an action asks for them,
the deals' open tasks in one more), never one query per event. :class:`Actions`
turns one configured action (close the open tasks, a task for the owner due in
their working time, a notification, a field set, a stage move) into typed changes
for the writer.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select

from hub.deals import StoreReader
from hub.deals import changes as ch
from hub.store.models import Contact, Deal, Task
from hub.store.ops import Catalog
from hub.worktime import WorkingTime

log = structlog.get_logger("rules.actions")

TEXTS = tomllib.loads((Path(__file__).with_name("templates") / "triggers.toml").read_text())

# The template a notification uses when the rule names none, by the event that caused it.
DEFAULT_TEMPLATES = {
    "deal.created": "deal_created",
    "deal.stage_changed": "stage_entered",
    "deal.reopened": "stage_entered",
    "deal.won": "deal_won",
    "deal.lost": "deal_lost",
    "task.overdue": "task_overdue",
    "deal.stale": "deal_stale",
    "call.missed": "missed_call",
}
GENERIC_TEMPLATE = "trigger"


@dataclass(slots=True)
class Scene:
    """The deals and clients a batch's matching events name, as the batch left them."""

    deals: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    task_deals: dict[int, int | None] = field(default_factory=dict)  # task id → its deal
    open_tasks: dict[int, list[int]] = field(default_factory=dict)  # deal id → open tasks

    def deal_of(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        deal_id = deal_id_of(event)
        if deal_id is None and event.get("subject") == "task":
            deal_id = self.task_deals.get(event["subject_id"])
        return self.deals.get(deal_id) if deal_id is not None else None

    def contact_of(
        self, event: Mapping[str, Any], deal: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        contact_id = contact_id_of(event)
        if contact_id is None and deal is not None:
            contact_id = deal["contact_id"]
        return self.contacts.get(contact_id) if contact_id is not None else None


def deal_id_of(event: Mapping[str, Any]) -> int | None:
    if event.get("subject") == "deal":
        return event.get("subject_id")
    found = event["payload"].get("deal_id")
    return found if isinstance(found, int) else None


def contact_id_of(event: Mapping[str, Any]) -> int | None:
    if event.get("subject") == "contact":
        return event.get("subject_id")
    found = event["payload"].get("contact_id")
    return found if isinstance(found, int) else None


async def load(
    store: StoreReader,
    events: Iterable[Mapping[str, Any]],
    *,
    open_tasks: bool,
    created_tasks: Iterable[int] = (),
) -> Scene:
    """Read what ``events`` name: the deals with their clients in one query; the deals of
    task events that do not name one (``task.overdue``) and clients without a deal first,
    only when there are such events; the open tasks of the deals, only if ``open_tasks``
    (leaving out ``created_tasks``: those the batch itself just created)."""
    scene = Scene()
    deal_ids: set[int] = set()
    contact_ids: set[int] = set()
    task_ids: set[int] = set()
    for event in events:
        deal_id = deal_id_of(event)
        if deal_id is not None:
            deal_ids.add(deal_id)
        elif event.get("subject") == "task" and event.get("subject_id") is not None:
            task_ids.add(event["subject_id"])
        contact_id = contact_id_of(event)
        if contact_id is not None:
            contact_ids.add(contact_id)
    if task_ids:
        rows = await store.execute(
            select(Task.id, Task.deal_id).where(Task.id.in_(sorted(task_ids)))
        )
        scene.task_deals = {row.id: row.deal_id for row in rows}
        deal_ids.update(d for d in scene.task_deals.values() if d is not None)
    if deal_ids:
        rows = await store.execute(
            select(
                Deal.id,
                Deal.title,
                Deal.pipeline_id,
                Deal.stage_id,
                Deal.contact_id,
                Deal.company_id,
                Deal.owner_id,
                Deal.amount,
                Deal.currency,
                Deal.source,
                Deal.segment,
                Deal.status,
                Deal.loss_reason,
                Deal.competitor,
                Deal.custom,
                Contact.name.label("contact_name"),
                Contact.city.label("contact_city"),
                Contact.segment.label("contact_segment"),
                Contact.owner_id.label("contact_owner_id"),
            )
            .outerjoin(Contact, Contact.id == Deal.contact_id)
            .where(Deal.id.in_(sorted(deal_ids)))
        )
        for row in rows.mappings():
            deal = dict(row)
            contact_id = deal["contact_id"]
            name = deal.pop("contact_name")
            city = deal.pop("contact_city")
            segment = deal.pop("contact_segment")
            owner_id = deal.pop("contact_owner_id")
            scene.deals[deal["id"]] = deal
            if contact_id is not None:
                scene.contacts[contact_id] = {
                    "id": contact_id,
                    "name": name,
                    "city": city,
                    "segment": segment,
                    "owner_id": owner_id,
                }
    missing = sorted(contact_ids - scene.contacts.keys())
    if missing:
        rows = await store.execute(
            select(Contact.id, Contact.name, Contact.city, Contact.segment, Contact.owner_id).where(
                Contact.id.in_(missing)
            )
        )
        for row in rows.mappings():
            scene.contacts[row["id"]] = dict(row)
    if open_tasks and scene.deals:
        skip = set(created_tasks)
        rows = await store.execute(
            select(Task.id, Task.deal_id)
            .where(Task.deal_id.in_(sorted(scene.deals)), Task.done_at.is_(None))
            .order_by(Task.id)
        )
        for task_id, deal_id in rows:
            if task_id not in skip:
                scene.open_tasks.setdefault(deal_id, []).append(task_id)
    return scene


class Actions:
    """Turns configured actions into changes. Shared by every reaction of one batch, so a
    task two rules both close is closed once."""

    def __init__(self, hub: Any, catalog: Catalog) -> None:
        self.hub = hub
        self.settings = hub.settings
        self.catalog = catalog
        self._users = {u.email: u for u in self.settings.users}
        self._closed: set[int] = set()

    def changes(
        self,
        action: Any,
        *,
        event: Mapping[str, Any],
        deal: Mapping[str, Any] | None,
        contact: Mapping[str, Any] | None,
        scene: Scene,
        rule: str,
        key: str,
        context: Mapping[str, Any],
        closed_result: str,
    ) -> list[ch.Change]:
        """The changes of one action (a trigger's action table or a stage's ``on_enter``
        item): ``rule`` names the rule in the log, ``key`` is the idempotency key of what
        it queues, ``context`` what its notification shows."""
        now = event["occurred_at"]
        out: list[ch.Change] = []
        fields = getattr(action, "set_", None)
        if fields and self._needs_deal(deal, rule, "set", event):
            out.append(set_fields(deal["id"], fields))  # type: ignore[index]
        if getattr(action, "close_tasks", False) and self._needs_deal(
            deal, rule, "close_tasks", event
        ):
            for task_id in scene.open_tasks.get(deal["id"], ()):  # type: ignore[index]
                if task_id not in self._closed:
                    self._closed.add(task_id)
                    out.append(ch.CompleteTask(task=task_id, result=closed_result))
        if getattr(action, "task", None):
            task = self.task(action.task, action.due, deal, contact, now)
            if task is not None:
                out.append(task)
            else:
                log.info("rule_task_needs_deal", rule=rule, event_id=event["id"])
        stage = getattr(action, "move_to", None)
        if stage and self._needs_deal(deal, rule, "move_to", event):
            current = self.catalog.stages_by_id.get(deal["stage_id"])  # type: ignore[index]
            if current is None or current.key != stage:
                out.append(ch.MoveStage(deal=deal["id"], stage=stage))  # type: ignore[index]
        if getattr(action, "notify", None):
            default = DEFAULT_TEMPLATES.get(event["type"], GENERIC_TEMPLATE)
            out.extend(
                self.hub.notifications.queue(
                    to=action.notify,
                    template=action.template or default,
                    context=context,
                    key=key,
                    now=now,
                    via=action.via,
                    deal=deal,
                    event_type=event["type"],
                )
            )
        return out

    def task(
        self,
        title: str,
        due: timedelta,
        deal: Mapping[str, Any] | None,
        contact: Mapping[str, Any] | None,
        now: datetime,
    ) -> ch.AddTask | None:
        """A task for the deal's owner (or the client's, without a deal), due ``due`` of the
        owner's working time after ``now``."""
        if deal is None and contact is None:
            return None
        owner_id = deal["owner_id"] if deal is not None else contact["owner_id"]  # type: ignore[index]
        email = self.catalog.user_emails.get(owner_id) if owner_id is not None else None
        due_at = WorkingTime.of(self._users.get(email or ""), self.settings).add(now, due)
        if deal is not None:
            return ch.AddTask(title=title, due_at=due_at, deal=deal["id"])
        assert contact is not None
        return ch.AddTask(title=title, due_at=due_at, contact=contact["id"], owner_id=owner_id)

    def context(
        self,
        event: Mapping[str, Any],
        deal: Mapping[str, Any] | None,
        contact: Mapping[str, Any] | None,
        **extra: Any,
    ) -> dict[str, Any]:
        """What a notification's template shows: the event, the deal with its stage and
        owner by name, the client, the hub's time zone; ``extra`` (the trigger, the stage)."""
        payload = dict(event["payload"])
        pipeline_key = payload.get("pipeline")
        out: dict[str, Any] = {
            "event": {
                "id": event["id"],
                "type": event["type"],
                "occurred_at": event["occurred_at"],
                "payload": payload,
            },
            "timezone": self.settings.hub.timezone,
            **extra,
        }
        for name in ("from_stage", "to_stage", "stage"):
            key = payload.get(name)
            if isinstance(key, str) and pipeline_key:
                out[f"{name}_name"] = self.stage_name(pipeline_key, key)
        if deal is not None:
            out["deal"] = self.deal_view(deal)
        if contact is not None:
            out["contact"] = {k: contact[k] for k in ("name", "city", "segment")}
        return out

    def deal_view(self, deal: Mapping[str, Any]) -> dict[str, Any]:
        stage = self.catalog.stages_by_id.get(deal["stage_id"])
        pipeline = self.catalog.pipelines_by_id.get(deal["pipeline_id"])
        email = self.catalog.user_emails.get(deal["owner_id"]) if deal["owner_id"] else None
        owner = self._users.get(email) if email else None
        return {
            "id": deal["id"],
            "title": deal["title"],
            "amount": deal["amount"],
            "currency": deal["currency"] or "RUB",
            "pipeline": pipeline.name if pipeline else None,
            "pipeline_key": pipeline.key if pipeline else None,
            "stage": stage.name if stage else None,
            "stage_key": stage.key if stage else None,
            "status": deal["status"],
            "owner": owner.name if owner else email,
            "owner_email": email,
            "source": deal["source"],
            "segment": deal["segment"],
            "loss_reason": deal["loss_reason"],
            "competitor": deal["competitor"],
            "custom": dict(deal["custom"] or {}),
        }

    def stage_name(self, pipeline: str, stage: str) -> str:
        info = self.catalog.pipelines.get(pipeline)
        found = info.stages.get(stage) if info else None
        return found.name if found else stage

    @staticmethod
    def _needs_deal(
        deal: Mapping[str, Any] | None, rule: str, action: str, event: Mapping[str, Any]
    ) -> bool:
        if deal is None:
            log.info("rule_action_needs_deal", rule=rule, action=action, event_id=event["id"])
            return False
        return True


def set_fields(deal_id: int, fields: Mapping[str, Any]) -> ch.SetDealFields:
    values = dict(fields)
    if "amount" in values and values["amount"] is not None:
        values["amount"] = Decimal(str(values["amount"]))
    return ch.SetDealFields(deal=deal_id, **values)


def say(key: str, **values: Any) -> str:
    return TEXTS[key].format(**values)
