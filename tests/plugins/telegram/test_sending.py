"""What the outbox hears back when it hands the Telegram notifier a message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from hub.notify import Notifier, Recipient, RetryLater, Sent, Undeliverable
from plugins.telegram import Telegram
from tests.plugins.telegram.conftest import MakePlugin, message
from tests.plugins.telegram.fakebot import TOKEN, FakeTelegram

CARD = (
    "<b>Новая сделка</b>: Иван Петров\n"
    '<i>Сумма</i>: 120&#160;000 ₽ · <a href="https://crm.example.ru/deals/42?tab=1&amp;x=2">#42</a>'
)


def notifier(plugin: Telegram) -> Notifier:
    (only,) = plugin.hub_notifiers()
    return only


async def test_the_plugin_gives_one_notifier_named_telegram(plugin: Telegram) -> None:
    telegram = notifier(plugin)
    assert isinstance(telegram, Notifier)
    assert telegram.name == "telegram"
    assert telegram.retry_for == timedelta(hours=24)
    assert telegram.concurrency == 4
    assert telegram.resend_interrupted is False  # Telegram cannot tell a repeat


async def test_a_message_reaches_the_chat_with_a_button_to_the_deal(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    sent = await notifier(plugin).send(message(blocks={"telegram": CARD}))

    assert sent == Sent(provider_id="1")
    (params,) = telegram.sent()
    assert params["chat_id"] == 1001
    assert params["text"] == CARD
    assert params["parse_mode"] == "HTML"
    assert params["link_preview_options"] == {"is_disabled": True}
    assert params["reply_markup"] == {
        "inline_keyboard": [[{"text": "Открыть сделку", "url": "https://crm.example.ru/deals/42"}]]
    }
    assert telegram.messages[0]["text"] == "Новая сделка: Иван Петров\nСумма: 120\xa0000 ₽ · #42"


async def test_plain_text_is_escaped_when_the_template_has_no_telegram_block(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    text = "Скидка <5%> & бонус для «Рога & копыта» <b>не жирным</b>"
    await notifier(plugin).send(message(text))

    assert telegram.messages[0]["text"] == text


async def test_a_message_without_a_deal_has_no_button(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    await notifier(plugin).send(message(link=None))

    assert "reply_markup" not in telegram.sent()[0]


async def test_link_previews_are_shown_when_the_config_says_so(
    make_plugin: MakePlugin, telegram: FakeTelegram
) -> None:
    plugin = await make_plugin(disable_link_preview=False)
    await notifier(plugin).send(message())

    assert telegram.sent()[0]["link_preview_options"] == {"is_disabled": False}


async def test_a_channel_by_its_username_is_sent_to_by_name(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    await notifier(plugin).send(message(address="@crm_news"))

    assert telegram.sent()[0]["chat_id"] == "@crm_news"
    assert telegram.messages[0]["chat"]["id"] == -1009


async def test_a_named_chat_resolves_from_the_config(plugin: Telegram) -> None:
    telegram = notifier(plugin)

    assert telegram.address(Recipient(user_id=None, name="sales")) == "-1002003"
    assert telegram.address(Recipient(user_id=None, name="news")) == "@crm_news"
    assert telegram.address(Recipient(user_id=None, name="nobody")) is None
    assert telegram.address(Recipient(user_id=3, telegram_chat_id="1001")) == "1001"
    assert telegram.address(Recipient(user_id=3, email="anna@example.com")) is None


async def test_a_flood_limit_asks_to_retry_after_the_seconds_telegram_gave(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    telegram.flood[1001] = 17

    with pytest.raises(RetryLater) as retry:
        await notifier(plugin).send(message())

    assert retry.value.after == timedelta(seconds=17)
    assert "retry after 17" in retry.value.reason
    assert await notifier(plugin).send(message()) == Sent(provider_id="1")


async def test_a_blocked_bot_is_undeliverable_not_retried(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    telegram.blocked.add(1001)

    with pytest.raises(Undeliverable) as failed:
        await notifier(plugin).send(message())

    assert failed.value.reason == "Forbidden: bot was blocked by the user"
    assert len(telegram.sent()) == 1


async def test_an_unknown_chat_is_undeliverable(plugin: Telegram, telegram: FakeTelegram) -> None:
    with pytest.raises(Undeliverable) as failed:
        await notifier(plugin).send(message(address="424242"))

    assert failed.value.reason == "Bad Request: chat not found"


async def test_a_refused_token_is_undeliverable(
    make_plugin: MakePlugin, telegram: FakeTelegram
) -> None:
    plugin = await make_plugin(start=False, token="987654:some-revoked-token")
    plugin.api.open()  # as if the token were revoked after start-up

    with capture_logs() as logs, pytest.raises(Undeliverable) as failed:
        await notifier(plugin).send(message())

    assert "token refused" in failed.value.reason
    assert [entry["event"] for entry in logs] == ["telegram_token_refused"]


@pytest.mark.parametrize(
    "answer",
    [
        (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}),
        (502, "<html><body>502 Bad Gateway</body></html>"),
        (429, {"ok": False, "error_code": 429, "description": "Too Many Requests"}),
    ],
    ids=["500", "502-from-a-proxy", "429-without-retry-after"],
)
async def test_a_server_error_is_retried_with_backoff(
    plugin: Telegram, telegram: FakeTelegram, answer: tuple[int, object]
) -> None:
    telegram.script.append(answer)

    with pytest.raises(RetryLater) as retry:
        await notifier(plugin).send(message())

    assert retry.value.after is None
    assert str(answer[0]) in retry.value.reason or "flood" in retry.value.reason


async def test_a_timeout_is_retried(make_plugin: MakePlugin, telegram: FakeTelegram) -> None:
    plugin = await make_plugin(timeout="0.3s")
    telegram.delay = 2

    with pytest.raises(RetryLater) as retry:
        await notifier(plugin).send(message())

    assert "no answer within 0.3s" in retry.value.reason


async def test_an_unreachable_telegram_is_retried_and_the_reason_hides_the_token(
    make_plugin: MakePlugin, closed_port_url: str
) -> None:
    plugin = await make_plugin(start=False, api_url=closed_port_url)
    plugin.api.open()

    with pytest.raises(RetryLater) as retry:
        await notifier(plugin).send(message())

    assert "sendMessage" in retry.value.reason
    assert TOKEN not in retry.value.reason
    assert TOKEN.split(":")[1] not in retry.value.reason


async def test_a_message_sent_before_start_up_is_retried_not_lost(
    make_plugin: MakePlugin, telegram: FakeTelegram
) -> None:
    plugin = await make_plugin(start=False)

    with pytest.raises(RetryLater, match="not started"):
        await notifier(plugin).send(message())
    assert telegram.requests == []


async def test_a_group_upgraded_to_a_supergroup_gets_the_message_at_its_new_id(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    telegram.migrated[-4001] = -1002003
    with capture_logs() as logs:
        sent = await notifier(plugin).send(message(address="-4001"))

    assert sent == Sent(provider_id="1")
    assert [params["chat_id"] for params in telegram.sent()] == [-4001, -1002003]
    assert telegram.messages[0]["chat"]["id"] == -1002003
    (warning,) = [entry for entry in logs if entry["event"] == "telegram_chat_migrated"]
    assert warning["log_level"] == "warning"
    assert (warning["chat_id"], warning["new_chat_id"]) == (-4001, -1002003)


async def test_a_chat_migrated_twice_is_undeliverable_after_one_resend(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    telegram.migrated.update({-4001: -4002, -4002: -4003})

    with pytest.raises(Undeliverable, match="upgraded to a supergroup"):
        await notifier(plugin).send(message(address="-4001"))
    assert len(telegram.sent()) == 2


async def test_a_button_telegram_refuses_is_sent_as_a_link_in_the_text(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    link = "http://localhost:8080/deals/42"
    with capture_logs() as logs:
        sent = await notifier(plugin).send(message(link=link))

    assert sent == Sent(provider_id="1")
    first, second = telegram.sent()
    assert "reply_markup" in first
    assert "reply_markup" not in second
    assert telegram.messages[0]["text"].endswith(f"\n\n{link}")
    assert "telegram_button_refused" in [entry["event"] for entry in logs]


async def test_an_empty_message_is_undeliverable(plugin: Telegram, telegram: FakeTelegram) -> None:
    with pytest.raises(Undeliverable, match="no text"):
        await notifier(plugin).send(message("  ", subject="", blocks={"telegram": " "}))
    assert telegram.sent() == []


async def test_the_subject_is_sent_when_the_text_is_empty(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    await notifier(plugin).send(message("", subject="Сделка #42 проиграна"))

    assert telegram.messages[0]["text"] == "Сделка #42 проиграна"


async def test_neither_the_token_nor_the_text_is_logged(
    make_plugin: MakePlugin, telegram: FakeTelegram, closed_port_url: str
) -> None:
    secret_text = "Паспорт 4510 123456, звонить после 18:00"
    telegram.migrated[-4001] = -1002003
    telegram.blocked.add(1001)
    with capture_logs() as logs:
        plugin = await make_plugin()
        await notifier(plugin).send(message(secret_text, address="-4001"))
        with pytest.raises(Undeliverable):
            await notifier(plugin).send(message(secret_text, address="1001"))
        refused = await make_plugin(start=False, token="987654:revoked-token")
        refused.api.open()
        with pytest.raises(Undeliverable):
            await notifier(refused).send(message(secret_text))
        gone = await make_plugin(start=False, api_url=closed_port_url, token="1:x")
        gone.api.open()
        with pytest.raises(RetryLater):
            await notifier(gone).send(message(secret_text))

    assert logs
    shown = repr(logs)
    assert TOKEN not in shown
    assert TOKEN.split(":")[1] not in shown
    assert "revoked-token" not in shown
    assert secret_text not in shown
