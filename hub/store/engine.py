"""Opening the store: engines, SQLite pragmas, migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).parent / "migrations"


def _json_default(value: Any) -> Any:
    return str(value)


def json_dumps(value: Any) -> str:
    return orjson.dumps(value, default=_json_default).decode()


class Store:
    """The deal store's engines.

    On SQLite all writes in this process go through one connection (``BEGIN
    IMMEDIATE``), so the intake writer and the lead workers queue on the pool
    instead of spinning on ``SQLITE_BUSY``; reads use their own connections, which
    WAL lets run beside the writer. On PostgreSQL one pooled engine does both.
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        pool_size: int = 10,
        echo: bool = False,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.dialect = "sqlite" if self.is_sqlite else "postgresql"
        common: dict[str, Any] = {
            "echo": echo,
            "json_serializer": json_dumps,
            "json_deserializer": orjson.loads,
        }
        if self.is_sqlite:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.writer = create_async_engine(
                url, pool_size=1, max_overflow=0, pool_timeout=300, **common
            )
            self.reader = create_async_engine(url, pool_size=4, max_overflow=4, **common)
            self._sqlite_setup(self.writer, sqlite_synchronous, begin="BEGIN IMMEDIATE")
            self._sqlite_setup(self.reader, sqlite_synchronous, begin="BEGIN")
        else:
            self.writer = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **common
            )
            self.reader = self.writer
        self.sessions = async_sessionmaker(self.reader, expire_on_commit=False)

    @staticmethod
    def _sqlite_setup(engine: AsyncEngine, synchronous: str, *, begin: str) -> None:
        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on exit, rolled back on error."""
        async with self.writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.connect() as conn:
            yield conn

    def session(self) -> AsyncSession:
        return self.sessions()

    async def ping(self) -> None:
        async with self.reader.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()

    # -- migrations -------------------------------------------------------------------------

    @staticmethod
    def alembic_config() -> AlembicConfig:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        return config

    async def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision`` (idempotent)."""
        config = self.alembic_config()

        def _run(connection: Connection) -> None:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        async with self.writer.begin() as conn:
            await conn.run_sync(_run)

    async def current_revision(self) -> str | None:
        async with self.reader.connect() as conn:
            return await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )

    @classmethod
    def head_revision(cls) -> str | None:
        return ScriptDirectory.from_config(cls.alembic_config()).get_current_head()
