"""Requests made once: a write's idempotency key and its first answer.

An API write with an ``Idempotency-Key`` header, or a command given ``--key``, stores its
answer in the same transaction as its change; a retry with the same key and the same
request gets that answer again and changes nothing, the same key with another request is
refused. Keys are per principal (an API token, or ``cli:<who>``) and kept two days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.models import ApiRequest
from hub.store.types import utcnow

KEEP_KEYS = timedelta(hours=48)  # honoured at least 24 h, as payment APIs promise
MAX_KEY = 200

requests_t = ApiRequest.__table__


class KeyReused(Exception):
    """The key was used for another request."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The first answer to a keyed request."""

    status: int
    body: str


async def answered(
    conn: AsyncConnection, principal: str, key: str, fingerprint: str
) -> Answer | None:
    """The answer already given to this request under ``key``, or ``None`` for a new one;
    :class:`KeyReused` when the key named another request."""
    seen = (
        await conn.execute(
            select(requests_t.c.fingerprint, requests_t.c.status, requests_t.c.body).where(
                requests_t.c.principal == principal, requests_t.c.key == key
            )
        )
    ).first()
    if seen is None:
        return None
    if seen.fingerprint != fingerprint:
        raise KeyReused(key)
    return Answer(seen.status, seen.body)


async def remember(
    conn: AsyncConnection, principal: str, key: str, fingerprint: str, answer: Answer
) -> None:
    """Keep ``answer`` for retries of this request, in the transaction of its change (two
    at once with one key: the second fails on the primary key, and its change with it)."""
    now = utcnow()
    await conn.execute(delete(requests_t).where(requests_t.c.created_at < now - KEEP_KEYS))
    await conn.execute(
        insert(requests_t).values(
            principal=principal,
            key=key,
            fingerprint=fingerprint,
            status=answer.status,
            body=answer.body,
            created_at=now,
        )
    )
