"""A fake SMS.ru, a desk that records what the plugin tells the hub, and the plugin
built against them as the host builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from plugins.sms_smsru import SmsRu
from tests.plugins.sms_gateways import Desk, MakePlugin, corpus_file, outgoing, plugin_maker
from tests.plugins.sms_smsru.fake import API_ID, FakeSmsRu

__all__ = ["TOKEN", "Desk", "MakePlugin", "corpus", "outgoing"]

TOKEN = "cb0123456789abcdef0123"


def corpus(name: str) -> Path:
    return corpus_file("smsru", name)


@pytest.fixture
def smsru() -> FakeSmsRu:
    return FakeSmsRu()


@pytest.fixture
async def provider(aiohttp_server: Any, smsru: FakeSmsRu) -> TestServer:
    return await aiohttp_server(smsru.app())


@pytest.fixture
def desk() -> Desk:
    return Desk()


@pytest.fixture
async def make_plugin(provider: TestServer, desk: Desk) -> AsyncIterator[MakePlugin]:
    settings = {"api_id": API_ID, "callback_token": TOKEN}
    async for make in plugin_maker(SmsRu, provider, desk, settings):
        yield make


@pytest.fixture
async def plugin(make_plugin: MakePlugin) -> SmsRu:
    return await make_plugin()
