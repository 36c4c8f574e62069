"""The caller card's reads on PostgreSQL: prepared statements on a small asyncpg pool of their own.

Through the hub's engine a card cost, besides its three statements' SQLAlchemy work
(see :mod:`plugins.telephony.prepared`), a pre-ping, a BEGIN and a ROLLBACK: six
round trips and the greenlet bridge for each, and PostgreSQL planned the contacts' and
deals' statements anew on every run: 4 ms of the hub's CPU and 2 ms of the server's per
card, so at 500 lookups/s neither kept up (308/s, p50 201 ms). Here a lookup takes a
connection of the card's own pool (read-only sessions: ``default_transaction_read_only``),
and runs its statements with asyncpg's prepared-statement cache: one round trip each
and nothing else. The pool is small on purpose: a card needs a connection for well
under a millisecond, and more connections than cores only make PostgreSQL's
backends compete with the hub for the CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Dialect, make_url

from plugins.telephony.prepared import Rows, Statements

T = TypeVar("T")

POOL = 4  # connections; lookups beyond wait for one (the route's deadline still holds)
# The card's sessions run only the card's and the route's statements: indexed lookups of a
# few rows. Planned once per connection (a custom plan per run cost 1 ms of the server's CPU
# for the contacts' statement alone, more than running it), and for the plan for any number
# (the generic one, which must assume a range of numbers matches thousands of points) never a
# hash join over a million contacts or parallel workers: nested loops over the indexes, which
# the real lookups (one point, a few deals) want. Constants are in the statements' text
# (plugins/telephony/prepared.py: inline_constants), so the plans know 'open' and LIMIT 6.
PLANNING = {
    "plan_cache_mode": "force_generic_plan",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "max_parallel_workers_per_gather": "0",
}


class PgReader:
    """A read-only reader over an asyncpg connection, with the async reader's face."""

    def __init__(self, conn: asyncpg.Connection, statements: Statements) -> None:
        self._conn = conn
        self._statements = statements

    async def execute(self, statement: Any, parameters: Any = None) -> Rows:
        prepared = self._statements(statement)
        if not prepared.ready:
            described = await self._conn.prepare(prepared.sql)
            prepared.converters([a.type.oid for a in described.get_attributes()])
        raw = await self._conn.fetch(prepared.sql, *prepared.arguments(parameters))
        return prepared.rows(raw)

    @property
    def dialect(self) -> str:
        return "postgresql"


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Nothing to undo: the card's sessions only SELECT, outside any transaction."""


class PgReads:
    """Run ``work(reader)`` on a connection of the card's own pool, opened on first use."""

    def __init__(self, store_url: str, dialect: Dialect) -> None:
        self.dsn = make_url(store_url).set(drivername="postgresql").render_as_string(False)
        self.statements = Statements(dialect)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=1,
                    max_size=POOL,
                    reset=_no_reset,
                    server_settings={
                        "default_transaction_read_only": "on",
                        "application_name": "crm-hub caller card",
                        **PLANNING,
                    },
                )
        return self._pool

    async def read(self, work: Callable[[PgReader], Coroutine[Any, Any, T]]) -> T:
        pool = await self.pool()
        async with pool.acquire() as conn:
            return await work(PgReader(conn, self.statements))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()
