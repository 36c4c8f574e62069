"""A changed policy tried on the store's history before it is enabled (``hub rules simulate``).

Every stage move recorded in the last N days (``stage_history``: moves, wins and losses)
is replayed as the typed change it was (:class:`~hub.deals.changes.MoveStage`,
``CloseWon`` with the amount, ``CloseLost`` with the reason and competitor of its event,
each with its override) by whoever made it, through the ``hub_guard`` of every guard the
candidate config enables (the built-in stage rules with the candidate's pipelines,
catalog and ``[plugins.stage_rules]``). The answer: how many moves the guards would have
refused, by manager, by reason, with a few deals for each.

A guard judges a move by the store, so the store is put back as it was before the move,
inside one transaction that is always rolled back: the deal's stage and status, its
title, amount, currency, segment and custom fields (from the ``deal.created``,
``deal.updated`` and ``deal.won`` events), its open tasks (by when each was created and
done) and its client's phones and emails (by when each was added). The guards read it
through the read-only :class:`~hub.deals.StoreReader`, as in the writer.

Moves are judged in rounds, not one by one: round k holds the k-th move of every deal,
each deal restored to its own moment before the round's guard calls (one call per actor,
a batch of every move that actor made in the round), and the round's restoration is
undone with a savepoint. Five thousand moves over a thousand deals are a handful of
rounds: a few seconds, not five thousand guard calls. What this does not restore (a
contact's name, city and segment, roles, other tables) is as it is now; the report says so.
"""

from __future__ import annotations

import dataclasses
import math
import time
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import ConfigError, Settings, format_validation_error
from hub.context import Hub
from hub.deals import Actor, Refusal, StoreReader, what_if
from hub.deals import changes as ch
from hub.plugins import PluginHost
from hub.store import Store
from hub.store.models import ContactPoint, Deal, DomainEvent, StageChange, Task, User
from hub.store.ops import Catalog, StageInfo, load_catalog
from hub.store.types import utcnow

TEXTS = tomllib.loads((Path(__file__).with_name("templates") / "simulate.toml").read_text())
EXAMPLES = 3  # deals shown per reason
CHUNK = 500  # ids per IN (...) list

deals_t = Deal.__table__
tasks_t = Task.__table__
points_t = ContactPoint.__table__
history_t = StageChange.__table__
events_t = DomainEvent.__table__

MOVE_EVENTS = ("deal.stage_changed", "deal.won", "deal.lost")
FIELD_EVENTS = ("deal.created", "deal.updated", "deal.won")
FIELDS = ("title", "amount", "currency", "segment", "custom")
KNOWN_AT_CREATION = ("title", "amount")  # what deal.created records of the deal's fields


class SimulationError(Exception):
    """The history cannot be replayed (a store without the hub's tables)."""


# -- the candidate policy ------------------------------------------------------------------


