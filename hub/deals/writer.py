"""The deal store's one writer.

Every insert, update and delete of contacts, points, companies, deals, stage
history, tasks, notes, activities, review pairs and merges happens in this
package, from here (the parts: ``write_people``, ``write_deals``, ``write_work``,
``write_review``). A
caller hands :meth:`DealWriter.apply` a batch of typed changes
(:mod:`hub.deals.changes`) and who asks (:class:`~hub.deals.actors.Actor`); in
one transaction the writer

1. loads the records the batch names and hides from a manager what is not
   theirs (:class:`~hub.deals.actors.NotFound`, never "forbidden");
2. asks every ``hub_guard`` about the whole batch;
3. writes each run of same-kind changes with bulk statements, checking what
   only the store can tell (a deal already closed, a stage its pipeline lacks);
4. writes one typed domain event per change (:mod:`hub.deals.events`);
5. asks every ``hub_react`` what the rules do about those events (a trigger's
   task, a stage's actions on enter, a notification) and applies each answer
   the same way, as the actor ``rule:NAME``, in the same transaction: a
   notification is queued with the event that caused it, or not at all.

Any refusal, from a guard or from step 3, refuses the batch with every reason
at once (:class:`~hub.deals.actors.Refused`) and nothing is written.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals import (
    write_campaigns,
    write_deals,
    write_notify,
    write_people,
    write_review,
    write_rules,
    write_work,
)
from hub.deals.actors import Actor, NotFound, Refusal, Refused, StoreReader
from hub.deals.batch import Batch, contacts_t, deals_t, events_t, insert_rows, tasks_t
from hub.store import Store
from hub.store.ops import Catalog, allocate_ids
from hub.store.types import utcnow

log = structlog.get_logger("hub.deals")

# guards(changes, actor, reader) -> refusals
Guard = Callable[[Sequence[ch.Change], Actor, StoreReader], Awaitable[list[Refusal]]]

# A rule's answer to events changes what they cause, and that may cause more: a rule
# moving a deal fires the rules on stage changes. Past this depth the chain is cut
# (and reported), so two rules undoing each other cannot loop forever.
MAX_REACTION_DEPTH = 5


@dataclass(frozen=True, slots=True)
class Reaction:
    """What a rule does about events: ``changes`` written as ``Actor.rule(rule)``."""

    rule: str
    changes: list[ch.Change]


# react(events as dicts, who caused them, reader, depth) -> reactions
React = Callable[[list[dict[str, Any]], Actor, StoreReader, int], Awaitable[list[Reaction]]]


@dataclass(slots=True)
class Applied:
    """A written batch: its changes (creating ones now carry ids) and the events written."""

    changes: list[ch.Change]
    events: list[ev.Event]


class DealWriter:
    def __init__(
        self,
        store: Store,
        catalog: Callable[[], Catalog | None],
        guard: Guard | None = None,
        react: React | None = None,
    ) -> None:
        self.store = store
        self._catalog = catalog
        self._guard = guard
        self._react = react

    @property
    def catalog(self) -> Catalog:
        found = self._catalog()
        if found is None:
            raise RuntimeError("the writer is used before the hub loaded its pipelines")
        return found

    async def apply(self, changes: Sequence[ch.Change], actor: Actor) -> Applied:
        """Write ``changes`` in one transaction of their own."""
        async with self.store.write() as conn:
            return await self.apply_in(conn, changes, actor)

    async def apply_in(
        self,
        conn: AsyncConnection,
        changes: Sequence[ch.Change],
        actor: Actor,
        now: datetime | None = None,
        *,
        depth: int = 0,
    ) -> Applied:
        """Write ``changes`` in the caller's transaction (the intake worker's batch, an API
        request that records its idempotency key with the change)."""
        batch = Batch(conn, actor, self.catalog, now or utcnow())
        await self._load(batch, changes)
        if self._guard is not None:
            batch.refusals.extend(await self._guard(changes, actor, StoreReader(conn)))
        for kind, run in itertools.groupby(changes, type):
            await _WRITERS[kind](batch, list(run))
        if batch.refusals:
            raise Refused(batch.refusals)
        if not batch.events:
            return Applied(list(changes), batch.events)
        rows = [_row(e, actor, batch.now) for e in batch.events]
        if self._react is None:
            await insert_rows(conn, events_t, rows)
            return Applied(list(changes), batch.events)
        for row, event_id in zip(rows, await allocate_ids(conn, events_t, len(rows)), strict=True):
            row["id"] = event_id
        await insert_rows(conn, events_t, rows)
        await self._reactions(conn, rows, actor, batch.now, depth)
        return Applied(list(changes), batch.events)

    # -- step 5: what the rules do about the events ------------------------------------------

    async def _reactions(
        self,
        conn: AsyncConnection,
        events: list[dict[str, Any]],
        actor: Actor,
        now: datetime,
        depth: int,
    ) -> None:
        assert self._react is not None
        reactions = await self._react(events, actor, StoreReader(conn), depth)
        for reaction in reactions:
            if not reaction.changes:
                continue
            if depth + 1 >= MAX_REACTION_DEPTH:
                log.warning(
                    "rule_depth_exceeded",
                    rule=reaction.rule,
                    depth=depth + 1,
                    events=[e["id"] for e in events],
                )
                continue
            # A rule's changes are refused on their own: the write that fired the rule
            # stands, and the refusal is logged for whoever configured the rule.
            try:
                async with conn.begin_nested():
                    await self.apply_in(
                        conn, reaction.changes, Actor.rule(reaction.rule), now, depth=depth + 1
                    )
            except (Refused, NotFound) as refused:
                log.warning(
                    "rule_refused",
                    rule=reaction.rule,
                    reasons=[r.reason for r in getattr(refused, "refusals", ())] or str(refused),
                    events=[e["id"] for e in events],
                )
            except Exception:
                # Its savepoint is rolled back; the write that fired the rule stands.
                log.exception("rule_crashed", rule=reaction.rule, events=[e["id"] for e in events])

    # -- step 1: what the batch names, as the actor may see it -------------------------------

    async def _load(self, batch: Batch, changes: Sequence[ch.Change]) -> None:
        deal_ids: set[int] = set()
        contact_ids: set[int] = set()
        task_ids: set[int] = set()
        # A deal or task naming a contact that does not exist is "not found", not a
        # foreign-key error from the store; the lead pipeline and imports name only the
        # contacts they just read in the same transaction, so they skip the look-up.
        check_contacts = batch.actor.kind not in ("lead_pipeline", "import")
        for change in changes:
            deal = getattr(change, "deal", None)
            if isinstance(deal, int):
                deal_ids.add(deal)
            if check_contacts:
                contact = getattr(change, "contact", None)
                if isinstance(contact, int) and not isinstance(change, ch.RecordLead):
                    contact_ids.add(contact)
            if not batch.actor.limited_to_own:
                continue  # tasks are loaded only to hide others' from a manager
            task = getattr(change, "task", None)
            if isinstance(task, int):
                task_ids.add(task)
        conn = batch.conn
        if task_ids:
            rows = await conn.execute(select(tasks_t).where(tasks_t.c.id.in_(sorted(task_ids))))
            tasks = {r.id: r._asdict() for r in rows}
            for task_id in task_ids:
                if task_id not in tasks or not self._visible(batch.actor, tasks[task_id]):
                    raise NotFound("task", task_id)
        if deal_ids:
            rows = await conn.execute(select(deals_t).where(deals_t.c.id.in_(sorted(deal_ids))))
            batch.deals = {r.id: r._asdict() for r in rows}
            for deal_id in deal_ids:
                if deal_id not in batch.deals or not self._visible(
                    batch.actor, batch.deals[deal_id]
                ):
                    raise NotFound("deal", deal_id)
        if contact_ids:
            rows = await conn.execute(
                select(contacts_t).where(contacts_t.c.id.in_(sorted(contact_ids)))
            )
            batch.contacts = {r.id: r._asdict() for r in rows}
            for contact_id in contact_ids:
                found = batch.contacts.get(contact_id)
                if found is None or not self._visible(batch.actor, found):
                    raise NotFound("contact", contact_id)

    @staticmethod
    def _visible(actor: Actor, row: dict[str, Any]) -> bool:
        return not actor.limited_to_own or row["owner_id"] == actor.user_id


def _row(event: ev.Event, actor: Actor, now: datetime) -> dict[str, Any]:
    payload = event.payload()
    payload["actor"] = actor.as_dict()
    payload["v"] = event.version
    return {
        "type": event.type,
        "subject": event.subject,
        "subject_id": event.subject_id,
        "payload": payload,
        "occurred_at": now,
    }


_WRITERS: dict[type[ch.Change], Callable[[Batch, Any], Awaitable[None]]] = {
    ch.CreateCompany: write_people.create_companies,
    ch.CreateContact: write_people.create_contacts,
    ch.UpdateContact: write_people.update_contacts,
    ch.CreateDeal: write_deals.create_deals,
    ch.MoveStage: write_deals.move_stage,
    ch.SetDealFields: write_deals.set_deal_fields,
    ch.AssignOwner: write_deals.assign_owner,
    ch.CloseWon: write_deals.close_won,
    ch.CloseLost: write_deals.close_lost,
    ch.Reopen: write_deals.reopen,
    ch.RepeatInquiry: write_deals.repeat_inquiry,
    ch.AddTask: write_work.add_tasks,
    ch.CompleteTask: write_work.complete_tasks,
    ch.RescheduleTask: write_work.reschedule_tasks,
    ch.AddNote: write_work.add_notes,
    ch.LogActivity: write_work.log_activities,
    ch.AttachRecording: write_work.attach_recordings,
    ch.RecordLead: write_review.record_leads,
    ch.FlagDuplicate: write_review.flag_duplicates,
    ch.DismissDuplicate: write_review.dismiss_duplicates,
    ch.MergeContacts: write_review.merge_contacts,
    ch.MergeCompanies: write_review.merge_companies,
    ch.Unmerge: write_review.unmerge,
    ch.OpenViolation: write_rules.open_violations,
    ch.ResolveViolation: write_rules.resolve_violations,
    ch.QueueNotification: write_notify.queue_notifications,
    ch.SetConsent: write_campaigns.set_consents,
    ch.CreateCampaign: write_campaigns.create_campaigns,
    ch.StartCampaign: write_campaigns.start_campaigns,
    ch.SetCampaignState: write_campaigns.set_campaign_states,
    ch.SettleHeldMessages: write_campaigns.settle_held,
}
