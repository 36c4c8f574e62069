"""``[plugins.telegram]`` as an operator writes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from hub.config import format_validation_error
from plugins.telegram import TelegramConfig


def test_only_the_token_is_required_and_the_rest_has_defaults() -> None:
    config = TelegramConfig.model_validate({"token": "123:abc"})

    assert config.api_url == "https://api.telegram.org"
    assert config.chats == {}
    assert config.timeout == timedelta(seconds=15)
    assert config.concurrency == 4
    assert config.retry_for == timedelta(hours=24)
    assert config.disable_link_preview is True


def test_chat_ids_may_be_written_as_numbers_or_channel_names() -> None:
    config = TelegramConfig.model_validate(
        {
            "token": "123:abc",
            "chats": {"sales": -1001234567890, "news": "@crm_news", "head": "42"},
            "retry_for": "1d 12h",
            "timeout": 5,
        }
    )

    assert config.chats == {"sales": "-1001234567890", "news": "@crm_news", "head": "42"}
    assert config.retry_for == timedelta(hours=36)
    assert config.timeout == timedelta(seconds=5)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({}, "token: required key is missing"),
        ({"token": "abc/../getUpdates"}, "token: not a bot token"),
        ({"token": "1:a", "chats": {"sales": "sales team"}}, "chats: sales = 'sales team' is not"),
        ({"token": "1:a", "chats": {"sales": True}}, "chats: sales = True is not a chat id"),
        ({"token": "1:a", "api_url": "api.telegram.org"}, "api_url: api_url must be an http(s)"),
        ({"token": "1:a", "retry_for": "0s"}, "retry_for: must be longer than 0s"),
        ({"token": "1:a", "timeout": "soon"}, "timeout: not a duration"),
        ({"token": "1:a", "concurrency": 0}, "concurrency: Input should be greater than"),
        ({"token": "1:a", "chat": {}}, "chat: unknown key"),
    ],
)
def test_a_mistake_in_the_config_is_named(settings: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError) as error:
        TelegramConfig.model_validate(settings)

    assert f"plugins.telegram.{says}" in format_validation_error(error.value, "plugins.telegram.")


def test_a_malformed_token_is_refused_without_being_shown() -> None:
    with pytest.raises(ValidationError) as error:
        TelegramConfig.model_validate({"token": "123:abc def-secret"})

    assert "abc def-secret" not in format_validation_error(error.value, "plugins.telegram.")
