"""A hub with the Mango Office adapter, the shared PBX corpus read in place, and events
signed as the VPBX signs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.api.common import HUB_KEY
from hub.app import build_app
from hub.context import Hub
from hub.store.models import InboxEvent
from plugins.telephony.calls import CHANNEL
from plugins.telephony_mango import MangoOffice
from plugins.telephony_mango.events import sign
from tests.conftest import make_hub, make_settings, wait_for

NAME = "telephony_mango"
BASE = "/telephony/mango"
# What make_samples.py signs the corpus with.
API_KEY = "test_vpbx_api_key_abcdef0123456789"
API_SALT = "test_vpbx_api_salt_9876543210"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def corpus_dir() -> Path:
    beside = (Path(__file__).parents[3] / "../shared/corpora/pbx").resolve()
    return beside if beside.is_dir() else Path("/work/shared/corpora/pbx")


CORPUS = corpus_dir() / "mango"


@dataclass(frozen=True)
class Sample:
    """One request of the corpus as the VPBX sends it, and what make_samples.py recorded."""

    name: str
    path: str  # /events/call ...: the suffix the VPBX adds to the configured address
    headers: dict[str, str]
    body: bytes
    facts: dict[str, Any]


def sample(name: str) -> Sample:
    """``mango/<name>.http`` parsed as the raw request it is; skips without the corpus."""
    path = CORPUS / f"{name}.http"
    if not path.is_file():
        pytest.skip(f"PBX corpus not found at {CORPUS}")
    head, _, body = path.read_bytes().partition(b"\r\n\r\n")
    request_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    headers.pop("Content-Length")
    facts = json.loads(path.with_suffix(".json").read_text())
    return Sample(name, request_line.split(" ")[1], headers, body, facts)


def signed(event: dict[str, Any], key: str = API_KEY, salt: str = API_SALT) -> bytes:
    """The form the VPBX posts for ``event``: compact JSON, as the corpus's."""
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return urlencode({"vpbx_api_key": key, "sign": sign(key, text, salt), "json": text}).encode()


@dataclass
class Vpbx:
    """The test client of a hub running the Mango adapter (no intake workers, so the
    inbox keeps exactly what the adapter stored)."""

    client: TestClient
    hub: Hub

    async def send(self, item: Sample) -> ClientResponse:
        return await self.client.post(BASE + item.path, headers=item.headers, data=item.body)

    async def post(
        self, suffix: str, body: bytes, headers: dict[str, str] = FORM
    ) -> ClientResponse:
        return await self.client.post(BASE + suffix, headers=headers, data=body)

    async def calls(self) -> list[tuple[str, dict[str, Any]]]:
        async with self.hub.store.read() as conn:
            rows = await conn.execute(
                select(InboxEvent.idem_key, InboxEvent.payload)
                .where(InboxEvent.channel == CHANNEL)
                .order_by(InboxEvent.id)
            )
            return [(key, payload) for key, payload in rows.all()]

    async def states(self) -> list[str]:
        """What the keys say was stored: ``ringing``, ``ringing:101``, ``answered``, ``final``."""
        return [key.split(":", 3)[3] for key, _payload in await self.calls()]


def mango_settings(store_url: str, **section: Any) -> Any:
    return make_settings(
        store_url, plugins={NAME: {"api_key": API_KEY, "api_salt": API_SALT, **section}}
    )


@pytest.fixture
async def vpbx(aiohttp_client: Callable[..., Any], store_url: str) -> Vpbx:
    """A hub with the Mango adapter on each store, with the corpus's key and salt."""
    hub = make_hub(mango_settings(store_url), extra={NAME: MangoOffice}, start_workers=False)
    client = await aiohttp_client(build_app(hub))
    hub = client.app[HUB_KEY]

    async def running() -> bool:
        return hub.plugins.records[NAME].state == "running"

    await wait_for(running)
    return Vpbx(client, hub)
