"""Whether each endpoint is taking its webhooks: ok, failing since a time, or disabled.

Standard Webhooks asks a sender to disable an endpoint that answers ``410 Gone`` and
one that has failed consistently for a long time. The state lives in memory and is
worked out again at start-up from the outbox (the ``notifications`` rows of this
notifier), so a restart neither forgets a failing endpoint nor forgives it:

- the endpoint's last success is its newest ``sent`` row;
- it is failing since the oldest row queued after that success whose attempts failed
  (a first attempt is made when the row is queued, so that is when failures began);
  a row refused without being posted (the endpoint disabled, or turned off in the
  config) is no failure of the endpoint's;
- it is gone when such a row failed with the ``410 Gone`` reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, case, func, or_, select

from hub.deals import StoreReader
from hub.store.models import Notification

log = structlog.get_logger("plugins.webhooks")

NOTIFIER = "webhooks"
GONE = "410 Gone"  # the start of the reason an endpoint's 410 is recorded with
# The start of the reasons for a webhook refused without being posted (the endpoint is
# disabled or turned off): those are not the endpoint's failures.
REFUSED = "endpoint "

notifications_t = Notification.__table__


@dataclass(slots=True)
class EndpointHealth:
    failing_since: datetime | None = None
    last_error: str | None = None
    disabled: str | None = None  # why deliveries to it are refused


class Health:
    """Every configured endpoint's state, kept by the notifier as its sends end."""

    def __init__(
        self,
        names: list[str],
        disable_after: timedelta,
        forgiven_before: dict[str, datetime] | None = None,
    ) -> None:
        self.disable_after = disable_after
        # An operator switched the endpoint on again: older failures do not count.
        self.forgiven_before = forgiven_before or {}
        self.endpoints = {name: EndpointHealth() for name in names}

    def refusal(self, name: str, now: datetime) -> str | None:
        """Why ``name`` takes no more webhooks, or None while it may be tried."""
        health = self.endpoints[name]
        if (
            health.disabled is None
            and health.failing_since is not None
            and now - health.failing_since >= self.disable_after
        ):
            span = _span(self.disable_after)
            self.disable(name, f"{REFUSED}disabled after {span} of failures")
        return health.disabled

    def succeeded(self, name: str) -> None:
        health = self.endpoints[name]
        health.failing_since = health.last_error = None

    def failed(self, name: str, reason: str, now: datetime) -> None:
        health = self.endpoints[name]
        health.last_error = reason
        if health.failing_since is None:
            health.failing_since = now

    def disable(self, name: str, reason: str) -> None:
        health = self.endpoints[name]
        if health.disabled is None:
            health.disabled = reason
            log.error(
                "webhook_endpoint_disabled",
                endpoint=name,
                reason=reason,
                failing_since=health.failing_since.isoformat() if health.failing_since else None,
                last_error=health.last_error,
            )

    async def load(self, store: StoreReader, now: datetime) -> None:
        """Take up each endpoint's state from the outbox, as the last run left it."""
        t = notifications_t
        mine = t.c.notifier == NOTIFIER
        last_sent = (
            select(t.c.address, func.max(t.c.sent_at).label("at"))
            .where(mine, t.c.state == "sent")
            .group_by(t.c.address)
            .subquery()
        )
        failed = and_(
            mine,
            t.c.state.in_(["queued", "failed"]),
            t.c.attempts > 0,
            t.c.last_error.is_not(None),
            t.c.last_error.not_like(f"{REFUSED}%"),
            or_(last_sent.c.at.is_(None), t.c.created_at > last_sent.c.at),
            *(
                or_(t.c.address != name, t.c.created_at > since)
                for name, since in self.forgiven_before.items()
            ),
        )
        rows = await store.execute(
            select(
                t.c.address,
                func.min(t.c.created_at),
                func.min(case((t.c.last_error.like(f"{GONE}%"), t.c.created_at))),
            )
            .select_from(t.outerjoin(last_sent, last_sent.c.address == t.c.address))
            .where(failed)
            .group_by(t.c.address)
        )
        for name, since, gone in rows:
            if name not in self.endpoints:
                continue  # an endpoint no longer configured
            self.failed(name, "failed before the restart", _aware(since))
            if gone is not None:
                self.disable(name, f"{GONE}: the endpoint asked for no more webhooks")
            else:
                self.refusal(name, now)

    def status(self, name: str) -> dict[str, Any]:
        health = self.endpoints[name]
        if health.disabled:
            state = "disabled"
        elif health.failing_since is not None:
            state = "failing"
        else:
            state = "ok"
        return {
            "state": state,
            "failing_since": health.failing_since,
            "last_error": health.last_error,
            "reason": health.disabled,
        }


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        days = span.days
        return f"{days} day" if days == 1 else f"{days} days"
    return f"{span.total_seconds() / 3600:g}h"


def _aware(value: datetime | str) -> datetime:
    # SQLite gives an aggregate back as text when its type is lost on the way.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
