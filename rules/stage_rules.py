"""The built-in stage rules, a ``hub_guard`` like any company's own.

What every head of sales repeats, held on every path that moves a deal (API,
CLI, import, triggers, plugins), because every path goes through the writer:

- a deal moves stage by stage: to the next stage, back to any earlier one, to
  lost from anywhere; further jumps only where the pipeline allows them
  (``[pipelines.X.jumps]``), and won only from the last open stage;
- a stage's required fields are filled before a deal enters it;
- a deal is not won without an amount;
- a lost deal says why, with a reason from the configured list, and names the
  competitor where the reason needs one;
- a deal does not leave its first stage without an open task.

Refusals are in words a manager understands (``rules/templates/stage_rules.toml``).
A head of sales or an admin may skip a rule with a reason (``override``); the
reason is kept in the deal's stage history and in the event. A lost deal's
reason cannot be skipped.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, func, select

from hub.config import Pipeline as PipelineConfig
from hub.deals import Actor, Refusal, StoreReader
from hub.deals import changes as ch
from hub.hookspecs import hookimpl
from hub.store.models import Contact, ContactPoint, Deal, Task

TEXTS = Path(__file__).with_name("templates") / "stage_rules.toml"


@dataclass(slots=True)
class _Deal:
    """A deal as the batch will have left it by the change being checked."""

    pipeline: str
    stage: str
    status: str
    fields: dict[str, Any]
    custom: dict[str, Any]
    contact_id: int | None
    open_tasks: int
    contact: dict[str, Any] = field(default_factory=dict)


class StageRules:
    enabled_by_default = True

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        override_roles: list[str] = ["head", "admin"]
        amount_when_won: bool = True
        open_task_to_leave_first_stage: bool = True

    def __init__(self, config: Config | None, hub: Any) -> None:
        self.config = config or self.Config()
        self.hub = hub
        self.texts = tomllib.loads(TEXTS.read_text())

    def say(self, key: str, **values: Any) -> str:
        return self.texts[key].format(**values)

    @hookimpl
    async def hub_guard(
        self, changes: Sequence[ch.Change], actor: Actor, store: StoreReader
    ) -> list[Refusal]:
        checked = (ch.MoveStage, ch.CloseWon, ch.CloseLost)
        if not any(isinstance(c, checked) for c in changes):
            return []
        deals = await self._deals(store, changes)
        refusals: list[Refusal] = []
        for change in changes:
            if isinstance(change, checked):
                deal = deals.get(ch.ref_id(change.deal) if not _new(change.deal) else -1)
                if deal is not None and deal.status == "open":
                    refusals += self._check(change, deal, actor)
            _follow(change, deals)
        return refusals

    # -- the rules -------------------------------------------------------------------------

    def _check(self, change: Any, deal: _Deal, actor: Actor) -> list[Refusal]:
        pipeline = self.hub.settings.pipelines.get(deal.pipeline)
        if pipeline is None:
            return []
        stages = {s.key: s for s in pipeline.stages}
        current = stages.get(deal.stage)
        if current is None:
            return []
        kind = {ch.MoveStage: "open", ch.CloseWon: "won", ch.CloseLost: "lost"}[type(change)]
        target = (
            stages.get(change.stage)
            if kind == "open"
            else next((s for s in pipeline.stages if s.kind == kind), None)
        )
        if target is None or target.key == current.key:
            return []  # the writer refuses what makes no sense; rules judge what does
        found: list[Refusal] = []
        binding: list[Refusal] = []  # what no override lets through
        if kind == "lost":
            binding += self._loss(change)
        found += self._order(change, pipeline, current.key, target.key, kind)
        missing = [n for n in target.required_fields if not _filled(n, deal)]
        if missing:
            labels = ", ".join(
                self.texts["fields"].get(n, n.removeprefix("custom.")) for n in missing
            )
            found.append(Refusal(change, self.say("needs", stage=target.name, fields=labels)))
        amount = deal.fields.get("amount")
        if kind == "won" and not isinstance(change.amount, ch._Unset):
            amount = change.amount
        if kind == "won" and self.config.amount_when_won and not amount:
            found.append(Refusal(change, self.say("won_amount"), "amount"))
        first = next(s for s in pipeline.stages if s.kind == "open")
        leaving_first = current.key == first.key and kind != "lost"
        if leaving_first and self.config.open_task_to_leave_first_stage and deal.open_tasks < 1:
            found.append(Refusal(change, self.say("open_task", stage=current.name), "tasks"))
        override = getattr(change, "override", None)
        if found and override is not None:
            if not override.strip():
                return [*binding, Refusal(change, self.say("override_reason"), "override")]
            if actor.role in self.config.override_roles or actor.kind in ("system", "cli"):
                return binding
            role = actor.role or actor.kind
            return [*binding, *found, Refusal(change, self.say("override_role", role=role))]
        return [*binding, *found]

    def _order(
        self, change: Any, pipeline: PipelineConfig, current: str, target: str, kind: str
    ) -> list[Refusal]:
        if kind == "lost" or target in pipeline.jumps.get(current, []):
            return []
        keys = [s.key for s in pipeline.stages]
        names = {s.key: s.name for s in pipeline.stages}
        open_keys = [s.key for s in pipeline.stages if s.kind == "open"]
        here = open_keys.index(current) if current in open_keys else -1
        if kind == "won":
            if here == len(open_keys) - 1:
                return []
            return [
                Refusal(
                    change,
                    self.say("won_skip", last=names[open_keys[-1]], current=names[current]),
                    "stage",
                )
            ]
        if keys.index(target) < keys.index(current):
            return []  # back to an earlier stage is always allowed
        following = open_keys[here + 1] if 0 <= here < len(open_keys) - 1 else None
        if target == following:
            return []
        return [
            Refusal(
                change,
                self.say(
                    "skip",
                    current=names[current],
                    target=names[target],
                    next=names.get(following or "", names[current]),
                ),
                "stage",
            )
        ]

    def _loss(self, change: ch.CloseLost) -> list[Refusal]:
        catalog = self.hub.settings.catalog
        listed = ", ".join(catalog.loss_reasons) or "—"
        reason = (change.reason or "").strip()
        if not reason:
            return [Refusal(change, self.say("loss_reason", reasons=listed), "reason")]
        if catalog.loss_reasons and reason not in catalog.loss_reasons:
            return [
                Refusal(
                    change, self.say("loss_reason_unknown", reason=reason, reasons=listed), "reason"
                )
            ]
        if reason in catalog.competitor_reasons and not (change.competitor or "").strip():
            return [Refusal(change, self.say("competitor", reason=reason), "competitor")]
        return []

    # -- the deals, as the batch finds them ------------------------------------------------

    async def _deals(self, store: StoreReader, changes: Sequence[ch.Change]) -> dict[int, _Deal]:
        ids = sorted(
            {
                ref
                for c in changes
                if (ref := getattr(c, "deal", None)) is not None and isinstance(ref, int)
            }
        )
        done = sorted(
            {c.task for c in changes if isinstance(c, ch.CompleteTask) and isinstance(c.task, int)}
        )
        catalog = self.hub.catalog
        if not ids or catalog is None:
            return {}
        open_tasks = (
            select(func.count())
            .where(Task.deal_id == Deal.id, Task.done_at.is_(None))
            .scalar_subquery()
        )
        has = {
            kind: select(func.count())
            .where(ContactPoint.contact_id == Deal.contact_id, ContactPoint.kind == kind)
            .scalar_subquery()
            for kind in ("phone", "email")
        }
        rows = await store.execute(
            select(
                Deal.__table__,
                open_tasks.label("open_tasks"),
                Contact.name.label("contact_name"),
                Contact.city.label("contact_city"),
                Contact.segment.label("contact_segment"),
                has["phone"].label("phones"),
                has["email"].label("emails"),
            )
            .outerjoin(Contact, Contact.id == Deal.contact_id)
            .where(Deal.id.in_(ids))
        )
        found: dict[int, _Deal] = {}
        for row in rows.mappings():
            stage = catalog.stages_by_id.get(row["stage_id"])
            pipeline = catalog.pipelines_by_id.get(row["pipeline_id"])
            if stage is None or pipeline is None:
                continue
            found[row["id"]] = _Deal(
                pipeline=pipeline.key,
                stage=stage.key,
                status=row["status"],
                fields={
                    "title": row["title"],
                    "amount": row["amount"],
                    "currency": row["currency"],
                    "segment": row["segment"],
                    "source": row["source"],
                    "company": row["company_id"],
                },
                custom=dict(row["custom"] or {}),
                contact_id=row["contact_id"],
                open_tasks=row["open_tasks"],
                contact={
                    "contact.name": row["contact_name"],
                    "contact.city": row["contact_city"],
                    "contact.segment": row["contact_segment"],
                    "contact.phone": row["phones"] or None,
                    "contact.email": row["emails"] or None,
                },
            )
        if done:
            finished = await store.execute(
                select(Task.deal_id).where(and_(Task.id.in_(done), Task.done_at.is_(None)))
            )
            for (deal_id,) in finished:
                if deal_id in found:
                    found[deal_id].open_tasks -= 1
        return found


def _new(ref: Any) -> bool:
    return isinstance(ref, ch.Creates)


def _filled(name: str, deal: _Deal) -> bool:
    if name.startswith("contact."):
        value = deal.contact.get(name)
    elif name.startswith("custom."):
        value = deal.custom.get(name.removeprefix("custom."))
    else:
        value = deal.fields.get(name)
    return value not in (None, "", 0)


def _follow(change: ch.Change, deals: dict[int, _Deal]) -> None:
    """What ``change`` does to the deals later changes of the batch are checked against."""
    ref = getattr(change, "deal", None)
    deal = deals.get(ref) if isinstance(ref, int) else None
    if isinstance(change, ch.SetDealFields) and deal is not None:
        for name in ("title", "amount", "currency", "segment"):
            value = getattr(change, name)
            if not isinstance(value, ch._Unset):
                deal.fields[name] = value
        if not isinstance(change.custom, ch._Unset):
            deal.custom.update(change.custom)
    elif isinstance(change, ch.AddTask) and deal is not None:
        deal.open_tasks += 1
    elif isinstance(change, ch.MoveStage) and deal is not None:
        deal.stage = change.stage
    elif isinstance(change, ch.CloseWon | ch.CloseLost) and deal is not None:
        deal.status = "closed"
    elif isinstance(change, ch.Reopen) and deal is not None:
        deal.status = "open"
    elif isinstance(change, ch.UpdateContact) and isinstance(change.contact, int):
        for other in deals.values():
            if other.contact_id == change.contact:
                for name in ("name", "city", "segment"):
                    value = getattr(change, name)
                    if not isinstance(value, ch._Unset):
                        other.contact[f"contact.{name}"] = value
                kinds = {p.kind for p in change.add_points}
                for kind in kinds:
                    other.contact[f"contact.{kind}"] = 1
