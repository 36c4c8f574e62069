"""A hub with the Zadarma adapter, the shared PBX corpus read in place, and the calls stored."""

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
from plugins.telephony_zadarma import Zadarma
from plugins.telephony_zadarma.notifications import SIGNED, signature
from tests.conftest import make_hub, make_settings, wait_for

NAME = "telephony_zadarma"
PATH = "/telephony/zadarma"
SECRET = "test_zadarma_secret_0123456789"  # what make_samples.py signs the corpus with


def corpus_dir() -> Path:
    beside = (Path(__file__).parents[3] / "../shared/corpora/pbx").resolve()
    return beside if beside.is_dir() else Path("/work/shared/corpora/pbx")


CORPUS = corpus_dir() / "zadarma"


@dataclass(frozen=True)
class Sample:
    """One request of the corpus as Zadarma sends it, and what make_samples.py recorded."""

    name: str
    method: str
    headers: dict[str, str]
    body: bytes
    facts: dict[str, Any]  # the .json beside it: form, signed_string, signature_header ...

    @property
    def form(self) -> dict[str, str]:
        return self.facts["form"]


def sample(name: str) -> Sample:
    """``zadarma/<name>.http``, parsed as the raw request it is; skips without the corpus."""
    path = CORPUS / f"{name}.http"
    if not path.is_file():
        pytest.skip(f"PBX corpus not found at {CORPUS}")
    head, _, body = path.read_bytes().partition(b"\r\n\r\n")
    request_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    headers.pop("Content-Length")  # the client counts the body it sends
    facts = json.loads(path.with_suffix(".json").read_text())
    return Sample(name, request_line.split(" ")[0], headers, body, facts)


def signed_form(form: dict[str, str], secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    """Headers and body of a notification of ``form``, signed as Zadarma signs it (a
    signed field it lacks counts as empty; one without event is signed as NOTIFY_START)."""
    text = "".join(form.get(name, "") for name in SIGNED[form.get("event", "NOTIFY_START")])
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Signature": signature(secret, text),
    }
    return headers, urlencode(form).encode()


@dataclass
class Pbx:
    """The test client of a hub running the Zadarma adapter (no intake workers, so the
    inbox keeps exactly what the adapter stored)."""

    client: TestClient
    hub: Hub

    async def send(self, item: Sample) -> ClientResponse:
        return await self.client.request(item.method, PATH, headers=item.headers, data=item.body)

    async def post(self, headers: dict[str, str], body: bytes) -> ClientResponse:
        return await self.client.post(PATH, headers=headers, data=body)

    async def calls(self) -> list[tuple[str, dict[str, Any]]]:
        """(idempotency key, call event) of every call event stored, in order."""
        async with self.hub.store.read() as conn:
            rows = await conn.execute(
                select(InboxEvent.idem_key, InboxEvent.payload)
                .where(InboxEvent.channel == CHANNEL)
                .order_by(InboxEvent.id)
            )
            return [(key, payload) for key, payload in rows.all()]

    async def states(self) -> list[str]:
        """What the keys say was stored: ``ringing``, ``ringing:100``, ``answered``, ``final``."""
        return [key.split(":", 3)[3] for key, _payload in await self.calls()]


def zadarma_settings(store_url: str, **section: Any) -> Any:
    return make_settings(store_url, plugins={NAME: {"api_secret": SECRET, **section}})


@pytest.fixture
async def pbx(aiohttp_client: Callable[..., Any], store_url: str) -> Pbx:
    """A hub with the Zadarma adapter on each store, signed with the corpus's secret."""
    hub = make_hub(zadarma_settings(store_url), extra={NAME: Zadarma}, start_workers=False)
    client = await aiohttp_client(build_app(hub))
    hub = client.app[HUB_KEY]

    async def running() -> bool:
        return hub.plugins.records[NAME].state == "running"

    await wait_for(running)
    return Pbx(client, hub)
