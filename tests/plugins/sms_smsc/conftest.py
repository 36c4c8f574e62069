"""A fake SMSC.ru, a desk that records what the plugin tells the hub, and the plugin
built against them as the host builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from hub.campaigns.gateway import Outgoing
from plugins.sms_smsc import Smsc, SmscConfig
from tests.plugins.sms_smsc.fake import LOGIN, PASSWORD, FakeSmsc

CORPUS = Path("/work/shared/corpora/sms/smsc")

MakePlugin = Callable[..., Awaitable[Smsc]]


class Desk:
    """``hub.campaigns`` as the plugin sees it, recording every call."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, list[Any]]] = []
        self.opt_outs: list[tuple[str, str, str]] = []
        self.fail = False

    async def delivered(self, gateway: str, reports: Any) -> int:
        if self.fail:
            raise RuntimeError("the store is down")
        self.reports.append((gateway, list(reports)))
        return len(reports)

    async def opted_out(self, channel: str, address: str, *, source: str) -> int:
        self.opt_outs.append((channel, address, source))
        return 1


def corpus(name: str) -> Path:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"the SMS corpus is not here ({path})")
    return path


@pytest.fixture
def smsc() -> FakeSmsc:
    return FakeSmsc()


@pytest.fixture
async def provider(aiohttp_server: Any, smsc: FakeSmsc) -> TestServer:
    return await aiohttp_server(smsc.app())


@pytest.fixture
def desk() -> Desk:
    return Desk()


@pytest.fixture
async def make_plugin(provider: TestServer, desk: Desk) -> AsyncIterator[MakePlugin]:
    made: list[Smsc] = []

    async def make(*, start: bool = True, **overrides: Any) -> Smsc:
        settings = {
            "login": LOGIN,
            "password": PASSWORD,
            "sender": "ZavodRu",
            "base_url": str(provider.make_url("/")),
            "timeout": "0.2s",
            **overrides,
        }
        plugin = Smsc(SmscConfig.model_validate(settings), SimpleNamespace(campaigns=desk))
        made.append(plugin)
        if start:
            await plugin.hub_startup()
        return plugin

    yield make
    for plugin in made:
        await plugin.hub_shutdown()


@pytest.fixture
async def plugin(make_plugin: MakePlugin) -> Smsc:
    return await make_plugin()


def outgoing(
    address: str = "+79161234567", text: str = "Скидка 10% до пятницы", **kw: Any
) -> Outgoing:
    return Outgoing(
        id=kw.pop("id", 41),
        key="campaign:3:contact:41:sms",
        campaign_id=3,
        contact_id=41,
        channel="sms",
        address=address,
        text=text,
        **kw,
    )
