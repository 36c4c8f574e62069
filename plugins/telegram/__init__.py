"""Telegram notifier: notifications to chats through a bot, by the Bot API's
``sendMessage`` (https://core.telegram.org/bots/api#sendmessage).

``hub_notifiers`` gives the hub one notifier, ``telegram``, that delivers to a user's
``telegram_chat_id`` or to a chat named under ``[plugins.telegram] chats`` (a recipient
written ``chat:NAME``). A message is the template's ``telegram`` block, in Telegram's HTML
(https://core.telegram.org/bots/api#html-style), else the plain text escaped, cut to the
4096 characters Telegram takes, with a button "Открыть сделку" to the deal when there is
one (https://core.telegram.org/bots/api#inlinekeyboardmarkup).

What Telegram answers decides what the outbox does
(https://core.telegram.org/bots/api#making-requests,
https://core.telegram.org/bots/api#responseparameters): 429 is retried after its
``retry_after``; 5xx, timeouts and lost connections are retried; a chat that was not
found, a bot that was blocked or removed, a refused token are undeliverable; a group
upgraded to a supergroup (``migrate_to_chat_id``) is sent to once more at its new id,
and logged so the config can be updated. At start-up ``getMe``
(https://core.telegram.org/bots/api#getme) checks the token: refused, the plugin is
``auth_failed``; Telegram unreachable, it is ``not_ready`` and tried again.
"""

from __future__ import annotations

import structlog

from hub.context import Hub
from hub.hookspecs import hookimpl
from hub.notify import Notifier
from hub.plugins import PluginAuthFailed, PluginConfigError, PluginNotReady
from plugins.telegram.botapi import ApiError, BotApi, Unreachable
from plugins.telegram.config import TelegramConfig
from plugins.telegram.notifier import TelegramNotifier

log = structlog.get_logger("plugins.telegram")

__all__ = ["Telegram", "TelegramConfig", "TelegramNotifier"]


class Telegram:
    """Notifications to Telegram chats through one bot."""

    Config = TelegramConfig

    def __init__(self, config: TelegramConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.api = BotApi(
            config.api_url, config.token.get_secret_value(), config.timeout.total_seconds()
        )
        self.notifier = TelegramNotifier(config, self.api)

    @hookimpl
    def hub_notifiers(self) -> list[Notifier]:
        return [self.notifier]

    @hookimpl
    async def hub_startup(self) -> None:
        self.api.open()
        try:
            me = await self.api.call("getMe")
        except ApiError as error:
            await self.api.close()
            if error.error_code == 401:
                raise PluginAuthFailed(
                    "Telegram refused the bot token (getMe: 401 Unauthorized): "
                    "check [plugins.telegram] token"
                ) from None
            if error.error_code == 404:
                raise PluginConfigError(
                    f"getMe: 404 {error.description}: the token is malformed or "
                    f"{self.config.api_url} is not a Bot API server"
                ) from None
            raise PluginNotReady(str(error)) from None
        except Unreachable as error:
            await self.api.close()
            raise PluginNotReady(
                f"Telegram unreachable at {self.config.api_url}: {error}"
            ) from None
        except BaseException:  # cancelled by the start-up timeout
            await self.api.close()
            raise
        username = me.get("username") if isinstance(me, dict) else None
        log.info("telegram_ready", bot=username, chats=sorted(self.config.chats))

    @hookimpl
    async def hub_shutdown(self) -> None:
        await self.api.close()
