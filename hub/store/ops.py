"""Named store operations shared by the core: upserts, config sync, the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import Settings
from hub.store.models import Counter, LossReason, Pipeline, Source, Stage, User
from hub.store.types import utcnow


def dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT that knows ``ON CONFLICT`` on both SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str],
    update_columns: Sequence[str] | None = None,
) -> None:
    if not rows:
        return
    stmt = dialect_insert(conn, table)
    if update_columns:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(key),
            set_={name: stmt.excluded[name] for name in update_columns},
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
    await conn.execute(stmt, list(rows))


async def allocate_ids(conn: AsyncConnection, table: Table, n: int) -> list[int]:
    """Reserve ``n`` primary keys of ``table`` so rows can be bulk-inserted with their ids.

    Bulk ``INSERT ... RETURNING`` in parameter order runs row by row on SQLite,
    which is most of the cost of a batch. On SQLite the caller holds the write
    lock (``BEGIN IMMEDIATE``), so ``max(id)`` is safe; on PostgreSQL ids come
    from the table's sequence, safe across processes.
    """
    if n <= 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = await conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": n},
        )
        return sorted(rows.scalars().all())
    # Never an id a deleted row had (a contact merged away is still named by its events and
    # its merge record): the highest id ever handed out is kept beside the table's max(id).
    counters = Counter.__table__
    name = f"ids.{table.name}"
    top = (
        await conn.execute(
            select(
                func.max(
                    select(func.coalesce(func.max(table.c.id), 0)).scalar_subquery(),
                    select(func.coalesce(func.max(counters.c.value), 0))
                    .where(counters.c.name == name)
                    .scalar_subquery(),
                )
            )
        )
    ).scalar_one()
    await upsert(
        conn, counters, [{"name": name, "value": top + n}], key=["name"], update_columns=["value"]
    )
    return list(range(top + 1, top + 1 + n))


async def bump_counter(conn: AsyncConnection, name: str, by: int) -> int:
    """Add ``by`` to the counter and return its value before the addition."""
    table = Counter.__table__
    await upsert(conn, table, [{"name": name, "value": 0}], key=["name"])
    result = await conn.execute(
        update(table)
        .where(table.c.name == name)
        .values(value=table.c.value + by)
        .returning(table.c.value)
    )
    return int(result.scalar_one()) - by


# -- the catalog: pipelines and stages as the lead pipeline needs them -----------------------


@dataclass(frozen=True, slots=True)
class StageInfo:
    id: int
    key: str
    name: str
    position: int
    kind: str
    probability: int
    contact_within: timedelta | None
    time_limit: timedelta | None


@dataclass(slots=True)
class PipelineInfo:
    id: int
    key: str
    name: str
    first_task: str
    stages: dict[str, StageInfo] = field(default_factory=dict)

    @property
    def entry_stage(self) -> StageInfo:
        """The first open stage: where a new deal starts."""
        return min((s for s in self.stages.values() if s.kind == "open"), key=lambda s: s.position)


@dataclass(slots=True)
class Catalog:
    pipelines: dict[str, PipelineInfo]
    default: str
    stages_by_id: dict[int, StageInfo] = field(default_factory=dict)
    pipelines_by_id: dict[int, PipelineInfo] = field(default_factory=dict)
    # The store's user ids of the configured users (by email), and back.
    user_ids: dict[str, int] = field(default_factory=dict)
    user_emails: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pipeline in self.pipelines.values():
            self.pipelines_by_id[pipeline.id] = pipeline
            for stage in pipeline.stages.values():
                self.stages_by_id[stage.id] = stage
        self.user_emails = {user_id: email for email, user_id in self.user_ids.items()}


async def sync_config(conn: AsyncConnection, settings: Settings) -> Catalog:
    """Make the store's users, pipelines, stages, sources and loss reasons match the config.

    Users missing from the config are deactivated, never deleted (their deals stay
    theirs); stages removed from the config are kept for the deals that sit in them.
    """
    now = utcnow()
    users = User.__table__
    if settings.users:
        await upsert(
            conn,
            users,
            [
                {
                    "email": u.email,
                    "name": u.name,
                    "role": u.role,
                    "active": u.active,
                    "extension": u.extension,
                    "phone": u.phone,
                    "telegram_chat_id": u.telegram_chat_id,
                    "timezone": u.timezone,
                    "created_at": now,
                }
                for u in settings.users
            ],
            key=["email"],
            update_columns=[
                "name",
                "role",
                "active",
                "extension",
                "phone",
                "telegram_chat_id",
                "timezone",
            ],
        )
    configured = [u.email for u in settings.users]
    await conn.execute(update(users).where(users.c.email.not_in(configured)).values(active=False))

    pipelines = Pipeline.__table__
    await upsert(
        conn,
        pipelines,
        [
            {
                "key": key,
                "name": p.name,
                "position": i,
                "is_default": key == settings.default_pipeline,
            }
            for i, (key, p) in enumerate(settings.pipelines.items())
        ],
        key=["key"],
        update_columns=["name", "position", "is_default"],
    )
    ids = dict((await conn.execute(select(pipelines.c.key, pipelines.c.id))).all())
    stages = Stage.__table__
    await upsert(
        conn,
        stages,
        [
            {
                "pipeline_id": ids[key],
                "key": stage.key,
                "name": stage.name,
                "position": position,
                "probability": stage.probability,
                "kind": stage.kind,
                "contact_within_s": _seconds(stage.contact_within),
                "time_limit_s": _seconds(stage.time_limit),
                "required_fields": {"fields": stage.required_fields},
            }
            for key, p in settings.pipelines.items()
            for position, stage in enumerate(p.stages)
        ],
        key=["pipeline_id", "key"],
        update_columns=[
            "name",
            "position",
            "probability",
            "kind",
            "contact_within_s",
            "time_limit_s",
            "required_fields",
        ],
    )
    await upsert(
        conn, Source.__table__, [{"name": n} for n in settings.catalog.sources], key=["name"]
    )
    await upsert(
        conn,
        LossReason.__table__,
        [{"name": n} for n in settings.catalog.loss_reasons],
        key=["name"],
    )
    return await load_catalog(conn, settings)


async def load_catalog(conn: AsyncConnection, settings: Settings) -> Catalog:
    pipelines = Pipeline.__table__
    stages = Stage.__table__
    infos: dict[str, PipelineInfo] = {}
    by_id: dict[int, PipelineInfo] = {}
    for row in (await conn.execute(select(pipelines))).mappings():
        configured = settings.pipelines.get(row["key"])
        info = PipelineInfo(
            id=row["id"],
            key=row["key"],
            name=row["name"],
            first_task=configured.first_task if configured else "Call the client",
        )
        infos[row["key"]] = info
        by_id[row["id"]] = info
    for row in (await conn.execute(select(stages).order_by(stages.c.position))).mappings():
        by_id[row["pipeline_id"]].stages[row["key"]] = StageInfo(
            id=row["id"],
            key=row["key"],
            name=row["name"],
            position=row["position"],
            kind=row["kind"],
            probability=row["probability"],
            contact_within=_delta(row["contact_within_s"]),
            time_limit=_delta(row["time_limit_s"]),
        )
    users = User.__table__
    user_ids = dict((await conn.execute(select(users.c.email, users.c.id))).all())
    return Catalog(pipelines=infos, default=settings.default_pipeline, user_ids=user_ids)


def _seconds(value: timedelta | None) -> int | None:
    return int(value.total_seconds()) if value is not None else None


def _delta(value: int | None) -> timedelta | None:
    return timedelta(seconds=value) if value is not None else None
