"""The ``telegram`` notifier: one outbox row, one ``sendMessage``
(https://core.telegram.org/bots/api#sendmessage)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import structlog

from hub.logging import debug_enabled
from hub.notify import Message, Recipient, RetryLater, Sent, Undeliverable
from plugins.telegram.botapi import ApiError, BotApi, Unreachable
from plugins.telegram.config import TelegramConfig
from plugins.telegram.markup import LIMIT, cut, escape, size

log = structlog.get_logger("plugins.telegram")

BUTTON = "Открыть сделку"
_NUMERIC = re.compile(r"-?\d+")


class TelegramNotifier:
    """Delivers to a chat id: a user's ``telegram_chat_id`` or a chat named in the config."""

    name = "telegram"
    # Telegram cannot tell a repeat: a send cut off by a crash is held for review.
    resend_interrupted = False

    def __init__(self, config: TelegramConfig, api: BotApi) -> None:
        self.config = config
        self.api = api
        self.retry_for: timedelta = config.retry_for
        self.concurrency: int = config.concurrency

    def address(self, recipient: Recipient) -> str | None:
        if recipient.telegram_chat_id:
            return str(recipient.telegram_chat_id)
        if recipient.name:
            return self.config.chats.get(recipient.name)
        return None

    async def send(self, message: Message) -> Sent:
        chat: int | str = _chat_id(message.address)
        button = message.link is not None
        migrated = False
        while True:
            text = _text(message, link_in_text=not button)
            try:
                result = await self.api.call(
                    "sendMessage", self._params(chat, text, message, button)
                )
            except Unreachable as error:
                raise RetryLater(str(error)) from None
            except ApiError as error:
                if error.migrate_to_chat_id is not None and not migrated:
                    # A group upgraded to a supergroup has a new id; the old one is gone.
                    log.warning(
                        "telegram_chat_migrated",
                        outbox_id=message.id,
                        chat_id=chat,
                        new_chat_id=error.migrate_to_chat_id,
                        hint="put the new chat id in [plugins.telegram] chats or the user's "
                        "telegram_chat_id",
                    )
                    chat, migrated = error.migrate_to_chat_id, True
                    continue
                if button and error.error_code == 400 and "button" in error.description.lower():
                    # Telegram takes no button to an address it does not call a web page
                    # (http://localhost...): send the link as text instead.
                    log.warning(
                        "telegram_button_refused", outbox_id=message.id, reason=error.description
                    )
                    button = False
                    continue
                raise _failure(error) from None
            break
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if debug_enabled("plugins.telegram"):
            log.debug("telegram_sent", outbox_id=message.id, chat_id=chat, message_id=message_id)
        return Sent(provider_id=None if message_id is None else str(message_id))

    def _params(self, chat: int | str, text: str, message: Message, button: bool) -> dict[str, Any]:
        params: dict[str, Any] = {
            "chat_id": chat,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": self.config.disable_link_preview},
        }
        if button and message.link:
            params["reply_markup"] = {"inline_keyboard": [[{"text": BUTTON, "url": message.link}]]}
        return params


def _chat_id(address: str) -> int | str:
    """A numeric chat id as the Integer the Bot API documents; an @channel as it is."""
    address = address.strip()
    return int(address) if _NUMERIC.fullmatch(address) else address


def _text(message: Message, *, link_in_text: bool) -> str:
    """The template's Telegram block, else the plain text escaped, cut to fit."""
    body = message.blocks.get("telegram") or ""
    if not body.strip():
        body = escape(message.text.strip() or message.subject)
    if not body.strip():
        raise Undeliverable("nothing to send: the message has no text")
    suffix = f"\n\n{escape(message.link)}" if link_in_text and message.link else ""
    return cut(body, LIMIT - size(suffix)) + suffix


def _failure(error: ApiError) -> RetryLater | Undeliverable:
    code = error.error_code
    if code == 429:
        after = timedelta(seconds=error.retry_after) if error.retry_after is not None else None
        return RetryLater(f"flood limit: {error.description}", after=after)
    if code >= 500 or code == 408:
        return RetryLater(f"Telegram answered {code}: {error.description}")
    if code == 401:
        log.error("telegram_token_refused", method=error.method)
        return Undeliverable("token refused: Telegram answered 401 Unauthorized")
    if code == 404:
        return Undeliverable(
            f"404 {error.description}: the token is malformed or api_url is not a Bot API server"
        )
    return Undeliverable(error.description)
