"""A hub with a recording campaign gateway (the hub's side under test is the outbox and the
sender; the gateways themselves are tested against their providers' formats)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from hub.campaigns.gateway import NOT_THERE, Accepted, DeliveryReport, Outgoing, Transient
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.domain.normalize import email_point, phone_point
from hub.hookspecs import hookimpl
from tests.conftest import make_hub, make_settings


@dataclass
class RecordingGateway:
    """Takes every message at once (or fails those it is told to), and remembers them."""

    name: str = "testsms"
    channel: str = "sms"
    rate: float = 1000.0
    concurrency: int = 64
    sent: list[Outgoing] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)  # address -> transient failures
    known: dict[str, str] = field(default_factory=dict)  # key -> provider id, for find()
    can_tell: bool = True
    reports: dict[str, DeliveryReport] = field(default_factory=dict)  # provider id -> report
    asked: list[list[str]] = field(default_factory=list)  # each status query's provider ids
    down: bool = False  # the status query fails
    cost: Decimal | None = None  # what the gateway says each message cost

    async def send(self, message: Outgoing) -> Accepted:
        left = self.fail_first.get(message.address, 0)
        if left:
            self.fail_first[message.address] = left - 1
            raise Transient("503 from the gateway")
        self.sent.append(message)
        provider_id = f"p{len(self.sent)}"
        self.known[message.key] = provider_id
        return Accepted(provider_id=provider_id, cost=self.cost)

    async def find(self, message: Outgoing) -> Any:
        if not self.can_tell:
            return None
        found = self.known.get(message.key)
        return Accepted(provider_id=found) if found else NOT_THERE

    async def status(self, provider_ids: Sequence[str]) -> list[DeliveryReport]:
        self.asked.append(list(provider_ids))
        if self.down:
            raise Transient("503 from the gateway")
        return [self.reports[pid] for pid in provider_ids if pid in self.reports]


class GatewayPlugin:
    gateway = RecordingGateway()

    def __init__(self, config: Any = None, hub: Any = None) -> None:
        pass

    @hookimpl
    def hub_campaign_gateways(self) -> list[Any]:
        return [type(self).gateway]


@pytest.fixture
def gateway() -> RecordingGateway:
    GatewayPlugin.gateway = RecordingGateway()
    return GatewayPlugin.gateway


def campaign_settings(url: str, **overrides: Any) -> Any:
    return make_settings(
        url,
        campaigns={"quiet_hours": None, "poll_every": "0.05s", "lease": "1s"},
        segments={
            "wholesale": {"segments": ["Опт"]},
            "samara": {"cities": ["Самара"]},
            "big_buyers": {"won_amount_min": 100000},
            "proposal_stage": {"pipeline": "sales", "stages": ["proposal"]},
        },
        plugins={"testgateway": {}},
        **overrides,
    )


async def started_hub(url: str, **overrides: Any) -> Any:
    hub = make_hub(campaign_settings(url, **overrides), {"testgateway": GatewayPlugin})
    await hub.start()
    return hub


async def contact(
    hub: Any,
    name: str,
    *,
    phone: str | None = None,
    email: str | None = None,
    segment: str | None = None,
    city: str | None = None,
    sms: bool | None = True,
    mail: bool | None = None,
    custom: dict[str, Any] | None = None,
) -> int:
    points = []
    if phone:
        points.append(phone_point(phone, "RU"))
    if email:
        points.append(email_point(email))
    create = ch.CreateContact(
        name=name, segment=segment, city=city, points=points, custom=custom or {}
    )
    changes: list[ch.Change] = [create]
    for channel, granted in (("sms", sms), ("email", mail)):
        if granted is not None:
            changes.append(
                ch.SetConsent(
                    contact=create, channel=channel, granted=granted, source="import:test"
                )
            )
    await hub.deals.apply(changes, SYSTEM)
    assert create.id is not None
    return create.id


async def until_sent(hub: Any, campaign: int, within: float = 10.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        status = await hub.campaigns.status(campaign)
        states, state = status["states"], status["campaign"]["state"]
        if not states.get("queued") and not states.get("sending") and state != "running":
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"campaign not sent in time: {status['states']}")
        await asyncio.sleep(0.05)
