"""A fake Bot API server, and the Telegram plugin built against it as the host builds it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from hub.notify import Message
from plugins.telegram import Telegram, TelegramConfig
from tests.plugins.telegram.fakebot import TOKEN, FakeTelegram

MakePlugin = Callable[..., Awaitable[Telegram]]


@pytest.fixture
def telegram() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture
async def bot_api(aiohttp_server: Any, telegram: FakeTelegram) -> TestServer:
    return await aiohttp_server(telegram.app())


def config(api_url: str, **overrides: Any) -> TelegramConfig:
    """The plugin's config as ``[plugins.telegram]`` would give it."""
    return TelegramConfig.model_validate(
        {
            "token": TOKEN,
            "api_url": api_url,
            "chats": {"sales": -1002003, "news": "@crm_news", "old_group": -4001},
            **overrides,
        }
    )


@pytest.fixture
async def make_plugin(bot_api: TestServer) -> AsyncIterator[MakePlugin]:
    """Build (and start, unless ``start=False``) a plugin; every one is shut down after."""
    made: list[Telegram] = []

    async def make(*, start: bool = True, **overrides: Any) -> Telegram:
        overrides.setdefault("api_url", str(bot_api.make_url("/")))
        plugin = Telegram(config(**overrides), SimpleNamespace())  # type: ignore[arg-type]
        made.append(plugin)
        if start:
            await plugin.hub_startup()
        return plugin

    yield make
    for plugin in made:
        await plugin.hub_shutdown()


@pytest.fixture
async def plugin(make_plugin: MakePlugin) -> Telegram:
    return await make_plugin()


@pytest.fixture
def closed_port_url() -> str:
    """An address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def message(
    text: str = "Новая сделка: Иван Петров, 120 000 ₽",
    *,
    address: str = "1001",
    link: str | None = "https://crm.example.ru/deals/42",
    blocks: dict[str, str] | None = None,
    subject: str = "Новая сделка",
) -> Message:
    return Message(
        id=7,
        key="deal.created:42:telegram:1001",
        notifier="telegram",
        address=address,
        subject=subject,
        text=text,
        html=f"<p>{text}</p>",
        link=link,
        event_type="deal.created",
        blocks=blocks or {},
    )
