"""`hub deals email`: a letter to a deal's client from the command line, through the same
outbox as ``POST /api/v1/deals/{id}/emails``, delivered by the daemon to a real SMTP server
(aiosmtpd)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.cli import main
from hub.commands.common import offline_hub
from hub.config import load_settings
from hub.context import Hub
from hub.store.models import Activity, Notification
from tests.conftest import ROOT, wait_for
from tests.plugins.email_notify.conftest import LoopbackServer, Mailbox

SALES = "sales@example.com"
CLIENT = "petr@volkov-trade.ru"


@pytest.fixture
def smtp() -> Iterator[tuple[LoopbackServer, Mailbox]]:
    mailbox = Mailbox()
    server = LoopbackServer(mailbox)
    server.start()
    yield server, mailbox
    server.stop()


def _config(tmp_path: Path, smtp_port: int | None) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("working_hours", "working_days"))
    )
    text += '\n\n[plugins.email_inbound]\nenabled = true\nown_domains = ["example.com"]\n'
    if smtp_port is not None:
        text += (
            "\n[plugins.email_inbound.smtp]\n"
            f'host = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
            f'sender = "{SALES}"\nsender_name = "Отдел продаж"\n'
        )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture
def config(tmp_path: Path, smtp: tuple[LoopbackServer, Mailbox]) -> Path:
    return _config(tmp_path, smtp[0].port)


def _deal(config: Path, email: str | None = CLIENT, owner: str = "anna@example.com") -> int:
    from hub.deals import Actor
    from hub.deals.changes import CreateContact, CreateDeal
    from hub.domain.normalize import email_point, phone_point

    async def go() -> int:
        async with offline_hub(load_settings(config)) as hub:
            assert hub.catalog is not None
            points = [phone_point("+79120000001", "RU")] + ([email_point(email)] if email else [])
            owner_id = hub.catalog.user_ids[owner]
            contact = CreateContact(name="Пётр Волков", points=points, owner_id=owner_id)
            pipeline = hub.catalog.pipelines["sales"]
            deal = CreateDeal(
                title="Склад 200 м²",
                pipeline_id=pipeline.id,
                stage_id=pipeline.entry_stage.id,
                contact=contact,
                owner_id=owner_id,
            )
            await hub.deals.apply([contact, deal], Actor.plugin("tests"))
            assert deal.id is not None
            return deal.id

    return asyncio.run(go())


def _email(config: Path, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, ["--config", str(config), "deals", "email", *args], input=input)


def _store(config: Path) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with offline_hub(load_settings(config)) as hub, hub.store.read() as conn:
            activities = [
                dict(r._mapping)
                for r in await conn.execute(
                    select(Activity.deal_id, Activity.kind, Activity.direction, Activity.payload)
                )
            ]
            outbox = [
                dict(r._mapping)
                for r in await conn.execute(
                    select(
                        Notification.notifier,
                        Notification.address,
                        Notification.state,
                        Notification.provider_id,
                        Notification.key,
                    )
                )
            ]
        return {"activities": activities, "outbox": outbox}

    return asyncio.run(go())


def _letters(store: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        a["payload"]["email"]
        for a in store["activities"]
        if a["kind"] == "email" and a["direction"] == "out"
    ]


def _deal_mail(store: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in store["outbox"] if n["notifier"] == "deal_mail"]


def _run_daemon(config: Path, until: Any) -> None:
    """Run the hub on ``config`` until ``until(hub)`` is true."""

    async def go() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        try:
            await wait_for(lambda: until(hub))
        finally:
            await hub.stop()

    asyncio.run(go())


def test_hub_deals_email_sends_the_letter_once_and_records_it_on_the_deal(config, smtp):
    _, received = smtp
    deal_id = _deal(config)

    result = _email(
        config,
        str(deal_id),
        "--subject",
        "Коммерческое предложение",
        "--text",
        "Пётр, направляем КП на 200 м².",
    )

    assert result.exit_code == 0, result.output
    [letter] = _letters(_store(config))
    assert f"Message-ID <{letter['message_id']}>" in result.output
    assert letter["to"] == CLIENT
    assert letter["subject"] == "Коммерческое предложение"
    assert letter["text"] == "Пётр, направляем КП на 200 м²."
    assert letter["from_name"] == "Анна Смирнова"  # the deal's owner signs it
    assert received.received == []  # queued with the activity; the daemon sends it

    async def recorded(hub: Hub) -> bool:
        async with hub.store.read() as conn:
            states = (await conn.execute(select(Notification.state))).scalars().all()
        return bool(received.received) and "sent" in states

    _run_daemon(config, recorded)
    _run_daemon(config, lambda hub: asyncio.sleep(0.5, True))  # a restart sends nothing again

    [sent] = received.received
    assert sent.rcpt_tos == [CLIENT]
    assert sent.message["Message-ID"] == f"<{letter['message_id']}>"  # the reply threads back
    assert sent.message["Subject"] == "Коммерческое предложение"
    assert sent.message.get_content().strip() == "Пётр, направляем КП на 200 м²."
    [row] = _deal_mail(_store(config))
    assert row["state"] == "sent"
    assert row["key"] == f"deal-mail:{letter['message_id']}"  # how the reply finds the deal
    assert row["provider_id"] == f"<{letter['message_id']}>"


def test_hub_deals_email_with_wait_reports_the_letter_sent_by_the_running_daemon(config, smtp):
    _, received = smtp
    deal_id = _deal(config)
    stop = threading.Event()
    started = threading.Event()

    async def serve() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        started.set()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await hub.stop()

    daemon = threading.Thread(target=asyncio.run, args=(serve(),))
    daemon.start()
    try:
        assert started.wait(20)
        result = _email(
            config, str(deal_id), "--subject", "Счёт", "--text", "Счёт во вложении.", "--wait", "20"
        )
    finally:
        stop.set()
        daemon.join(20)

    assert result.exit_code == 0, result.output
    assert f"sent to {CLIENT}" in result.output
    [sent] = received.received
    assert sent.message["Subject"] == "Счёт"


def test_hub_deals_email_reads_the_text_from_stdin_and_writes_to_the_address_given(config):
    deal_id = _deal(config)

    result = _email(
        config,
        str(deal_id),
        "--subject",
        "Договор",
        "--to",
        "Buh@Volkov-Trade.ru",
        input="Добрый день!\nДоговор во вложении.\n",
    )

    assert result.exit_code == 0, result.output
    [letter] = _letters(_store(config))
    assert letter["to"] == "Buh@volkov-trade.ru"  # as the API takes it
    assert letter["text"] == "Добрый день!\nДоговор во вложении.\n"
    [row] = _deal_mail(_store(config))
    assert row["address"] == "Buh@volkov-trade.ru"
    assert row["state"] == "queued"


def test_hub_deals_email_reads_the_text_from_a_file(config, tmp_path):
    deal_id = _deal(config)
    letter_file = tmp_path / "letter.txt"
    letter_file.write_text("Пётр, КП во вложении.\n", encoding="utf-8")

    result = _email(config, str(deal_id), "--subject", "КП", "--text-file", str(letter_file))

    assert result.exit_code == 0, result.output
    [letter] = _letters(_store(config))
    assert letter["text"] == "Пётр, КП во вложении.\n"


def test_hub_deals_email_to_a_deal_that_does_not_exist_says_so_and_exits_1(config):
    result = _email(config, "999", "--subject", "КП", "--text", "Текст")

    assert result.exit_code == 1
    assert "no deal 999" in result.output
    assert _deal_mail(_store(config)) == []


def test_hub_deals_email_as_a_manager_cannot_write_from_another_managers_deal(config):
    deal_id = _deal(config, owner="dmitry@example.com")

    result = _email(
        config, str(deal_id), "--subject", "КП", "--text", "Текст", "--as", "anna@example.com"
    )

    assert result.exit_code == 1
    assert f"no deal {deal_id}" in result.output
    assert _deal_mail(_store(config)) == []


def test_hub_deals_email_to_a_contact_without_an_email_asks_for_to_and_exits_1(config):
    deal_id = _deal(config, email=None)

    result = _email(config, str(deal_id), "--subject", "КП", "--text", "Текст")

    assert result.exit_code == 1
    assert "no email" in result.output
    assert "--to" in result.output
    assert _letters(_store(config)) == []
    assert _deal_mail(_store(config)) == []


def test_hub_deals_email_without_smtp_configured_says_so_and_queues_nothing(tmp_path):
    config = _config(tmp_path, smtp_port=None)
    deal_id = _deal(config)

    result = _email(config, str(deal_id), "--subject", "КП", "--text", "Текст")

    assert result.exit_code == 1
    assert "sending mail is not configured" in result.output
    assert _letters(_store(config)) == []
    assert _deal_mail(_store(config)) == []


def test_hub_deals_email_refuses_what_the_api_refuses(config):
    deal_id = _deal(config)

    bad_to = _email(config, str(deal_id), "--subject", "КП", "--text", "x", "--to", "not-mail")
    empty = _email(config, str(deal_id), "--subject", "", "--text", "x")
    long_subject = _email(config, str(deal_id), "--subject", "К" * 301, "--text", "x")

    assert bad_to.exit_code == 2 and "--to" in bad_to.output
    assert empty.exit_code == 2 and "--subject" in empty.output
    assert long_subject.exit_code == 2 and "--subject" in long_subject.output
    assert _deal_mail(_store(config)) == []


def test_hub_deals_email_takes_the_text_once(config, tmp_path):
    letter_file = tmp_path / "letter.txt"
    letter_file.write_text("x", encoding="utf-8")

    result = _email(config, "1", "--subject", "КП", "--text", "x", "--text-file", str(letter_file))

    assert result.exit_code == 2
    assert "--text or --text-file" in result.output


def test_hub_deals_email_with_a_key_run_twice_queues_one_letter(config, smtp):
    _, received = smtp
    deal_id = _deal(config)
    letter = [str(deal_id), "--subject", "Счёт", "--text", "Счёт во вложении.", "--key", "inv-7"]

    first = _email(config, *letter)
    again = _email(config, *letter)  # a script retrying after a timeout

    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    [queued] = _letters(_store(config))
    assert f"queued, Message-ID <{queued['message_id']}>" in first.output
    assert f"already queued (--key), Message-ID <{queued['message_id']}>" in again.output
    assert len(_deal_mail(_store(config))) == 1

    other = _email(config, str(deal_id), "--subject", "Акт", "--text", "Акт.", "--key", "inv-7")
    assert other.exit_code == 1
    assert "--key inv-7 was used for another letter; nothing sent" in other.output
    assert len(_letters(_store(config))) == 1

    _run_daemon(config, lambda hub: asyncio.sleep(0.5, bool(received.received)))
    assert len(received.received) == 1
