"""Daily digests and escalations: telling people what needs doing, not only that a rule broke.

Three jobs (``hub_jobs``), each run by one hub process per slot (:mod:`hub.scheduler`):

- **A manager's digest**, every morning at ``manager_at`` in the manager's own timezone:
  their red deals with the reasons (:mod:`hub.lights`), overdue tasks and how long
  overdue, their open violations oldest first, and what is due later today. There is
  one job per timezone the active managers live in (``digests.manager.Europe/Moscow``),
  so 09:00 is nine o'clock for each of them; the job's queries cover all its managers
  at once, then one notification per manager is queued (none for a manager with
  nothing to do when ``skip_empty``).
- **The head of sales' digest**, at ``head_at`` in each head's timezone (one job per
  timezone as well): open violations by manager, the oldest first with their age; the
  funnel of open deals per pipeline and stage (count and amount); conversions between
  stages over the last 30 days; deals lost in that time by reason and competitor, and
  deals won.
- **Escalation**, every 15 minutes: an open violation of ``escalate_severity`` still open
  ``escalate_after`` after it was first seen is told to ``escalate_to`` once.

Every notification has an idempotency key (``digest:manager:EMAIL:DATE``,
``digest:head:DATE``, ``escalation:VIOLATION``), so a restart or a second process
queues the same day's digest, or the same escalation, once.

Escalation selects in SQL only the violations that crossed the threshold since the
previous run (less a margin of one run); the first run of a process starts from the
latest escalation it finds in the outbox, and looks back at most a day. A violation
that turned old while the hub was down for longer than that is left to the head's
digest instead of arriving in a burst of stale alarms.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select

from hub.config import Duration, User, check_recipients
from hub.deals import Actor
from hub.hookspecs import hookimpl
from hub.scheduler import Job
from hub.store.models import Notification
from hub.store.types import utcnow
from hub.worktime import Team
from rules import digest_queries as q

log = structlog.get_logger("rules.digests")

DIGEST = Actor.rule("digest")
ESCALATION = Actor.rule("escalation")
ESCALATE_EVERY = timedelta(minutes=15)
CATCH_UP = timedelta(days=1)  # how far back the first escalation run of a process looks
RECENT = timedelta(days=30)  # the head's digest: conversions, won and lost
HEAD_OLDEST = 3  # the head's digest: the oldest violations shown for each manager


class Digests:
    enabled_by_default = True

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        # Local time of the managers' digest, in each manager's timezone (else the hub's).
        manager_at: time = time(9, 0)
        # Local time of the head of sales' digest, in each head's timezone.
        head_at: time = time(9, 30)
        # Notifiers to send through (names of notifier plugins); none: every one for people.
        via: list[str] | None = None
        # An open violation this old is told to escalate_to, once; "0s" turns it off.
        escalate_after: Duration = timedelta(hours=4)
        escalate_to: list[str] = ["head"]
        escalate_severity: list[Literal["red", "yellow"]] = ["red"]
        # No digest for a manager with nothing red, overdue, open or due today.
        skip_empty: bool = True
        # At most this many entries per list of a digest (the rest counted: "and 12 more").
        items: int = Field(10, ge=1, le=100)

        @field_validator("escalate_to")
        @classmethod
        def _recipients(cls, value: list[str]) -> list[str]:
            return check_recipients(value)

    def __init__(self, config: Config | None, hub: Any) -> None:
        self.config = config or self.Config()
        self.hub = hub
        self._escalated_at: datetime | None = None  # this process's previous escalation run

    # -- the jobs -------------------------------------------------------------------------

    @hookimpl
    def hub_jobs(self) -> list[Job]:
        jobs = [
            Job(
                f"digests.manager.{zone}",
                self._for_zone(self.manager_digest, zone),
                daily_at=self.config.manager_at,
                timezone=zone,
            )
            for zone in sorted({self.zone(u) for u in self.people("manager")})
        ]
        jobs += [
            Job(
                f"digests.head.{zone}",
                self._for_zone(self.head_digest, zone),
                daily_at=self.config.head_at,
                timezone=zone,
            )
            for zone in sorted({self.zone(u) for u in self.people("head")})
        ]
        if self.config.escalate_after > timedelta(0):
            jobs.append(Job("digests.escalation", self.escalate, every=ESCALATE_EVERY))
        return jobs

    @staticmethod
    def _for_zone(
        run: Callable[[datetime, str], Awaitable[dict[str, int]]], zone: str
    ) -> Callable[[datetime], Awaitable[dict[str, int]]]:
        async def job(slot: datetime) -> dict[str, int]:
            return await run(slot, zone)

        return job

    def people(self, role: str) -> list[User]:
        return [u for u in self.hub.settings.users if u.role == role and u.active]

    def zone(self, user: User | None) -> str:
        return (user.timezone if user else None) or self.hub.settings.hub.timezone

    async def manager_digest(self, slot: datetime, zone: str | None = None) -> dict[str, int]:
        """Queue the digest of ``slot``'s day for every active manager in ``zone``."""
        zone = zone or self.hub.settings.hub.timezone
        local = ZoneInfo(zone)
        day = slot.astimezone(local).date()
        now = max(slot, utcnow())  # the store as it is now, never before the slot
        ids = self.hub.catalog.user_ids
        managers = {
            ids[u.email]: u
            for u in self.people("manager")
            if self.zone(u) == zone and u.email in ids
        }
        async with self.hub.read() as store:
            days = await q.manager_days(
                store,
                self.hub.catalog,
                list(managers),
                q.Window(now, local),
                self.config.items,
                self.hub.notifications.deal_url,
                Team.of_catalog(self.hub.settings, self.hub.catalog),
            )
        changes = []
        skipped = 0
        for owner_id, user in managers.items():
            sections = days[owner_id]
            if self.config.skip_empty and not any(s["total"] for s in sections.values()):
                skipped += 1
                continue
            changes += self.hub.notifications.queue(
                to=[f"user:{user.email}"],
                template="digest_manager",
                context={
                    "timezone": zone,
                    "date": day.isoformat(),
                    "now": now,
                    "manager": {"name": user.name, "email": user.email},
                    **sections,
                },
                key=f"digest:manager:{user.email}:{day.isoformat()}",
                now=now,
                via=self.config.via,
            )
        if changes:
            await self.hub.deals.apply(changes, DIGEST)
        return {"managers": len(managers), "queued": len(changes), "skipped": skipped}

    async def head_digest(self, slot: datetime, zone: str | None = None) -> dict[str, int]:
        """Queue the digest of ``slot``'s day for every active head of sales in ``zone``."""
        zone = zone or self.hub.settings.hub.timezone
        day = slot.astimezone(ZoneInfo(zone)).date()
        now = max(slot, utcnow())
        heads = [u for u in self.people("head") if self.zone(u) == zone]
        if not heads:
            return {"heads": 0, "queued": 0}
        since = now - RECENT
        catalog = self.hub.catalog
        link = self.hub.notifications.deal_url
        async with self.hub.read() as store:
            violations = await q.violations_by_manager(store, now, HEAD_OLDEST, link)
            funnel = await q.funnel(store, catalog)
            conversions = await q.conversions(store, catalog, since, now)
            closed = await q.closed(store, since, now)
        empty = (
            not violations
            and not any(p["count"] for p in funnel)
            and not closed["won"]["count"]
            and not closed["lost_count"]
        )
        if self.config.skip_empty and empty:
            return {"heads": len(heads), "queued": 0}
        changes = self.hub.notifications.queue(
            to=[f"user:{u.email}" for u in heads],
            template="digest_head",
            context={
                "timezone": zone,
                "date": day.isoformat(),
                "now": now,
                "since": since,
                "days": RECENT.days,
                "violations": violations,
                "violations_total": sum(v["count"] for v in violations),
                "funnel": funnel,
                "conversions": conversions,
                **closed,
            },
            key=f"digest:head:{day.isoformat()}",
            now=now,
            via=self.config.via,
        )
        if changes:
            await self.hub.deals.apply(changes, DIGEST)
        return {"heads": len(heads), "queued": len(changes)}

    async def escalate(self, now: datetime) -> dict[str, int]:
        """Tell ``escalate_to`` about each violation that has just turned ``escalate_after``
        old (once: the key is the violation's)."""
        after = self.config.escalate_after
        async with self.hub.read() as store:
            last = self._escalated_at or await self._last_escalation(store)
            since = max(last, now - CATCH_UP) if last else now - CATCH_UP
            since -= ESCALATE_EVERY  # a margin of one run: told twice is queued once
            found = await q.crossed(store, self.config.escalate_severity, after, since, now)
        catalog = self.hub.catalog
        users = {u.email: u for u in self.hub.settings.users}
        changes = []
        for row in found:
            owner = users.get(catalog.user_emails.get(row["owner_id"], ""))
            stage = catalog.stages_by_id.get(row["stage_id"]) if row["stage_id"] else None
            context = {
                "violation": {
                    "id": row["id"],
                    "rule": row["rule"],
                    "rule_name": q.rule_name(row["rule"]),
                    "severity": row["severity"],
                    "detail": row["detail"],
                    "first_seen": row["first_seen"],
                    "age": q.age(now - row["first_seen"]),
                },
                "after": q.age(after),
                "owner": row["owner_name"],
                "deal": {
                    "id": row["deal_id"],
                    "title": row["deal_title"],
                    "amount": row["amount"],
                    "currency": row["currency"] or q.DEFAULT_CURRENCY,
                    "stage": stage.name if stage else None,
                }
                if row["deal_id"]
                else None,
            }
            deal = {"id": row["deal_id"], "owner_id": row["owner_id"]}
            for to, zone in self._escalation_targets(owner):
                changes += self.hub.notifications.queue(
                    to=[to],
                    template="escalation",
                    context={**context, "timezone": zone},
                    key=f"escalation:{row['id']}",
                    now=now,
                    via=self.config.via,
                    deal=deal,
                    event_type="rule.violated",
                )
        if changes:
            await self.hub.deals.apply(changes, ESCALATION)
        self._escalated_at = now
        return {"violations": len(found), "queued": len(changes)}

    def _escalation_targets(self, owner: User | None) -> list[tuple[str, str]]:
        """``escalate_to`` as single recipients, each with the timezone to show times in."""
        users = {u.email: u for u in self.hub.settings.users}
        out = []
        for name in self.config.escalate_to:
            if name in ("head", "admin"):
                out += [(f"user:{u.email}", self.zone(u)) for u in self.people(name)]
            elif name == "owner":
                out.append((name, self.zone(owner)))
            elif name.startswith("user:"):
                out.append((name, self.zone(users.get(name.removeprefix("user:").lower()))))
            else:
                out.append((name, self.zone(None)))
        return out

    @staticmethod
    async def _last_escalation(store: Any) -> datetime | None:
        """When the latest escalation was queued: everything that turned old before it was
        told then (each run tells all that turned old since the one before)."""
        queued_by = f"{ESCALATION.kind}:{ESCALATION.name}"
        return (
            await store.execute(
                select(func.max(Notification.created_at)).where(Notification.queued_by == queued_by)
            )
        ).scalar_one_or_none()
