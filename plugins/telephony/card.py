"""The caller card: who is calling, with their open deals, open tasks and last activities.

The number is matched in full E.164 through the contact-point index
(``ix_contact_points_lookup``: kind, normalized), never by its last digits: the
caller's number, in whatever local format it came, is normalized first with the
hub's default region. A stored number with an extension (``+74951234567;ext=12``)
is the same line as the number without it, so it is found too (a range over the
same index, never a ``LIKE``).

Who sees what (a choice, as amoCRM and Bitrix24 make it): a ringing phone is
answered by whoever is free, so every token sees *who* calls, the contact's name,
company and owner (with the extension to transfer to). A manager token sees the
rest (city, segment) only of a contact they own, and only the deals and tasks they
own, and the activities of their own deals (or, without a deal, of their own
contact), as everywhere in the API; ``limited`` says when the contact is not theirs.

Three short reads on one connection: the contact with its owner and company (and
other contacts sharing the number); the open deals with their traffic light
computed in the same statement (hub/lights.py's conditions); the open tasks of
those deals together with the last activities. The statements are built once with bound
parameters (building and hashing a statement cost more than running it); the
deals' statement embeds the time for its light, so it is rebuilt every ten seconds
(a light is at most that old, and the few milliseconds of the rebuild: a task that
fell due seconds ago may still be yellow). The rebuild (with its light's branch per
stage and working schedule, 20-70 ms of CPU for both statements, prepared) runs in
a thread of its own while lookups go on with the previous statements: on the loop it
stopped every lookup behind it for that long, every ten seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, tzinfo
from typing import Any

import structlog
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    case,
    exists,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from hub import lights
from hub.api.common import iso
from hub.config import Settings
from hub.deals import StoreReader
from hub.store.models import Activity, Company, Contact, ContactPoint, Deal, Stage, Task, User
from hub.store.ops import Catalog
from hub.worktime import Team

log = structlog.get_logger("plugins.telephony")
MATCHES = 6  # contacts sharing one number (a switchboard, a family): the best and five more
ACTIVITIES = 3
# The deals' statement embeds the time its light is computed for; building and compiling it
# costs several lookups' time, so it is rebuilt when this many seconds have passed.
LIGHT_RESOLUTION = 10


def base_number(e164: str) -> str:
    """The line without its extension: ``+74951234567;ext=12`` → ``+74951234567``."""
    return e164.split(";", 1)[0]


def number_params(e164: str) -> dict[str, str]:
    """The bound values of :func:`phone_points` for a number."""
    base = base_number(e164)
    # ";" sorts just before "<": every "BASE;ext=N", and nothing else, lies between the two
    return {"number": base, "after": base + ";", "before": base + "<"}


def phone_points() -> ColumnElement[bool]:
    """Phone points of the line ``:number``, with or without an extension after it."""
    return and_(
        ContactPoint.kind == "phone",
        or_(
            ContactPoint.normalized == bindparam("number"),
            and_(
                ContactPoint.normalized > bindparam("after"),
                ContactPoint.normalized < bindparam("before"),
            ),
        ),
    )


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """1 or 0, never NULL: PostgreSQL sorts NULL first in a descending order."""
    return case((condition, 1), else_=0)


def best_first(limited: bool) -> list[ColumnElement[Any]]:
    """Which of several contacts with the number the card shows: the exact number before
    one with an extension, the manager's (``:viewer``) own contact when ``limited``, one
    with an open deal, the latest."""
    open_deal = exists().where(Deal.contact_id == Contact.id, Deal.status == "open")
    order = [_flag(ContactPoint.normalized == bindparam("number")).desc()]
    if limited:
        order.append(_flag(Contact.owner_id == bindparam("viewer")).desc())
    return [*order, _flag(open_deal).desc(), Contact.updated_at.desc(), Contact.id.desc()]


def _contacts(limited: bool) -> Select[Any]:
    owner = aliased(User, name="owner")
    return (
        select(
            Contact.id,
            Contact.name,
            Contact.city,
            Contact.segment,
            Contact.owner_id,
            Contact.company_id,
            Company.name.label("company_name"),
            owner.name.label("owner_name"),
            owner.email.label("owner_email"),
            owner.extension.label("owner_extension"),
        )
        .select_from(ContactPoint)
        .join(Contact, Contact.id == ContactPoint.contact_id)
        .outerjoin(Company, Company.id == Contact.company_id)
        .outerjoin(owner, owner.id == Contact.owner_id)
        .where(phone_points())
        .order_by(*best_first(limited))
        .limit(MATCHES)
    )


def _agenda(limited: bool, own_contact: bool) -> Any:
    """The open tasks of the contact's open deals and its last activities, in one statement
    (``what`` tells them apart; ``at`` is a task's due time, an activity's time)."""
    # Tasks through the contact's open deals: tasks are indexed by deal, not by contact.
    deals = select(Deal.id).where(Deal.contact_id == bindparam("contact"), Deal.status == "open")
    tasks = (
        select(
            literal("task").label("what"),
            Task.id,
            Task.title.label("text"),
            Task.kind,
            Task.deal_id,
            Task.due_at.label("at"),
            User.email.label("owner"),
            literal(None, String).label("direction"),
        )
        .outerjoin(User, User.id == Task.owner_id)
        .where(Task.deal_id.in_(deals.scalar_subquery()), Task.done_at.is_(None))
    )
    if limited:
        tasks = tasks.where(Task.owner_id == bindparam("viewer"))
    activities = (
        select(Activity)
        .where(Activity.contact_id == bindparam("contact"))
        .order_by(Activity.occurred_at.desc(), Activity.id.desc())
        .limit(ACTIVITIES)
    )
    if limited:
        # A manager sees the activities of their own deals, and of their own contact's no deal.
        theirs = exists().where(Deal.id == Activity.deal_id, Deal.owner_id == bindparam("viewer"))
        activities = activities.where(
            or_(theirs, Activity.deal_id.is_(None)) if own_contact else theirs
        )
    last = activities.subquery("last_activities")
    return union_all(
        tasks,
        select(
            literal("activity"),
            last.c.id,
            last.c.summary,
            last.c.kind,
            last.c.deal_id,
            last.c.occurred_at,
            literal(None, String),
            last.c.direction,
        ),
    )


def _deals(
    limited: bool, catalog: Catalog | None, settings: Settings, now: datetime
) -> Select[Any]:
    found = (
        lights.conditions(catalog, now, settings.hub.timezone, Team.of_catalog(settings, catalog))
        if catalog is not None
        else {}
    )
    stmt = (
        select(
            Deal.id,
            Deal.title,
            Deal.stage_id,
            Deal.amount,
            Deal.currency,
            Stage.key.label("stage_key"),
            Stage.name.label("stage_name"),
            User.email.label("owner_email"),
            *(condition.label(f"light_{name}") for name, condition in found.items()),
        )
        .join(Stage, Stage.id == Deal.stage_id)
        .outerjoin(User, User.id == Deal.owner_id)
        .where(Deal.contact_id == bindparam("contact"), Deal.status == "open")
        .order_by(Deal.id.desc())
    )
    return stmt.where(Deal.owner_id == bindparam("viewer")) if limited else stmt


class CallerCards:
    """Reads caller cards; one per plugin, holding its statements. ``prepare`` (the
    reader's :class:`~plugins.telephony.prepared.Statements`) is given each rebuilt
    deals' statement in the rebuilding thread, so no lookup compiles it."""

    def __init__(self, settings: Settings, prepare: Callable[[Any], object] | None = None) -> None:
        self.settings = settings  # the hub's timezone, and each owner's working time
        self.prepare = prepare
        self.contacts = {limited: _contacts(limited) for limited in (False, True)}
        self.agenda = {
            (limited, own): _agenda(limited, own)
            for limited in (False, True)
            for own in (False, True)
        }
        # ((second, id of the catalog), statements): replaced whole, so a lookup in another
        # thread never sees the statements of one window with the key of another
        self._deals: tuple[tuple[int, int], dict[bool, Select[Any]]] | None = None
        self._rebuilding: Future[None] | None = None
        self._rebuilder = ThreadPoolExecutor(1, thread_name_prefix="card-lights")
        self._lock = threading.Lock()

    def deals(self, limited: bool, catalog: Catalog | None, now: datetime) -> Select[Any]:
        """The open deals' statement, its light as of at most LIGHT_RESOLUTION seconds ago
        (and the rebuild's few milliseconds)."""
        second = int(now.timestamp())
        key = (second - second % LIGHT_RESOLUTION, id(catalog))
        current = self._deals
        if current is None or current[0][1] != key[1]:  # nothing for this catalog yet
            current = self._deals = (key, self._build(catalog, key[0], now.tzinfo))
        elif current[0] != key:
            with self._lock:
                if self._rebuilding is None:
                    self._rebuilding = self._rebuilder.submit(
                        self._rebuild, catalog, key, now.tzinfo
                    )
        return current[1][limited]

    def _build(
        self, catalog: Catalog | None, second: int, zone: tzinfo | None
    ) -> dict[bool, Select[Any]]:
        at = datetime.fromtimestamp(second, zone)
        built = {flag: _deals(flag, catalog, self.settings, at) for flag in (False, True)}
        if self.prepare is not None:
            for statement in built.values():
                self.prepare(statement)
        return built

    def _rebuild(self, catalog: Catalog | None, key: tuple[int, int], zone: tzinfo | None) -> None:
        try:
            built = self._build(catalog, key[0], zone)
            current = self._deals
            if current is None or current[0][1] == key[1]:  # not meanwhile another catalog's
                self._deals = (key, built)
        except Exception:  # the next lookup tries again; until then the previous light
            log.exception("card_lights_rebuild_failed")
        finally:
            with self._lock:
                self._rebuilding = None

    def close(self) -> None:
        self._rebuilder.shutdown(wait=False, cancel_futures=True)

    async def card(
        self,
        reader: StoreReader,
        e164: str,
        *,
        viewer: int | None,
        catalog: Catalog | None,
        now: datetime,
    ) -> dict[str, Any]:
        """The card of the contact calling from ``e164``; ``viewer`` is a manager's user id
        (``None``: a head or admin, who sees everything); ``{"known": false}`` if nobody
        has the number."""
        limited = viewer is not None
        params: dict[str, Any] = number_params(e164)
        if limited:
            params["viewer"] = viewer
        matches = (await reader.execute(self.contacts[limited], params)).all()
        if not matches:
            return {"known": False, "phone": e164}
        seen: dict[int, Any] = {}
        for row in matches:  # a contact holding the number twice is one match
            seen.setdefault(row.id, row)
        row, *others = seen.values()
        own = not limited or row.owner_id == viewer
        card: dict[str, Any] = {
            "known": True,
            "phone": e164,
            "limited": not own,
            "contact": {
                "id": row.id,
                "name": row.name,
                "company": (
                    {"id": row.company_id, "name": row.company_name}
                    if row.company_id is not None
                    else None
                ),
                "segment": row.segment if own else None,
                "city": row.city if own else None,
                "owner": (
                    {
                        "id": row.owner_id,
                        "name": row.owner_name,
                        "email": row.owner_email,
                        "extension": row.owner_extension,
                    }
                    if row.owner_id is not None
                    else None
                ),
            },
            "other_contacts": [{"id": o.id, "name": o.name} for o in others],
        }
        params = {"contact": row.id, **({"viewer": viewer} if limited else {})}
        deals = await reader.execute(self.deals(limited, catalog, now), params)
        card["deals"] = [_deal(d, catalog) for d in deals.mappings()]
        tasks, activities = [], []
        for item in await reader.execute(self.agenda[limited, own], params):
            (tasks if item.what == "task" else activities).append(item)
        tasks.sort(key=lambda t: (t.at, t.id))
        activities.sort(key=lambda a: (a.at, a.id), reverse=True)
        card["tasks"] = [
            {
                "id": t.id,
                "title": t.text,
                "kind": t.kind,
                "deal_id": t.deal_id,
                "due_at": iso(t.at),
                "overdue": t.at < now,
                "owner": t.owner,
            }
            for t in tasks
        ]
        card["activities"] = [
            {
                "id": a.id,
                "kind": a.kind,
                "direction": a.direction,
                "summary": a.text,
                "deal_id": a.deal_id,
                "occurred_at": iso(a.at),
            }
            for a in activities
        ]
        return card


def _deal(row: Any, catalog: Catalog | None) -> dict[str, Any]:
    light = None
    if catalog is not None:
        flags = {n: bool(row[f"light_{n}"]) for n in (*lights.RED, *lights.YELLOW)}
        light = deal_light(flags, catalog, row["stage_id"])
    return {
        "id": row["id"],
        "title": row["title"],
        "stage": row["stage_key"],
        "stage_name": row["stage_name"],
        "amount": row["amount"],
        "currency": row["currency"],
        "owner": row["owner_email"],
        "light": light,
    }


def deal_light(flags: dict[str, bool], catalog: Catalog, stage_id: int) -> dict[str, Any]:
    """Colour and reasons from the light's conditions, worded as everywhere else."""
    return lights.light_of(flags, catalog, stage_id).as_dict()
