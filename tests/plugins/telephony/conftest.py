"""A running hub with the telephony plugin, and clients put into its store through the writer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hub.api.common import HUB_KEY
from hub.app import build_app
from hub.context import Hub
from hub.deals import Actor
from hub.deals.changes import (
    AddTask,
    CloseLost,
    CompleteTask,
    CreateCompany,
    CreateContact,
    CreateDeal,
    LogActivity,
)
from hub.domain.normalize import phone_point
from hub.store.types import utcnow
from plugins.telephony import Telephony
from tests.conftest import make_hub, make_settings, wait_for

ROUTE_TOKEN = "pbx-shared-token-0123456789"
HEAD = {"Authorization": "Bearer head-token-0123456789"}
ANNA = {"Authorization": "Bearer anna-token-0123456789"}
PBX = {"X-Hub-Token": ROUTE_TOKEN}
TESTS = Actor.plugin("tests")


def telephony_settings(store_url: str, **section: Any) -> Any:
    telephony = {"route_token": ROUTE_TOKEN, "default_route": "0", **section}
    return make_settings(store_url, plugins={"telephony": telephony})


@dataclass
class Phones:
    """The test client of a hub with the telephony plugin running, and its hub."""

    client: TestClient
    hub: Hub

    @property
    def plugin(self) -> Telephony:
        return self.hub.plugins.records["telephony"].instance

    def user(self, email: str) -> int:
        assert self.hub.catalog is not None
        return self.hub.catalog.user_ids[email]

    def stage(self, key: str, pipeline: str = "sales") -> int:
        assert self.hub.catalog is not None
        return self.hub.catalog.pipelines[pipeline].stages[key].id

    async def card(self, phone: str, headers: dict[str, str] = HEAD) -> Any:
        response = await self.client.get(
            "/api/v1/caller-card", params={"phone": phone}, headers=headers
        )
        assert response.status == 200, await response.text()
        return await response.json()

    async def route(self, phone: str, **params: str) -> Any:
        response = await self.client.get(
            "/telephony/route", params={"phone": phone, **params}, headers=PBX
        )
        assert response.status == 200, await response.text()
        return await response.json()

    async def add_client(
        self,
        name: str,
        phone: str,
        *,
        owner: str | None = "anna@example.com",
        company: str | None = None,
        city: str | None = None,
        segment: str | None = None,
    ) -> int:
        owner_id = self.user(owner) if owner else None
        changes: list[Any] = []
        firm = None
        if company:
            firm = CreateCompany(name=company, owner_id=owner_id)
            changes.append(firm)
        contact = CreateContact(
            name=name,
            owner_id=owner_id,
            city=city,
            segment=segment,
            company=firm,
            points=[phone_point(phone, "RU")],
        )
        await self.hub.deals.apply([*changes, contact], TESTS)
        assert contact.id is not None
        return contact.id

    async def add_deal(
        self,
        contact_id: int,
        title: str,
        *,
        stage: str = "new",
        owner: str = "anna@example.com",
        amount: str | None = None,
        lost: bool = False,
    ) -> int:
        deal = CreateDeal(
            title=title,
            pipeline_id=self.hub.catalog.pipelines["sales"].id,  # type: ignore[union-attr]
            stage_id=self.stage(stage),
            contact=contact_id,
            owner_id=self.user(owner),
            amount=Decimal(amount) if amount else None,
            currency="RUB" if amount else None,
        )
        await self.hub.deals.apply([deal], TESTS)
        assert deal.id is not None
        if lost:
            await self.hub.deals.apply([CloseLost(deal=deal.id, reason="Дорого")], TESTS)
        return deal.id

    async def add_task(
        self,
        deal_id: int,
        title: str,
        due_in: timedelta,
        *,
        done: bool = False,
        owner: str | None = None,
    ) -> int:
        task = AddTask(title=title, due_at=utcnow() + due_in, deal=deal_id)
        if owner:
            task.owner_id = self.user(owner)
        await self.hub.deals.apply([task], TESTS)
        assert task.id is not None
        if done:
            await self.hub.deals.apply([CompleteTask(task=task.id, result="готово")], TESTS)
        return task.id

    async def add_activity(
        self, contact_id: int, summary: str, at: datetime, *, deal_id: int | None = None
    ) -> int:
        activity = LogActivity(
            activity="call", summary=summary, contact=contact_id, deal=deal_id, occurred_at=at
        )
        await self.hub.deals.apply([activity], TESTS)
        assert activity.id is not None
        return activity.id


async def start_phones(client: TestClient) -> Phones:
    hub = client.app[HUB_KEY]

    async def running() -> bool:
        return hub.plugins.records["telephony"].state == "running"

    await wait_for(running)
    return Phones(client, hub)


@pytest.fixture
async def phones(aiohttp_client: Callable[..., Any], store_url: str) -> Phones:
    """A hub with the telephony plugin (route token set, default route "0") on each store."""
    hub = make_hub(telephony_settings(store_url), extra={"telephony": Telephony})
    return await start_phones(await aiohttp_client(build_app(hub)))


# -- the caller card on the manager's screen (/card) ------------------------------------------

ANNA_TOKEN = "anna-token-0123456789"
DMITRY_TOKEN = "dmitry-token-0123456789"
HEAD_TOKEN = "head-token-0123456789"


def screen_settings(store_url: str, **section: Any) -> Any:
    """The telephony settings with a manager token for dmitry too (make_settings has head and
    anna's)."""
    manager = {"role": "manager"}
    tokens = {
        "head": {"token": HEAD_TOKEN, "role": "head"},
        "anna": {"token": ANNA_TOKEN, **manager, "user": "anna@example.com"},
        "dmitry": {"token": DMITRY_TOKEN, **manager, "user": "dmitry@example.com"},
    }
    telephony = {"route_token": ROUTE_TOKEN, "default_route": "0", **section}
    return make_settings(store_url, plugins={"telephony": telephony}, api={"tokens": tokens})


@pytest.fixture
async def screens(aiohttp_client: Callable[..., Any], store_url: str) -> Phones:
    """A hub with the telephony plugin and tokens for anna, dmitry and head, on each store."""
    hub = make_hub(screen_settings(store_url), extra={"telephony": Telephony})
    return await start_phones(await aiohttp_client(build_app(hub)))
