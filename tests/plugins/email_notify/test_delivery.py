"""A notification as the recipient's mail server receives it, and what its replies mean."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from structlog.testing import capture_logs

from hub.notify import Notifier, Recipient, RetryLater, Undeliverable
from tests.plugins.email_notify.conftest import SENDER, Mailbox, notification, notifier


async def test_a_notification_arrives_as_text_with_an_html_alternative(smtp_server, mailbox):
    server = smtp_server()
    email = notifier(server.port, sender_name="CRM «Трубы»", reply_to="sales@example.ru")

    sent = await email.send(notification())

    [received] = mailbox.received
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["anna@example.com"]
    assert max(len(line) for line in received.data.splitlines()) <= 998
    assert all(byte < 128 for byte in received.data)  # 7-bit clean, whatever the server
    letter = received.message
    assert letter["Subject"] == "Сделка «Поставка труб» проиграна"
    assert letter["From"].addresses[0].display_name == "CRM «Трубы»"
    assert letter["From"].addresses[0].addr_spec == SENDER
    assert letter["To"] == "anna@example.com"
    assert letter["Reply-To"] == "sales@example.ru"
    assert letter["Date"].datetime is not None
    assert letter["Auto-Submitted"] == "auto-generated"
    assert letter["Message-ID"] == sent.provider_id
    assert letter.get_content_type() == "multipart/alternative"
    text = letter.get_body(preferencelist=("plain",))
    html = letter.get_body(preferencelist=("html",))
    assert text.get_content() == (
        "Сделку «Поставка труб» закрыли как проигранную.\nПричина: цена.\n\n"
        "Открыть сделку: https://crm.example.ru/deals/42\n"
    )
    assert "<b>«Поставка труб»</b>" in html.get_content()
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"


async def test_a_notification_without_html_is_plain_text(smtp_server, mailbox):
    server = smtp_server()

    await notifier(server.port).send(notification(html="", link=None))

    letter = mailbox.received[0].message
    assert letter.get_content_type() == "text/plain"
    assert letter.get_content() == notification().text + "\n"


async def test_a_link_the_text_already_gives_is_not_repeated(smtp_server, mailbox):
    server = smtp_server()
    text = "Открыть: https://crm.example.ru/deals/42"

    await notifier(server.port).send(notification(text=text))

    body = mailbox.received[0].message.get_body(preferencelist=("plain",)).get_content()
    assert body.count("https://crm.example.ru/deals/42") == 1


async def test_every_attempt_at_one_notification_has_the_same_message_id(smtp_server, mailbox):
    server = smtp_server()
    email = notifier(server.port)

    first = await email.send(notification(attempt=1))
    again = await email.send(notification(attempt=2))
    other = await email.send(notification(key="deal.lost:42:olga"))

    ids = [r.message["Message-ID"] for r in mailbox.received]
    assert ids == [first.provider_id, again.provider_id, other.provider_id]
    assert ids[0] == ids[1] != ids[2]
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.ru>", ids[0])


async def test_a_subject_with_a_line_break_is_sent_on_one_line(smtp_server, mailbox):
    server = smtp_server()

    await notifier(server.port).send(notification(subject="Сделка\r\nBcc: all@example.com"))

    letter = mailbox.received[0].message
    assert letter["Subject"] == "Сделка Bcc: all@example.com"
    assert letter["Bcc"] is None


async def test_a_mailbox_the_server_refuses_is_undeliverable(smtp_server, mailbox: Mailbox):
    mailbox.rcpt_replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: mailbox unknown"
    server = smtp_server()

    with pytest.raises(Undeliverable) as refused:
        await notifier(server.port).send(notification("gone@example.com"))

    assert refused.value.reason == "550 5.1.1 <gone@example.com>: mailbox unknown"
    assert mailbox.received == []


async def test_a_greylisting_reply_is_retried_later(smtp_server, mailbox: Mailbox):
    mailbox.rcpt_replies["new@example.com"] = "451 4.7.1 Greylisted, please try again later"
    server = smtp_server()

    with pytest.raises(RetryLater) as deferred:
        await notifier(server.port).send(notification("new@example.com"))

    assert deferred.value.reason == "451 4.7.1 Greylisted, please try again later"


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("554 5.7.1 Message rejected as spam", Undeliverable),
        ("552 5.3.4 Message too big", Undeliverable),
        ("452 4.3.1 Insufficient system storage", RetryLater),
    ],
)
async def test_the_servers_answer_to_the_message_decides_retry_or_give_up(
    smtp_server, mailbox: Mailbox, reply, outcome
):
    mailbox.data_replies["anna@example.com"] = reply
    server = smtp_server()

    with pytest.raises(outcome) as failed:
        await notifier(server.port).send(notification())

    assert failed.value.reason == reply


async def test_an_address_that_is_not_an_email_is_undeliverable_without_connecting(free_port):
    with pytest.raises(Undeliverable) as refused:
        await notifier(free_port).send(notification("anna at example"))

    assert "anna at example" in refused.value.reason


async def test_a_server_that_refuses_connections_is_retried_later(free_port):
    with pytest.raises(RetryLater) as deferred:
        await notifier(free_port).send(notification())

    assert f"127.0.0.1:{free_port}" in deferred.value.reason


async def test_a_server_that_does_not_answer_is_retried_later(silent_server):
    with pytest.raises(RetryLater) as deferred:
        await notifier(silent_server, timeout="0.3s").send(notification())

    assert deferred.value.reason == f"127.0.0.1:{silent_server}: no answer in 0.3s"


async def test_the_message_body_is_not_logged_even_at_debug_level(
    smtp_server, mailbox: Mailbox, caplog
):
    mailbox.rcpt_replies["gone@example.com"] = "550 5.1.1 mailbox unknown"
    server = smtp_server()
    email = notifier(server.port)
    caplog.set_level(logging.DEBUG, logger="plugins.email_notify")

    with capture_logs() as logs:
        await email.send(notification())
        with pytest.raises(Undeliverable):
            await email.send(notification("gone@example.com"))

    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("email_sent", "debug"),
        ("email_not_sent", "debug"),
    ]
    shown = repr(logs)
    assert "Поставка" not in shown and "Причина" not in shown


def test_hook_hub_notifiers_gives_the_email_notifier_reaching_users_by_their_address():
    [email] = notifier(25, concurrency=3, retry_for="36h").hub_notifiers()

    assert isinstance(email, Notifier)
    assert email.name == "email"
    assert email.resend_interrupted is False
    assert email.concurrency == 3
    assert email.retry_for.total_seconds() == 36 * 3600
    assert email.address(Recipient(user_id=1, email="anna@example.com")) == "anna@example.com"
    assert email.address(Recipient(user_id=2, telegram_chat_id="123")) is None
    assert email.address(Recipient(user_id=3, email="  ")) is None


async def test_sends_in_flight_at_once_each_get_a_session_of_their_own(smtp_server, mailbox):
    server = smtp_server()
    email = notifier(server.port)

    sent = await asyncio.gather(*(email.send(notification(key=f"task:{n}")) for n in range(6)))

    assert len({s.provider_id for s in sent}) == 6
    assert sorted(r.message["Message-ID"] for r in mailbox.received) == sorted(
        s.provider_id for s in sent
    )
