"""Settings of the Telegram notifier: ``[plugins.telegram]``."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from hub.config import Credential, Duration

# What @BotFather gives: the bot's id, a colon, then letters, digits, "_" and "-". The token
# goes into the path of every request, so nothing else may be in it.
TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
# A chat as sendMessage takes it: a numeric id (groups negative) or a public @username.
CHAT = re.compile(r"^(?:-?\d+|@[A-Za-z0-9_]{4,})$")


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Credential  # from @BotFather; or HUB__PLUGINS__TELEGRAM__TOKEN
    api_url: str = "https://api.telegram.org"  # or a local Bot API server
    # Named chats, for recipients written "chat:NAME": NAME -> chat id or @channel.
    chats: dict[str, str] = {}
    timeout: Duration = timedelta(seconds=15)  # one request, connecting included
    concurrency: int = Field(4, ge=1, le=64)
    # Keep retrying a transient failure this long after the notification was queued.
    retry_for: Duration = timedelta(hours=24)
    disable_link_preview: bool = True

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not TOKEN.match(value.get_secret_value()):
            raise ValueError("not a bot token (expected the form 123456789:AAH... from @BotFather)")
        return value

    @field_validator("api_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) address, not {value!r}")
        return value.rstrip("/")

    @field_validator("chats", mode="before")
    @classmethod
    def _chat_ids(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        chats = {}
        for name, chat in value.items():
            if isinstance(chat, int | str) and not isinstance(chat, bool):
                chat = str(chat).strip()
            if not isinstance(chat, str) or not CHAT.match(chat):
                raise ValueError(
                    f"{name} = {chat!r} is not a chat id (a number such as "
                    "-1001234567890, or @channelname)"
                )
            chats[name] = chat
        return chats

    @field_validator("timeout", "retry_for")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value
