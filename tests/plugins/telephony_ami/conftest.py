"""A hub with the AMI adapter pointed at a local AMI server, and the calls it stored."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.context import Hub
from hub.store.models import InboxEvent
from plugins.telephony.calls import CHANNEL
from plugins.telephony_ami import AsteriskAmi
from tests.conftest import make_hub, make_settings, wait_for
from tests.plugins.telephony_ami.ami_server import AmiServer, load_transcript

CORPUS = Path(os.environ.get("AMI_CORPUS", "/work/shared/corpora/ami"))
NAME = "telephony_ami"


def corpus_names() -> list[str]:
    """The transcripts named in expected_outcomes.json (none when the corpus is absent)."""
    outcomes = CORPUS / "expected_outcomes.json"
    return sorted(json.loads(outcomes.read_text())) if outcomes.is_file() else []


def expected(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / "expected_outcomes.json").read_text())[name]


def transcript(name: str) -> tuple[str, list[str]]:
    path = CORPUS / "transcripts" / name
    if not path.is_file():
        pytest.skip(f"AMI corpus not found at {CORPUS}")
    return load_transcript(path)


def section(server: AmiServer, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.username,
        "secret": server.secret,
        "connect_timeout": "2s",
        "reconnect_min": "0.02s",
        "reconnect_max": "0.2s",
        **overrides,
    }


@pytest.fixture
async def ami_server() -> AsyncIterator[AmiServer]:
    server = await AmiServer().start()
    yield server
    await server.stop()


StartHub = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def start_hub(sqlite_url: str) -> AsyncIterator[StartHub]:
    """``await start_hub(server, **section)``: a started hub (no intake workers, so the
    inbox keeps exactly what the adapter stored), stopped after the test."""
    hubs: list[Hub] = []

    async def start(server: AmiServer, **overrides: Any) -> Hub:
        settings = make_settings(sqlite_url, plugins={NAME: section(server, **overrides)})
        hub = make_hub(settings, extra={NAME: AsteriskAmi}, start_workers=False)
        hubs.append(hub)
        await hub.start()
        return hub

    yield start
    for hub in hubs:
        await hub.stop()


def adapter(hub: Hub) -> AsteriskAmi:
    return hub.plugins.records[NAME].instance


async def stored_calls(hub: Hub) -> list[tuple[str, dict[str, Any]]]:
    """(idempotency key, call event) of every telephony event in the inbox, in order."""
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(InboxEvent.idem_key, InboxEvent.payload)
            .where(InboxEvent.channel == CHANNEL)
            .order_by(InboxEvent.id)
        )
        return [(key, payload) for key, payload in rows.all()]


async def final_of(hub: Hub, call_id: str, within: float = 10.0) -> dict[str, Any]:
    """The final event (ended or missed) of ``call_id``, once it is stored."""

    async def final() -> dict[str, Any] | None:
        for _key, payload in await stored_calls(hub):
            if payload["call_id"] == call_id and payload["state"] in ("ended", "missed"):
                return payload
        return None

    return await wait_for(final, within)


def keys_of(calls: list[tuple[str, dict[str, Any]]], call_id: str) -> list[str]:
    """The states stored for ``call_id``: ``ringing:21``, ``answered``, ``final``..."""
    prefix = f"id:asterisk:{call_id}:"
    return [key.removeprefix(prefix) for key, payload in calls if payload["call_id"] == call_id]
