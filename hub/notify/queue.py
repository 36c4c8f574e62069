"""Who hears about what: "tell the owner and the head" turned into outbox rows.

A rule names recipients as the config does (``owner``, ``head``, ``admin``,
``user:EMAIL``, ``chat:NAME``) and, optionally, the notifiers to use (``via``);
:meth:`Notifications.queue` returns one :class:`QueueNotification` per recipient
and notifier that can reach them, each with its own idempotency key and, for a
person in their quiet hours, held until those hours end. The caller hands the
changes to the writer with whatever caused them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from hub.config import Settings, User
from hub.deals.changes import QueueNotification
from hub.notify import Notifier, Recipient
from hub.store.ops import Catalog

log = structlog.get_logger("hub.notify")

# Webhooks subscribe to events themselves; a rule's "tell someone" means people and chats.
PEOPLE_NOTIFIERS_EXCLUDE = frozenset({"webhooks"})


@dataclass(frozen=True, slots=True)
class Target:
    recipient: Recipient
    user: User | None  # the config of the person, for their timezone and quiet hours


class Notifications:
    def __init__(
        self,
        settings: Settings,
        notifiers: Callable[[], Mapping[str, Notifier]],
        catalog: Callable[[], Catalog | None],
    ) -> None:
        self.settings = settings
        self._notifiers = notifiers
        self._catalog = catalog
        self._users = {u.email: u for u in settings.users}

    def deal_url(self, deal_id: int | None) -> str | None:
        if deal_id is None:
            return None
        return self.settings.notifications.deal_url.format(id=deal_id)

    def queue(
        self,
        *,
        to: Iterable[str],
        template: str,
        context: Mapping[str, Any],
        key: str,
        now: datetime,
        via: Sequence[str] | None = None,
        deal: Mapping[str, Any] | None = None,
        event_type: str | None = None,
    ) -> list[QueueNotification]:
        """Outbox rows for ``template`` to everyone ``to`` names, through ``via`` (default:
        every notifier for people that can reach them). ``key`` names the cause ("trigger
        lost_to_competitor, event 812"); each row's key adds the recipient and notifier."""
        notifiers = self._notifiers()
        chosen = (
            [notifiers[name] for name in via if name in notifiers]
            if via is not None
            else [n for name, n in notifiers.items() if name not in PEOPLE_NOTIFIERS_EXCLUDE]
        )
        if via is not None:
            for name in via:
                if name not in notifiers:
                    log.warning("notifier_not_running", notifier=name, key=key)
        deal_id = deal.get("id") if deal else None
        body = jsonable(dict(context))
        if deal_id is not None:
            body.setdefault("link", self.deal_url(deal_id))
        out: list[QueueNotification] = []
        seen: set[tuple[str, str]] = set()
        for target in self.targets(to, deal):
            for notifier in chosen:
                address = notifier.address(target.recipient)
                if address is None or (notifier.name, address) in seen:
                    continue
                seen.add((notifier.name, address))
                out.append(
                    QueueNotification(
                        key=f"{key}:{notifier.name}:{address}",
                        notifier=notifier.name,
                        address=address,
                        template=template,
                        context={
                            **body,
                            "recipient": target.user.name if target.user else target.recipient.name,
                        },
                        event_type=event_type,
                        deal_id=deal_id,
                        user_id=target.recipient.user_id,
                        not_before=self.quiet_until(target.user, now),
                    )
                )
        return out

    def targets(self, to: Iterable[str], deal: Mapping[str, Any] | None) -> list[Target]:
        """The people and chats ``to`` names, for ``deal`` (whose owner "owner" means)."""
        catalog = self._catalog()
        ids = catalog.user_ids if catalog else {}
        emails = catalog.user_emails if catalog else {}
        found: list[Target] = []
        for name in to:
            if name == "owner":
                owner = emails.get(deal.get("owner_id")) if deal else None
                if owner is not None:
                    found.append(self._person(owner, ids))
            elif name in ("head", "admin"):
                found.extend(
                    self._person(u.email, ids)
                    for u in self.settings.users
                    if u.role == name and u.active
                )
            elif name.startswith("user:"):
                email = name.removeprefix("user:").lower()
                if email in self._users:
                    found.append(self._person(email, ids))
                else:
                    log.warning("notify_unknown_user", user=email)
            elif name.startswith("chat:"):
                found.append(Target(Recipient(None, name=name.removeprefix("chat:")), None))
        return found

    def _person(self, email: str, ids: Mapping[str, int]) -> Target:
        user = self._users.get(email)
        return Target(
            Recipient(
                ids.get(email),
                email=email,
                telegram_chat_id=user.telegram_chat_id if user else None,
                name=user.name if user else None,
            ),
            user,
        )

    def quiet_until(self, user: User | None, now: datetime) -> datetime | None:
        """When ``user``'s quiet hours covering ``now`` end; None when they are not quiet."""
        if user is None:
            return None
        hours = user.quiet_hours or self.settings.notifications.quiet_hours
        if not hours:
            return None
        zone = ZoneInfo(user.timezone or self.settings.hub.timezone)
        local = now.astimezone(zone)
        start, end = (time.fromisoformat(part) for part in _clock(hours))
        today = local.time()
        quiet = start <= today < end if start < end else today >= start or today < end
        if not quiet:
            return None
        day: date = local.date()
        if start >= end and today >= start:
            day += timedelta(days=1)  # "21:00-09:00" at 23:00: quiet until tomorrow 09:00
        return datetime.combine(day, end, tzinfo=zone).astimezone(now.tzinfo)


def _clock(hours: str) -> tuple[str, str]:
    start, end = hours.split("-")
    return start, "23:59:59" if end == "24:00" else end


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold (amounts, times, sets) written as text."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value