def candidate_settings(current: Settings, path: Path) -> Settings:
    """The current settings with the candidate file's sections in place of theirs.

    A section of the candidate replaces the current one (``[pipelines]`` all pipelines,
    ``[catalog]``...); under ``[plugins]`` each plugin's section replaces that plugin's
    alone. The store is always the current one: its history is what is replayed. So the
    candidate may be a whole copy of the config, edited, or only the sections it changes.
    Raises :class:`ConfigError` naming each bad key.
    """
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    data = current.model_dump(round_trip=True, exclude={"config_path"})
    for key, value in raw.items():
        if key == "plugins" and isinstance(value, dict):
            data["plugins"] = {**data["plugins"], **value}
        elif key != "store":
            data[key] = value
    data["store"]["url"] = current.store_url
    try:
        settings = Settings(**data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None
    settings.config_path = current.config_path
    return settings


# -- what happened -------------------------------------------------------------------------


@dataclass(slots=True)
class Move:
    """One recorded stage move, as the change it was and what the candidate says to it."""

    deal_id: int
    contact_id: int | None
    at: datetime
    order: tuple[datetime, float]  # where the move falls among the deal's events
    source: StageInfo
    target: StageInfo
    change: ch.Change
    actor: Actor
    manager: str
    override: str | None
    matched: bool  # its event was found (who made it, the loss reason)
    fields: dict[str, Any] = field(default_factory=dict)  # the deal's fields before it
    assumed_empty: bool = False
    refusals: list[Refusal] = field(default_factory=list)
    by_override: bool = False  # allowed as made, refused without its override


@dataclass(slots=True)
class Report:
    policy: str | None  # the candidate file; None: the current config
    days: int
    since: datetime
    until: datetime
    timezone: str
    moves: int = 0
    refused: int = 0
    by_override: int = 0
    assumed_empty: int = 0
    unmatched: int = 0
    seconds: float = 0.0
    by_manager: list[dict[str, Any]] = field(default_factory=list)
    by_reason: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["since"], out["until"] = self.since.isoformat(), self.until.isoformat()
        out["seconds"] = round(self.seconds, 3)
        out["summary"] = headline(self)
        out["approximations"] = approximations(self)
        return out


async def simulate(
    settings: Settings,
    days: int,
    *,
    policy: str | None = None,
    now: datetime | None = None,
    plugins: PluginHost | None = None,
) -> Report:
    """Replay the moves of the last ``days`` days through the guards ``settings`` enable."""
    started = time.perf_counter()
    until = now or utcnow()
    report = Report(policy, days, until - timedelta(days=days), until, settings.hub.timezone)
    hub = Hub(settings, plugins=plugins, start_workers=False)  # the candidate's guards
    try:
        revision = await hub.store.current_revision()
        if revision is None or revision != Store.head_revision():
            raise SimulationError(
                f"the store is at schema {revision or 'none'}, not "
                f"{Store.head_revision()}: run `hub db upgrade` first"
            )
        async with hub.store.read() as conn:
            hub.catalog = await load_catalog(conn, settings)
            moves = await _moves(conn, hub.catalog, settings, report.since, report.until)
        await _replay(hub, moves)
    finally:
        await hub.store.close()
    _tally(report, moves)
    report.seconds = time.perf_counter() - started
    return report


async def _moves(
    conn: AsyncConnection, catalog: Catalog, settings: Settings, since: datetime, until: datetime
) -> list[Move]:
    rows = (
        await conn.execute(
            select(history_t)
            .where(
                history_t.c.changed_at >= since,
                history_t.c.changed_at <= until,
                history_t.c.from_stage_id.is_not(None),
            )
            .order_by(history_t.c.changed_at, history_t.c.id)
        )
    ).all()
    events: dict[tuple[int, datetime, str], list[Any]] = defaultdict(list)
    found = await conn.execute(
        select(events_t.c.id, events_t.c.subject_id, events_t.c.occurred_at, events_t.c.payload)
        .where(
            events_t.c.type.in_(MOVE_EVENTS),
            events_t.c.occurred_at >= since,
            events_t.c.occurred_at <= until,
        )
        .order_by(events_t.c.id)
    )
    for event in found:
        target = event.payload.get("to_stage") or event.payload.get("stage")
        events[(event.subject_id, event.occurred_at, target)].append(event)
    users = {r.id: r for r in await conn.execute(select(User.id, User.email, User.role))}
    deal_ids = sorted({r.deal_id for r in rows})
    deals: dict[int, Any] = {}
    history: dict[int, list[tuple[tuple[datetime, float], dict[str, Any]]]] = defaultdict(list)
    for start in range(0, len(deal_ids), CHUNK):
        chunk = deal_ids[start : start + CHUNK]
        for deal in await conn.execute(select(deals_t).where(deals_t.c.id.in_(chunk))):
            deals[deal.id] = deal
        for event in await conn.execute(
            select(
                events_t.c.id,
                events_t.c.type,
                events_t.c.subject_id,
                events_t.c.occurred_at,
                events_t.c.payload,
            ).where(
                events_t.c.subject == "deal",
                events_t.c.subject_id.in_(chunk),
                events_t.c.type.in_(FIELD_EVENTS),
            )
        ):
            history[event.subject_id].append(((event.occurred_at, event.id), _set_by(event)))
    for changes in history.values():
        changes.sort(key=lambda item: item[0])
    moves: list[Move] = []
    for row in rows:
        source = catalog.stages_by_id.get(row.from_stage_id)
        target = catalog.stages_by_id.get(row.to_stage_id)
        deal = deals.get(row.deal_id)
        if source is None or target is None or deal is None or source.kind != "open":
            continue  # a reopen (from won or lost) is not a move the stage guards judge
        queue = events.get((row.deal_id, row.changed_at, target.key))
        event = queue.pop(0) if queue else None
        actor = _actor(event, row, users, settings)
        move = Move(
            deal_id=row.deal_id,
            contact_id=deal.contact_id,
            at=row.changed_at,
            order=(row.changed_at, event.id if event is not None else math.inf),
            source=source,
            target=target,
            change=_change(row, target, event, deal),
            actor=actor,
            manager=_manager(actor, users),
            override=row.override,
            matched=event is not None,
        )
        move.fields, move.assumed_empty = _fields_before(move.order, deal, history[row.deal_id])
        moves.append(move)
    return moves


def _set_by(event: Any) -> dict[str, Any]:
    """The deal's fields an event set, by name."""
    payload = event.payload
    if event.type == "deal.created":
        return {name: payload.get(name) for name in KNOWN_AT_CREATION}
    if event.type == "deal.won":
        return {"amount": payload.get("amount")}
    return {k: v for k, v in (payload.get("changed") or {}).items() if k in FIELDS}


def _fields_before(
    order: tuple[datetime, float],
    deal: Any,
    history: list[tuple[tuple[datetime, float], dict[str, Any]]],
) -> tuple[dict[str, Any], bool]:
    """The deal's fields just before the move; and whether one had to be taken as empty."""
    out: dict[str, Any] = {}
    assumed = False
    for name in FIELDS:
        changed_later = any(when > order and name in set_ for when, set_ in history)
        if not changed_later:
            out[name] = deal._mapping[name]
            continue
        before = [set_[name] for when, set_ in history if when < order and name in set_]
        if before:
            out[name] = before[-1]
        else:
            # Set at creation to a value no event recorded: most likely nothing yet.
            out[name] = {} if name == "custom" else None
            assumed = True
    amount = out["amount"]
    out["amount"] = Decimal(str(amount)) if amount not in (None, "") else None
    out["custom"] = dict(out["custom"] or {})
    if out["title"] is None:
        out["title"] = deal.title
    return out, assumed


def _actor(event: Any, row: Any, users: dict[int, Any], settings: Settings) -> Actor:
    """Who made the move, with their role under the candidate (else as it is now)."""
    if event is None:
        user = users.get(row.user_id)
        return Actor("user", user.email, user.id, user.role) if user else Actor("unknown", "—")
    made_by = event.payload.get("actor") or {}
    kind, name = made_by.get("kind", "unknown"), made_by.get("name", "—")
    user = users.get(made_by.get("user_id"))
    role = None
    if user is not None:  # the role the candidate gives them, else the one they have
        role = next((u.role for u in settings.users if u.email == user.email), user.role)
    if kind == "token" and name in settings.api.tokens:
        role = settings.api.tokens[name].role
    elif kind not in ("user", "token"):
        role = None
    return Actor(kind, name, user.id if user is not None else None, role)


def _manager(actor: Actor, users: dict[int, Any]) -> str:
    user = users.get(actor.user_id) if actor.user_id is not None else None
    if user is not None:
        return user.email
    return f"rule:{actor.name}" if actor.kind == "rule" else f"{actor.kind}: {actor.name}"


def _change(row: Any, target: StageInfo, event: Any, deal: Any) -> ch.Change:
    payload = event.payload if event is not None else {}
    if target.kind == "won":
        amount = payload.get("amount", ch.UNSET) if event is not None else ch.UNSET
        if amount is not ch.UNSET and amount is not None:
            amount = Decimal(str(amount))
        return ch.CloseWon(deal=row.deal_id, amount=amount, override=row.override)
    if target.kind == "lost":
        if event is None:  # no event to tell: the reason the deal carries now
            return ch.CloseLost(
                deal=row.deal_id,
                reason=deal.loss_reason,
                competitor=deal.competitor,
                override=row.override,
            )
        return ch.CloseLost(
            deal=row.deal_id,
            reason=payload.get("reason"),
            competitor=payload.get("competitor"),
            override=row.override,
        )
    return ch.MoveStage(deal=row.deal_id, stage=target.key, override=row.override)


# -- the replay, rolled back ---------------------------------------------------------------


async def _replay(hub: Hub, moves: list[Move]) -> None:
    """Judge every move in rounds, in one transaction that is never committed."""
    rounds: list[list[Move]] = []
    seen: dict[int, int] = defaultdict(int)
    for move in sorted(moves, key=lambda m: m.order):
        k = seen[move.deal_id]
        seen[move.deal_id] += 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(move)
    if not rounds:
        return
    async with what_if.rolled_back(hub.store) as conn:
        reader = StoreReader(conn)
        for round_ in rounds:
            savepoint = await conn.begin_nested()
            try:
                await what_if.restore(
                    conn,
                    [
                        what_if.DealThen(
                            deal_id=m.deal_id,
                            stage_id=m.source.id,
                            at=m.at,
                            contact_id=m.contact_id,
                            **{name: m.fields[name] for name in FIELDS},
                        )
                        for m in round_
                    ],
                )
                await _judge(hub, round_, reader)
            finally:
                await savepoint.rollback()


async def _judge(hub: Hub, moves: Sequence[Move], reader: StoreReader) -> None:
    """The guards' verdict on each move as made, and on overridden ones without the override."""
    by_actor: dict[Actor, list[Move]] = defaultdict(list)
    for move in moves:
        by_actor[move.actor].append(move)
    for actor, made in by_actor.items():
        verdicts = await _verdicts(hub, actor, [(m, m.change) for m in made], reader)
        for move, refusals in zip(made, verdicts, strict=True):
            move.refusals = refusals
        allowed = [m for m in made if m.override and not m.refusals]
        if allowed:
            bare = [(m, dataclasses.replace(m.change, override=None)) for m in allowed]  # type: ignore[type-var]
            for move, refusals in zip(
                allowed, await _verdicts(hub, actor, bare, reader), strict=True
            ):
                move.by_override = bool(refusals)


async def _verdicts(
    hub: Hub, actor: Actor, batch: list[tuple[Move, ch.Change]], reader: StoreReader
) -> list[list[Refusal]]:
    """Each change's refusals, from one guard call for the whole batch."""
    found = await hub.guard([c for _, c in batch], actor, reader)
    index = {id(c): i for i, (_, c) in enumerate(batch)}
    out: list[list[Refusal]] = [[] for _ in batch]
    loose = []
    for refusal in found:
        at = index.get(id(refusal.change)) if refusal.change is not None else None
        if at is None:
            loose.append(refusal)
        else:
            out[at].append(refusal)
    if loose and len(batch) > 1:
        # A refusal naming none of the changes refuses a whole batch; each move was its
        # own batch when it was made, so judge them one by one to know whose it is.
        return [(await _verdicts(hub, actor, [one], reader))[0] for one in batch]
    if loose:
        out[0].extend(loose)
    return out


# -- the report ----------------------------------------------------------------------------


def _tally(report: Report, moves: list[Move]) -> None:
    report.moves = len(moves)
    report.refused = sum(1 for m in moves if m.refusals)
    report.by_override = sum(1 for m in moves if m.by_override)
    report.assumed_empty = sum(1 for m in moves if m.assumed_empty)
    report.unmatched = sum(1 for m in moves if not m.matched)
    managers: dict[str, dict[str, Any]] = {}
    reasons: dict[tuple[str, str], dict[str, Any]] = {}
    for move in moves:
        line = managers.setdefault(
            move.manager, {"manager": move.manager, "moves": 0, "refused": 0, "by_override": 0}
        )
        line["moves"] += 1
        line["refused"] += bool(move.refusals)
        line["by_override"] += move.by_override
        for text in dict.fromkeys((r.guard or "guard", r.reason, r.field) for r in move.refusals):
            guard, reason, rule = text
            entry = reasons.setdefault(
                (guard, reason),
                {
                    "guard": guard,
                    "rule": f"{guard}.{rule}" if rule else guard,
                    "reason": reason,
                    "moves": 0,
                    "examples": [],
                },
            )
            entry["moves"] += 1
            shown = {e["deal"] for e in entry["examples"]}
            if len(entry["examples"]) < EXAMPLES and move.deal_id not in shown:
                entry["examples"].append(
                    {
                        "deal": move.deal_id,
                        "title": move.fields["title"],
                        "manager": move.manager,
                        "at": move.at.isoformat(),
                        "from": move.source.name,
                        "to": move.target.name,
                    }
                )
    report.by_manager = sorted(
        managers.values(), key=lambda m: (-m["refused"], -m["moves"], m["manager"])
    )
    report.by_reason = sorted(reasons.values(), key=lambda r: (-r["moves"], r["reason"]))


def number(value: int) -> str:
    """4120 → "4 120", with a narrow no-break space, as Russian text writes it."""
    return f"{value:,}".replace(",", "\u202f")


def plural(count: int, words: str) -> str:
    one, few, many = TEXTS["words"][words]
    n = abs(count) % 100
    form = many if 11 <= n <= 19 else {1: one, 2: few, 3: few, 4: few}.get(n % 10, many)
    return form.format(n=number(count))


def say(key: str, **values: Any) -> str:
    return TEXTS[key].format(**values)


def headline(report: Report) -> str:
    period = plural(report.days, "days")
    if not report.moves:
        return say("nothing", period=period)
    return say(
        "headline",
        refused=number(report.refused),
        moves=number(report.moves),
        moves_word=plural(report.moves, "moves_of"),
        period=period,
    )


def approximations(report: Report) -> list[str]:
    lines = [say("restored"), say("history_kept")]
    if report.assumed_empty:
        lines.append(
            say(
                "assumed_empty",
                count=number(report.assumed_empty),
                count_word=plural(report.assumed_empty, "moves_in"),
            )
        )
    if report.unmatched:
        lines.append(
            say(
                "unmatched",
                count=number(report.unmatched),
                count_word=plural(report.unmatched, "moves_at"),
            )
        )
    return lines


def describe(report: Report) -> list[str]:
    """The report as lines of text, in Russian."""
    zone = ZoneInfo(report.timezone)
    policy = say("policy_candidate", path=report.policy) if report.policy else say("policy_current")
    lines = [
        say(
            "title",
            policy=policy,
            period=plural(report.days, "days"),
            since=report.since.astimezone(zone).strftime("%d.%m.%Y %H:%M"),
            until=report.until.astimezone(zone).strftime("%d.%m.%Y %H:%M"),
        ),
        "",
        headline(report),
    ]
    if not report.moves:
        return lines
    if report.by_override:
        lines.append(
            say(
                "by_override",
                count=number(report.by_override),
                count_word=plural(report.by_override, "moves_passed"),
            )
        )
    lines += ["", say("by_manager")]
    for line in report.by_manager:
        text = say(
            "manager",
            manager=line["manager"],
            refused=number(line["refused"]),
            moves=number(line["moves"]),
        )
        if line["by_override"]:
            text += say("manager_override", count=number(line["by_override"]))
        lines.append(text)
    if report.by_reason:
        lines += ["", say("by_reason")]
        for reason in report.by_reason:
            lines.append(
                say(
                    "reason",
                    count=number(reason["moves"]),
                    reason=reason["reason"],
                    rule=reason["rule"],
                )
            )
            for e in reason["examples"]:
                at = datetime.fromisoformat(e["at"]).astimezone(zone)
                lines.append(
                    say(
                        "example",
                        deal=e["deal"],
                        title=e["title"],
                        manager=e["manager"],
                        at=at.strftime("%d.%m.%Y %H:%M"),
                        source=e["from"],
                        target=e["to"],
                    )
                )
    lines += ["", say("approximations")]
    lines += [say("bullet", text=text) for text in approximations(report)]
    lines += ["", say("nothing_written")]
    lines.append(say("elapsed", seconds=f"{report.seconds:.1f}".replace(".", ",")))
    return lines
