"""Keys a channel accepts once: a signed request's signature, so a replay is refused.

A claim is one row of ``nonces`` (namespace, the key's SHA-256, until when),
inserted with ``ON CONFLICT``: the first claim of a key inserts it, any later one
before it expires finds it, in this process, in another hub process on the same
PostgreSQL, or after a restart. Only the key's digest is stored, never the key.
Expired rows are deleted now and then by the claims themselves (at most once a
minute per process), with the expiry index; an expired row a claim meets before
then is taken over, so a key may be claimed again once its time is up.

It is the intake's table, not the CRM's (``tests/test_one_writer.py``), so the
intake writes it directly. A channel claims after it has checked the request's
signature and time, so a forged request never takes a row, and before it reads
the fields. A request refused after its claim (its fields, 422) keeps the claim:
sent again it would be refused all the same, so answering its replay 401 changes
nothing. A request the hub could not store (503, "retry") gives its claim back
(:func:`release_claim`), so the sender's retry of the same bytes is taken: the intake's
idempotency keys still make that at most one lead if the first was stored after all.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import structlog
from sqlalchemy import delete, literal, select

from hub.store.models import Nonce
from hub.store.ops import dialect_insert
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.intake.accept import Intake
    from hub.store import Store

log = structlog.get_logger("hub.intake")
nonces = Nonce.__table__

PURGE_EVERY = 60.0  # seconds between deletions of expired claims, per process
_last_purge: WeakKeyDictionary[Store, float] = WeakKeyDictionary()


async def claim_once(
    intake: Intake, namespace: str, key: str | bytes, ttl: timedelta | float
) -> bool:
    """Claim ``key`` in ``namespace`` for ``ttl``: True the first time, False while claimed.

    ``namespace`` names the channel (``webforms``); ``key`` is what makes a
    request unique (a signature). Committed before it returns, so every hub
    process on the store sees the claim. Raises what the store raises when it is
    unavailable: the caller cannot tell a replay then, and answers 503.
    """
    store = intake.store
    now = utcnow()
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    row = {
        "namespace": namespace,
        "key": _digest(key),
        "expires_at": now + timedelta(seconds=seconds),
    }
    async with store.write() as conn:
        stmt = dialect_insert(conn, nonces).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[nonces.c.namespace, nonces.c.key],
            set_={"expires_at": stmt.excluded.expires_at},
            where=nonces.c.expires_at <= now,  # a claim whose time is up is taken over
        ).returning(literal(1))
        claimed = (await conn.execute(stmt)).first() is not None
    if _purge_due(store):
        await _purge(store, now)
    return claimed


async def is_claimed(store: Store, namespace: str, key: str | bytes) -> bool:
    """Whether ``key`` is claimed in ``namespace`` now (by any hub process); raises what
    the store raises when it is unavailable."""
    async with store.read() as conn:
        row = (
            await conn.execute(
                select(literal(1)).where(
                    nonces.c.namespace == namespace,
                    nonces.c.key == _digest(key),
                    nonces.c.expires_at > utcnow(),
                )
            )
        ).first()
    return row is not None


async def release_claim(intake: Intake, namespace: str, key: str | bytes) -> None:
    """Give a claim back (the request it was for was not stored); never raises.

    Should the store be unavailable, the claim stays until it expires and the
    sender's retry must be signed anew.
    """
    try:
        async with intake.store.write() as conn:
            await conn.execute(
                delete(nonces).where(nonces.c.namespace == namespace, nonces.c.key == _digest(key))
            )
    except Exception as error:
        log.warning("nonce_release_failed", namespace=namespace, error=repr(error))


def _digest(key: str | bytes) -> str:
    data = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    return hashlib.sha256(data).hexdigest()


async def _purge(store: Store, now: datetime) -> None:
    """Delete expired claims, in a transaction of its own: a failure only delays it."""
    try:
        async with store.write() as conn:
            await conn.execute(delete(nonces).where(nonces.c.expires_at <= now))
    except Exception as error:
        log.warning("nonce_purge_failed", error=repr(error))


def _purge_due(store: Store) -> bool:
    now = time.monotonic()
    if now - _last_purge.get(store, float("-inf")) < PURGE_EVERY:
        return False
    _last_purge[store] = now
    return True
