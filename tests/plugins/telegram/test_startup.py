"""Start-up checks the token with getMe; shut-down closes the connection pool."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from hub.plugins import PluginAuthFailed, PluginConfigError, PluginNotReady
from tests.plugins.telegram.conftest import MakePlugin
from tests.plugins.telegram.fakebot import TOKEN, FakeTelegram


async def test_start_up_checks_the_token_with_getme(
    make_plugin: MakePlugin, telegram: FakeTelegram
) -> None:
    with capture_logs() as logs:
        plugin = await make_plugin()

    assert [method for method, _ in telegram.requests] == ["getMe"]
    assert plugin.api.is_open
    (ready,) = [entry for entry in logs if entry["event"] == "telegram_ready"]
    assert ready["bot"] == "crm_hub_bot"


async def test_a_refused_token_fails_start_up_for_good(
    make_plugin: MakePlugin, telegram: FakeTelegram
) -> None:
    with pytest.raises(PluginAuthFailed, match="401") as failed:
        await make_plugin(token="987654:revoked-token")

    assert "revoked-token" not in str(failed.value)
    assert not failed.value.retry


async def test_a_server_that_is_not_the_bot_api_is_a_config_error(
    make_plugin: MakePlugin, telegram: FakeTelegram
) -> None:
    telegram.script.append((404, "<html>Not Found</html>"))

    with pytest.raises(PluginConfigError, match="not a Bot API server"):
        await make_plugin()


async def test_an_unreachable_telegram_is_not_ready_and_tried_again(
    make_plugin: MakePlugin, closed_port_url: str
) -> None:
    with pytest.raises(PluginNotReady, match="unreachable") as failed:
        await make_plugin(api_url=closed_port_url)

    assert failed.value.retry
    assert TOKEN not in str(failed.value)


async def test_telegram_failing_at_start_up_is_not_ready(
    make_plugin: MakePlugin, telegram: FakeTelegram
) -> None:
    telegram.script.append((502, "<html>Bad Gateway</html>"))

    plugin = None
    with pytest.raises(PluginNotReady, match="502"):
        plugin = await make_plugin()
    assert plugin is None


async def test_a_failed_start_up_leaves_no_session_open(
    make_plugin: MakePlugin, telegram: FakeTelegram
) -> None:
    plugin = await make_plugin(start=False, token="987654:revoked-token")

    with pytest.raises(PluginAuthFailed):
        await plugin.hub_startup()
    assert not plugin.api.is_open


async def test_shut_down_closes_the_session(make_plugin: MakePlugin) -> None:
    plugin = await make_plugin()

    await plugin.hub_shutdown()

    assert not plugin.api.is_open
    await plugin.hub_shutdown()  # twice is harmless
