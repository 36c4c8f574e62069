"""Mailboxes read into the deal store, against a real IMAP server (dovecot)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.context import Hub
from hub.store.models import Activity, Consent, Contact, ContactPoint, Deal, InboxEvent, Task
from plugins.email_inbound.channel import EmailInbound
from tests.conftest import make_hub, make_settings, wait_for
from tests.dovecot import DOVECOT, PASSWORD, MailServer, start

SALES = "sales@example.com"


def letter(
    sender: str = "Пётр Волков <petr@volkov-trade.ru>",
    subject: str = "Нужна плитка для офиса",
    text: str = "Здравствуйте! Нужно 200 м² плитки.\n\n-- \nПётр Волков\n+7 912 345-67-89\n",
    **headers: str,
) -> tuple[bytes, str]:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SALES
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message_id = headers.pop("message_id", None) or make_msgid(domain="volkov-trade.ru")
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return bytes(message), message_id.strip("<>")


def mailbox_settings(server: MailServer, store_url: str, **mailbox: Any) -> Any:
    section = {
        "mailboxes": {
            "sales": {
                "host": server.host,
                "port": server.port,
                "security": "none",
                "user": SALES,
                "password": PASSWORD,
                "poll_interval": "1s",
                **mailbox,
            }
        },
        "own_domains": ["example.com"],
    }
    settings = make_settings(store_url, plugins={"email_inbound": section})
    week = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    settings.users = [u.model_copy(update={"working_days": week}) for u in settings.users]
    return settings


@pytest.fixture
async def running(mailroom: MailServer, sqlite_url: str) -> AsyncIterator[Hub]:
    hub = make_hub(mailbox_settings(mailroom, sqlite_url), extra={"email_inbound": EmailInbound})
    await hub.start()
    yield hub
    await hub.stop()


async def results(hub: Hub) -> list[dict[str, Any]]:
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(InboxEvent.status, InboxEvent.result)
            .where(InboxEvent.channel == "email_inbound")
            .order_by(InboxEvent.id)
        )
        return [{"status": r.status, **(r.result or {})} for r in rows]


async def filed(hub: Hub, count: int) -> list[dict[str, Any]]:
    async def done() -> Any:
        found = await results(hub)
        return found if sum(r["status"] == "done" for r in found) >= count else None

    return await wait_for(done, within=15)


async def rows(hub: Hub, statement: Any) -> list[Any]:
    async with hub.store.read() as conn:
        return list(await conn.execute(statement))


async def test_a_new_senders_letter_becomes_a_contact_and_a_deal_from_email(running, mailroom):
    raw, _ = letter()
    mailroom.deliver(SALES, raw)

    [result] = await filed(running, 1)

    assert result["decision"] == "new_contact"
    deal = (await rows(running, select(Deal).where(Deal.id == result["deal_id"])))[0]
    assert deal.source == "Email"
    contact = (await rows(running, select(Contact).where(Contact.id == deal.contact_id)))[0]
    assert contact.name == "Пётр Волков"
    points = {
        (p.kind, p.normalized)
        for p in await rows(
            running, select(ContactPoint).where(ContactPoint.contact_id == contact.id)
        )
    }
    assert ("email", "petr@volkov-trade.ru") in points
    assert ("phone", "+79123456789") in points  # from the signature
    activity = (await rows(running, select(Activity).where(Activity.deal_id == deal.id)))[0]
    assert activity.kind == "email"
    assert activity.summary == "Нужна плитка для офиса"
    assert "200 м²" in activity.payload["email"]["text"]


async def test_a_reply_to_a_letter_goes_to_the_same_deal(running, mailroom):
    first, first_id = letter()
    mailroom.deliver(SALES, first)
    [created] = await filed(running, 1)
    reply, _ = letter(
        subject="Re: Нужна плитка для офиса",
        text="А сроки поставки?\n\nOn Mon, Dec 7, 2026 Пётр wrote:\n> Нужно 200 м² плитки.\n",
        In_Reply_To=f"<{first_id}>",
        References=f"<{first_id}>",
    )
    mailroom.deliver(SALES, reply)

    results_ = await filed(running, 2)

    assert results_[1]["filed"] == "reply"
    assert results_[1]["deal_id"] == created["deal_id"]
    assert len(await rows(running, select(Deal.id))) == 1
    texts = [
        a.payload["email"]["text"]
        for a in await rows(running, select(Activity).where(Activity.kind == "email"))
    ]
    assert any(t.startswith("А сроки поставки?") and "200 м²" not in t for t in texts)


async def test_an_out_of_office_reply_is_skipped_with_its_reason(running, mailroom):
    raw, _ = letter(subject="Автоответ: в отпуске до 15 декабря", Auto_Submitted="auto-replied")
    mailroom.deliver(SALES, raw)

    [result] = await filed(running, 1)

    assert result["skipped"] == "auto_reply"
    assert await rows(running, select(Deal.id)) == []


async def test_a_bounce_marks_the_address_that_failed_on_its_contact(running, mailroom):
    raw, _ = letter(sender="Ирина <irina@old-firm.ru>")
    mailroom.deliver(SALES, raw)
    await filed(running, 1)
    bounce = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        b"To: sales@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <bounce-1@mx.example.com>\r\nAuto-Submitted: auto-replied\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nThe mail system: <irina@old-firm.ru>: "
        b"host mx.old-firm.ru said: 550 5.1.1 User unknown\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.com\r\n\r\n"
        b"Final-Recipient: rfc822; irina@old-firm.ru\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        b"--B--\r\n"
    )
    mailroom.deliver(SALES, bounce)

    result = (await filed(running, 2))[1]

    assert result["skipped"] == "bounce"
    assert result["failed"] == ["irina@old-firm.ru"]
    contact = (await rows(running, select(Contact)))[0]
    assert contact.custom["bouncing_emails"] == ["irina@old-firm.ru"]
    assert len(await rows(running, select(Deal.id))) == 1
    # and email campaigns no longer go to her (an opt-out with the bounce as its source)
    consent = (await rows(running, select(Consent)))[0]
    assert (consent.contact_id, consent.channel, consent.granted, consent.source) == (
        contact.id,
        "email",
        False,
        "bounce",
    )


async def test_a_letter_arriving_while_the_hub_waits_is_a_deal_within_two_seconds(
    running, mailroom
):
    await wait_for(lambda: _state(running, "idle"))
    raw, _ = letter()
    started = time.monotonic()
    mailroom.deliver(SALES, raw)

    await filed(running, 1)

    assert time.monotonic() - started < 2.0


async def test_a_letter_arriving_while_the_hub_reads_others_is_read_before_it_waits(
    mailroom, sqlite_url
):
    # The server announces the second letter once, in its reply to the STORE that flags
    # the first; the reader must not then wait in IDLE for an announcement that is over.
    mailroom.deliver(SALES, letter()[0])
    hub = make_hub(mailbox_settings(mailroom, sqlite_url), extra={"email_inbound": EmailInbound})
    reader = hub.plugins.records["email_inbound"].instance.readers["sales"]
    keep = reader.keep
    second = letter(sender="Анна Белова <belova@stroy-mir.ru>")[0]

    async def keep_while_a_letter_arrives(raw: bytes, seen: Any) -> None:
        if seen.uid == 1:
            await asyncio.to_thread(mailroom.deliver, SALES, second)
        await keep(raw, seen)

    reader.keep = keep_while_a_letter_arrives
    await hub.start()
    try:
        found = await filed(hub, 2)
        assert [r["decision"] for r in found] == ["new_contact", "new_contact"]
    finally:
        await hub.stop()


async def test_a_restart_reads_nothing_twice_and_flags_what_it_stored(mailroom, sqlite_url):
    for sender in (
        "Анна Белова <belova@stroy-mir.ru>",
        "Игорь Котов <kotov@kotov-group.ru>",
        "Марина Лебедева <m.lebedeva@gmail.com>",
    ):
        mailroom.deliver(SALES, letter(sender=sender, text="Пришлите прайс, пожалуйста.")[0])
    settings = mailbox_settings(mailroom, sqlite_url)
    hub = make_hub(settings, extra={"email_inbound": EmailInbound})
    await hub.start()
    await filed(hub, 3)
    await hub.stop()
    mailroom.deliver(SALES, letter(sender="Олег Новиков <novikov@tehnopark.ru>", text="Счёт?")[0])

    again = make_hub(mailbox_settings(mailroom, sqlite_url), extra={"email_inbound": EmailInbound})
    await again.start()
    try:
        found = await filed(again, 4)
        assert len(found) == 4
        assert len(await rows(again, select(Deal.id))) == 4
        assert all("\\Seen" in flags for flags in mailroom.flags(SALES))
    finally:
        await again.stop()


async def test_a_recreated_folder_with_a_new_uidvalidity_files_nothing_twice(mailroom, sqlite_url):
    raw, _ = letter()
    mailroom.deliver(SALES, raw)
    hub = make_hub(mailbox_settings(mailroom, sqlite_url), extra={"email_inbound": EmailInbound})
    await hub.start()
    await filed(hub, 1)
    await hub.stop()
    mailroom.recreate_inbox(SALES)  # the same letter again, under a new UIDVALIDITY
    mailroom.deliver(SALES, raw)
    mailroom.deliver(
        SALES, letter(sender="Ольга Зайцева <olga@zaitseva.ru>", text="Добрый день")[0]
    )

    again = make_hub(mailbox_settings(mailroom, sqlite_url), extra={"email_inbound": EmailInbound})
    await again.start()
    try:
        await filed(again, 2)
        assert len(await rows(again, select(Deal.id))) == 2
        assert len(await results(again)) == 2  # the repeated letter stored nothing new
    finally:
        await again.stop()


async def test_a_first_connection_takes_only_mail_since_the_configured_date(mailroom, sqlite_url):
    old = datetime.now(UTC) - timedelta(days=400)
    client = mailroom.client(SALES)
    client.append("INBOX", "", old.timestamp(), letter(sender="Старый <old@firm.ru>")[0])
    client.logout()
    mailroom.deliver(SALES, letter(sender="Свежий <fresh@firm.ru>")[0])
    since = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    hub = make_hub(
        mailbox_settings(mailroom, sqlite_url, since=since), extra={"email_inbound": EmailInbound}
    )
    await hub.start()
    try:
        [result] = await filed(hub, 1)
        assert result["sender"] == "fresh@firm.ru"
    finally:
        await hub.stop()


async def _state(hub: Hub, state: str) -> bool:
    plugin = hub.plugins.records["email_inbound"].instance
    return plugin.readers["sales"].state == state


async def test_past_the_hourly_limit_a_senders_letters_are_activities_without_new_tasks(
    mailroom, sqlite_url
):
    settings = mailbox_settings(mailroom, sqlite_url)
    settings.plugins["email_inbound"]["leads_per_sender_per_hour"] = 2
    hub = make_hub(settings, extra={"email_inbound": EmailInbound})
    await hub.start()
    try:
        for n in range(4):
            mailroom.deliver(SALES, letter(subject=f"Ваш заказ {n}", text=f"Письмо {n}")[0])
        found = await filed(hub, 4)

        assert sorted(r.get("filed") for r in found) == ["lead", "lead", "loop_guard", "loop_guard"]
        assert len(await rows(hub, select(Deal.id))) == 1
        assert len(await rows(hub, select(Task.id))) == 2  # the first task, one repeat
        emails = await rows(hub, select(Activity.id).where(Activity.kind == "email"))
        assert len(emails) == 4  # nothing lost: every letter is on the deal
    finally:
        await hub.stop()


async def test_mail_from_the_companys_own_domain_and_the_block_list_is_skipped(
    mailroom, sqlite_url
):
    settings = mailbox_settings(mailroom, sqlite_url)
    settings.plugins["email_inbound"]["block"] = ["spam-factory.ru"]
    hub = make_hub(settings, extra={"email_inbound": EmailInbound})
    await hub.start()
    try:
        mailroom.deliver(SALES, letter(sender="Коллега <boss@example.com>")[0])
        mailroom.deliver(SALES, letter(sender="Робот <news@mail.spam-factory.ru>")[0])
        found = await filed(hub, 2)

        assert sorted(r["skipped"] for r in found) == ["blocked", "own_address"]
        assert await rows(hub, select(Deal.id)) == []
    finally:
        await hub.stop()


@pytest.fixture
def tls_mail_server(tmp_path: Path) -> Iterator[MailServer]:
    """A dovecot offering STARTTLS with a self-signed certificate."""
    if not os.path.exists(DOVECOT) or os.geteuid() != 0:
        pytest.skip("needs dovecot-imapd, run as root")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    folder = Path(f"/tmp/hub-dovecot-tls-{os.getpid()}")
    server, pid = start(folder, tls=(cert, key))
    server.add_user(SALES)
    yield server
    os.kill(pid, 15)
    shutil.rmtree(folder, ignore_errors=True)


async def test_a_mailbox_read_over_starttls_files_its_letters(tls_mail_server, sqlite_url):
    tls_mail_server.deliver(SALES, letter()[0])
    settings = mailbox_settings(
        tls_mail_server, sqlite_url, security="starttls", validate_certs=False
    )
    hub = make_hub(settings, extra={"email_inbound": EmailInbound})
    await hub.start()
    try:
        [result] = await filed(hub, 1)
        assert result["decision"] == "new_contact"
    finally:
        await hub.stop()
