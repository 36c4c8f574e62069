"""A fake SMSC.ru, a desk that records what the plugin tells the hub, and the plugin
built against them as the host builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from plugins.sms_smsc import Smsc
from tests.plugins.sms_gateways import Desk, MakePlugin, corpus_file, outgoing, plugin_maker
from tests.plugins.sms_smsc.fake import LOGIN, PASSWORD, FakeSmsc

__all__ = ["Desk", "MakePlugin", "corpus", "outgoing"]


def corpus(name: str) -> Path:
    return corpus_file("smsc", name)


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
    settings = {"login": LOGIN, "password": PASSWORD}
    async for make in plugin_maker(Smsc, provider, desk, settings):
        yield make


@pytest.fixture
async def plugin(make_plugin: MakePlugin) -> Smsc:
    return await make_plugin()
