"""What the SMS gateway plugins' tests share: the campaign desk they report to, the SMS
corpus, a plugin made and started as the host would, and a campaign message to send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from hub.campaigns.gateway import Outgoing

SMS_CORPUS = Path("/work/shared/corpora/sms")

MakePlugin = Callable[..., Awaitable[Any]]


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


def corpus_file(gateway: str, name: str) -> Path:
    """A file of the gateway's corpus, or the test is skipped where the corpus is absent."""
    path = SMS_CORPUS / gateway / name
    if not path.exists():
        pytest.skip(f"the SMS corpus is not here ({path})")
    return path


async def plugin_maker(
    plugin_class: Any, provider: TestServer, desk: Desk, settings: dict[str, Any]
) -> AsyncIterator[MakePlugin]:
    """``make(start=True, **overrides)``: the plugin on ``settings`` against the fake
    ``provider``, started as the host starts it; every one made is shut down after."""
    made: list[Any] = []

    async def make(*, start: bool = True, **overrides: Any) -> Any:
        given = {
            "sender": "ZavodRu",
            "base_url": str(provider.make_url("/")),
            "timeout": "0.2s",
            **settings,
            **overrides,
        }
        plugin = plugin_class(
            plugin_class.Config.model_validate(given), SimpleNamespace(campaigns=desk)
        )
        made.append(plugin)
        if start:
            await plugin.hub_startup()
        return plugin

    yield make
    for plugin in made:
        await plugin.hub_shutdown()


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
