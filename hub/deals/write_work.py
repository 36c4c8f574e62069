"""The writer's part for the work on a deal: tasks, notes, activities."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select, update

from hub.deals import changes as ch
from hub.deals import events as ev
from hub.deals.actors import NotFound
from hub.deals.batch import (
    Batch,
    active_users,
    activities_t,
    contacts_t,
    deal_of,
    deals_t,
    insert_rows,
    notes_t,
    ref,
    tasks_t,
)
from hub.store.ops import allocate_ids


async def _owner_of(batch: Batch, change: ch.AddTask) -> int | None:
    if not isinstance(change.owner_id, ch._Unset):
        return change.owner_id
    if isinstance(change.deal, ch.CreateDeal):
        return change.deal.owner_id
    if change.deal is not None:
        return (await deal_of(batch, change.deal))["owner_id"]
    if batch.actor.user_id is not None:
        return batch.actor.user_id
    return None


async def add_tasks(batch: Batch, run: list[ch.AddTask]) -> None:
    ids = await allocate_ids(batch.conn, tasks_t, len(run))
    rows = []
    for change, task_id in zip(run, ids, strict=True):
        if change.deal is None and change.contact is None:
            batch.refuse(change, "a task belongs to a deal or a contact", "deal_id")
            continue
        if change.due_at.tzinfo is None:
            batch.refuse(change, "the due time needs a time zone", "due_at")
            continue
        change.id = task_id
        deal_id, contact_id = ref(change.deal), ref(change.contact)
        if contact_id is None and deal_id is not None and deal_id in batch.deals:
            contact_id = batch.deals[deal_id]["contact_id"]
        owner_id = await _owner_of(batch, change)
        rows.append(
            {
                "id": task_id,
                "title": change.title[:300],
                "kind": change.task_kind,
                "deal_id": deal_id,
                "contact_id": contact_id,
                "owner_id": owner_id,
                "due_at": change.due_at,
                "done_at": None,
                "result": None,
                "created_at": batch.now,
            }
        )
        batch.events.append(
            ev.TaskCreated(
                subject_id=task_id,
                title=change.title,
                deal_id=deal_id,
                contact_id=contact_id,
                owner_id=owner_id,
                due_at=change.due_at,
            )
        )
    if rows:
        await insert_rows(batch.conn, tasks_t, rows)


async def _tasks(batch: Batch, refs: Iterable[ch.TaskRef]) -> dict[int, dict[str, Any]]:
    ids = sorted({ref(r) for r in refs})  # type: ignore[type-var]
    rows = await batch.conn.execute(select(tasks_t).where(tasks_t.c.id.in_(ids)))
    return {r.id: r._asdict() for r in rows}


async def complete_tasks(batch: Batch, run: list[ch.CompleteTask]) -> None:
    tasks = await _tasks(batch, (c.task for c in run))
    params = []
    for change in run:
        task = tasks.get(ref(change.task))  # type: ignore[arg-type]
        if task is None:
            raise NotFound("task", ref(change.task))  # type: ignore[arg-type]
        if task["done_at"] is not None:
            batch.refuse(change, f"task {task['id']} is already done")
            continue
        task.update(done_at=batch.now, result=change.result)
        params.append({"task_id": task["id"], "done": batch.now, "result": change.result})
        batch.events.append(
            ev.TaskCompleted(
                subject_id=task["id"],
                deal_id=task["deal_id"],
                owner_id=task["owner_id"],
                result=change.result,
            )
        )
    if params:
        await batch.conn.execute(
            update(tasks_t)
            .where(tasks_t.c.id == bindparam("task_id"))
            .values(done_at=bindparam("done"), result=bindparam("result")),
            params,
        )


async def reschedule_tasks(batch: Batch, run: list[ch.RescheduleTask]) -> None:
    tasks = await _tasks(batch, (c.task for c in run))
    owners = await active_users(
        batch, (c.owner_id for c in run if not isinstance(c.owner_id, ch._Unset))
    )
    for change in run:
        task = tasks.get(ref(change.task))  # type: ignore[arg-type]
        if task is None:
            raise NotFound("task", ref(change.task))  # type: ignore[arg-type]
        if task["done_at"] is not None:
            batch.refuse(change, f"task {task['id']} is done; add a new one instead")
            continue
        values: dict[str, Any] = {}
        if not isinstance(change.due_at, ch._Unset):
            if change.due_at.tzinfo is None:
                batch.refuse(change, "the due time needs a time zone", "due_at")
                continue
            values["due_at"] = change.due_at
        if not isinstance(change.owner_id, ch._Unset):
            if change.owner_id is not None and change.owner_id not in owners:
                batch.refuse(change, f"no active user {change.owner_id} to own the task", "owner")
                continue
            values["owner_id"] = change.owner_id
        if not isinstance(change.title, ch._Unset):
            values["title"] = change.title[:300]
        before = dict(task)
        if values:
            await batch.conn.execute(
                update(tasks_t).where(tasks_t.c.id == task["id"]).values(**values)
            )
            task.update(values)
        batch.events.append(
            ev.TaskRescheduled(
                subject_id=task["id"],
                deal_id=task["deal_id"],
                due_at=task["due_at"],
                previous_due_at=before["due_at"],
                owner_id=task["owner_id"],
                previous_owner_id=before["owner_id"],
            )
        )


async def add_notes(batch: Batch, run: list[ch.AddNote]) -> None:
    ids = await allocate_ids(batch.conn, notes_t, len(run))
    rows = []
    for change, note_id in zip(run, ids, strict=True):
        if not change.body.strip():
            batch.refuse(change, "the note is empty", "text")
            continue
        change.id = note_id
        deal_id, contact_id = ref(change.deal), ref(change.contact)
        if contact_id is None and deal_id is not None:
            contact_id = (await deal_of(batch, deal_id))["contact_id"]
        rows.append(
            {
                "id": note_id,
                "deal_id": deal_id,
                "contact_id": contact_id,
                "author_id": batch.actor.user_id,
                "body": change.body,
                "created_at": batch.now,
            }
        )
        batch.events.append(
            ev.NoteAdded(
                subject_id=note_id,
                deal_id=deal_id,
                contact_id=contact_id,
                author_id=batch.actor.user_id,
            )
        )
    if rows:
        await insert_rows(batch.conn, notes_t, rows)


async def log_activities(batch: Batch, run: list[ch.LogActivity]) -> None:
    ids = await allocate_ids(batch.conn, activities_t, len(run))
    rows = []
    for change, activity_id in zip(run, ids, strict=True):
        change.id = activity_id
        deal_id, contact_id = ref(change.deal), ref(change.contact)
        if contact_id is None and deal_id is not None and deal_id in batch.deals:
            contact_id = batch.deals[deal_id]["contact_id"]
        occurred = change.occurred_at or batch.now
        payload = change.payload
        if change.result is not None:
            payload = {**payload, "result": change.result}
        rows.append(
            {
                "id": activity_id,
                "kind": change.activity,
                "direction": change.direction,
                "deal_id": deal_id,
                "contact_id": contact_id,
                "summary": change.summary[:500],
                "payload": payload,
                "inbox_id": change.inbox_id,
                "occurred_at": occurred,
            }
        )
        batch.events.append(
            ev.ActivityLogged(
                subject_id=activity_id,
                kind=change.activity,
                direction=change.direction,
                deal_id=deal_id,
                contact_id=contact_id,
                result=change.result,
                occurred_at=occurred,
            )
        )
        if change.activity == "call" and change.result == "missed" and change.direction == "in":
            call = payload.get("call") or {}
            batch.events.append(
                ev.CallMissed(
                    subject_id=activity_id,
                    deal_id=deal_id,
                    contact_id=contact_id,
                    number=call.get("number"),
                    extension=call.get("extension"),
                    occurred_at=occurred,
                )
            )
    await insert_rows(batch.conn, activities_t, rows)


async def attach_recordings(batch: Batch, run: list[ch.AttachRecording]) -> None:
    """Keep each recording's reference on its call activity, once: a reference the activity
    already holds is left as it is, with no event."""
    ids = sorted({ref(c.activity) for c in run})  # type: ignore[type-var]
    rows = await batch.conn.execute(
        select(
            activities_t.c.id,
            activities_t.c.kind,
            activities_t.c.deal_id,
            activities_t.c.contact_id,
            activities_t.c.payload,
        ).where(activities_t.c.id.in_(ids))
    )
    activities = {r.id: r._asdict() for r in rows}
    for change in run:
        activity_id = ref(change.activity)
        activity = activities.get(activity_id)  # type: ignore[arg-type]
        if activity is None or not await _visible_activity(batch, activity):
            raise NotFound("activity", activity_id)  # type: ignore[arg-type]
        if activity["kind"] != "call":
            batch.refuse(change, f"activity {activity_id} is not a call: it has no recording")
            continue
        if not change.provider.strip() or not change.recording_id.strip():
            batch.refuse(change, "a recording needs its provider and the provider's id")
            continue
        payload = dict(activity["payload"] or {})
        call = dict(payload.get("call") or {})
        recording = {"provider": change.provider, "id": change.recording_id}
        kept = list(call.get("recordings") or [])
        if recording in kept:
            continue
        call["recordings"] = [*kept, recording]
        if change.listen_url is not None:
            call["recording_url"] = change.listen_url
        payload["call"] = call
        activity["payload"] = payload  # a second recording in this run sees the first
        await batch.conn.execute(
            update(activities_t).where(activities_t.c.id == activity_id).values(payload=payload)
        )
        batch.events.append(
            ev.CallRecorded(
                subject_id=activity_id,
                deal_id=activity["deal_id"],
                contact_id=activity["contact_id"],
                provider=change.provider,
                recording_id=change.recording_id,
            )
        )


async def _visible_activity(batch: Batch, activity: dict[str, Any]) -> bool:
    """A manager may touch an activity of their own deal, or of their own contact."""
    if not batch.actor.limited_to_own:
        return True
    table, row_id = (
        (deals_t, activity["deal_id"])
        if activity["deal_id"] is not None
        else (contacts_t, activity["contact_id"])
    )
    if row_id is None:
        return False
    owner = await batch.conn.execute(select(table.c.owner_id).where(table.c.id == row_id))
    return owner.scalar_one_or_none() == batch.actor.user_id
