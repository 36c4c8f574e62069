"""Mail forwarded to the hub over SMTP: the real listener (aiosmtpd) in a started hub, a real
client (aiosmtplib) sending to it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from hub.context import Hub
from hub.store.models import Deal, InboxEvent, Pipeline, Stage
from plugins.email_inbound.channel import EmailInbound
from plugins.email_inbound.config import EmailInboundConfig
from tests.conftest import make_hub, make_settings, wait_for

SALES = "sales@firm.ru"
PASSWORD = "forwarder-password-0123456789abcdef"


def letter(
    sender: str = "Пётр Волков <petr@volkov-trade.ru>",
    to: str = SALES,
    text: str = "Здравствуйте! Нужно 200 м² плитки.\n\n-- \nПётр Волков\n+7 912 345-67-89\n",
    message_id: str | None = "default",
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Нужна плитка для офиса"
    if message_id == "default":
        message["Message-ID"] = make_msgid(domain="volkov-trade.ru")
    elif message_id is not None:
        message["Message-ID"] = message_id
    message.set_content(text)
    return message


def intake_section(**listener: Any) -> dict[str, Any]:
    return {
        "smtp_intake": {
            "enabled": True,
            "port": 0,
            "recipients": {
                "sales": {"addresses": [SALES, "@opt.firm.ru"]},
                "wholesale": {
                    "addresses": ["opt@firm.ru"],
                    "pipeline": "wholesale",
                    "source": "Оптовая почта",
                },
            },
            **listener,
        }
    }


@pytest.fixture
async def running(sqlite_url: str) -> AsyncIterator[tuple[Hub, int]]:
    hub, port = await _start(sqlite_url)
    yield hub, port
    await hub.stop()


async def _start(sqlite_url: str, **listener: Any) -> tuple[Hub, int]:
    settings = make_settings(sqlite_url, plugins={"email_inbound": intake_section(**listener)})
    hub = make_hub(settings, extra={"email_inbound": EmailInbound})
    await hub.start()
    plugin = hub.plugins.records["email_inbound"].instance

    async def listening() -> int | None:
        return plugin.listener.port if plugin.listener.state == "listening" else None

    return hub, await wait_for(listening, within=5)


async def send(port: int, message: EmailMessage, **kwargs: Any) -> Any:
    return await aiosmtplib.send(message, hostname="127.0.0.1", port=port, **kwargs)


async def stored(hub: Hub) -> list[Any]:
    async with hub.store.read() as conn:
        return list(
            await conn.execute(
                select(InboxEvent.id, InboxEvent.status, InboxEvent.payload, InboxEvent.result)
                .where(InboxEvent.channel == "email_inbound")
                .order_by(InboxEvent.id)
            )
        )


async def filed(hub: Hub, count: int) -> list[Any]:
    async def done() -> Any:
        found = await stored(hub)
        return found if sum(r.status == "done" for r in found) >= count else None

    return await wait_for(done, within=15)


async def sql(database: str, statement: str) -> None:
    """Run ``statement`` on the hub's database from another connection, off the event loop
    (the hub's own transactions go on meanwhile)."""

    def run() -> None:
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
            connection.execute(statement)
            connection.commit()

    await asyncio.to_thread(run)


async def deal_count(hub: Hub) -> int:
    async with hub.store.read() as conn:
        return (await conn.execute(select(func.count()).select_from(Deal))).scalar_one()


async def test_a_new_senders_forwarded_letter_becomes_a_deal_where_its_recipient_says(running):
    hub, port = running

    errors, response = await send(port, letter(to="Опт <opt@firm.ru>"))

    assert errors == {}
    assert response.startswith("2.0.0 Stored as event")
    [event] = await filed(hub, 1)
    assert event.payload["via"] == "smtp" and event.payload["recipient"] == "wholesale"
    assert event.result["decision"] == "new_contact"
    async with hub.store.read() as conn:
        deal = (
            await conn.execute(
                select(Deal.source, Pipeline.key, Stage.key.label("stage"))
                .join(Pipeline, Pipeline.id == Deal.pipeline_id)
                .join(Stage, Stage.id == Deal.stage_id)
                .where(Deal.id == event.result["deal_id"])
            )
        ).one()
    assert (deal.source, deal.key, deal.stage) == ("Оптовая почта", "wholesale", "new")


async def test_the_same_letter_sent_twice_is_stored_once_and_makes_one_deal(running):
    hub, port = running
    with_id = letter()
    without_id = letter(sender="Анна <anna@belova.ru>", message_id=None)

    first = [await send(port, with_id), await send(port, without_id)]
    again = [await send(port, with_id), await send(port, without_id)]  # an MTA's retry

    assert all(r.startswith("2.0.0 Stored as event") for _, r in first)
    assert [r for _, r in again] == [r.replace("Stored", "Already stored") for _, r in first]
    await filed(hub, 2)
    assert len(await stored(hub)) == 2
    assert await deal_count(hub) == 2


async def test_250_comes_only_once_the_letter_is_on_disk_and_in_the_intake(running):
    hub, port = running

    message = letter()

    await send(port, message)

    [event] = await stored(hub)  # looked at the moment the client has its 250
    path = hub.attachments.path(event.payload["raw"])
    assert path is not None
    assert message["Message-ID"].encode() in path.read_bytes()
    assert path.stat().st_size == event.payload["size"]


async def test_a_store_that_cannot_take_the_letter_answers_451_and_the_retry_is_filed(
    running, sqlite_url
):
    hub, port = running
    message = letter()
    folder = hub.attachments.folder
    shutil.rmtree(folder)
    folder.write_text("not a folder")  # the disk refuses the letter (root ignores modes)
    try:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(port, message)
    finally:
        folder.unlink()
        folder.mkdir()
    assert refused.value.code == 451
    assert "try again later" in refused.value.message

    database = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    await sql(
        database,
        "CREATE TRIGGER refuse BEFORE INSERT ON inbox BEGIN SELECT RAISE(ABORT, 'full'); END",
    )
    try:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(port, message)  # the database refuses it
    finally:
        await sql(database, "DROP TRIGGER refuse")
    assert refused.value.code == 451
    assert await stored(hub) == []

    _, response = await send(port, message)  # the sending server's retry

    assert response.startswith("2.0.0 Stored as event")
    await filed(hub, 1)
    assert await deal_count(hub) == 1


async def test_a_letter_while_the_hub_shuts_down_is_answered_451(running):
    hub, port = running
    await hub.intake.stop()

    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(port, letter())

    assert refused.value.code == 451
    assert "shutting down" in refused.value.message


async def test_a_letter_over_the_size_limit_is_refused_with_552(sqlite_url):
    hub, port = await _start(sqlite_url, max_message=64 * 1024)
    try:
        big = letter(text="плитка " * 20_000)
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await send(port, big)
        assert refused.value.code == 552
        assert "larger than the 65536 bytes" in refused.value.message

        small = letter()  # the same session limits leave the next letter alone
        _, response = await send(port, small)
        assert response.startswith("2.0.0 Stored as event")
        assert len(await stored(hub)) == 1
    finally:
        await hub.stop()


async def test_a_recipient_the_hub_does_not_take_is_refused_with_550(running):
    hub, port = running

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(port, letter(to="someone@elsewhere.ru"))

    [error] = refused.value.recipients
    assert error.code == 550 and "no such mailbox here" in error.message
    errors, _ = await send(port, letter(), recipients=["x@opt.firm.ru", "ivan@firm.ru"])
    assert list(errors) == ["ivan@firm.ru"]  # the one it takes is stored, the other refused
    [event] = await filed(hub, 1)
    assert event.payload["rcpt_to"] == ["x@opt.firm.ru"]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, for STARTTLS."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_a_host_outside_allow_from_may_send_only_after_auth_over_starttls(
    sqlite_url, certificate
):
    cert, key = certificate
    hub, port = await _start(
        sqlite_url,
        allow_from=["192.0.2.0/24"],  # not this machine
        users={"forwarder": PASSWORD},
        tls_cert=str(cert),
        tls_key=str(key),
    )
    try:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await send(port, letter(), start_tls=True, validate_certs=False)
        assert refused.value.code == 530

        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await send(
                port,
                letter(),
                start_tls=True,
                validate_certs=False,
                username="forwarder",
                password="wrong",
            )

        _, response = await send(
            port,
            letter(),
            start_tls=True,
            validate_certs=False,
            username="forwarder",
            password=PASSWORD,
        )
        assert response.startswith("2.0.0 Stored as event")
        [event] = await filed(hub, 1)
        assert event.payload["user"] == "forwarder"
    finally:
        await hub.stop()


async def test_without_auth_a_host_outside_allow_from_is_refused_with_554(sqlite_url):
    hub, port = await _start(sqlite_url, allow_from=["192.0.2.0/24"])
    try:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await send(port, letter())
        assert refused.value.code == 554
        assert await stored(hub) == []
    finally:
        await hub.stop()


async def test_the_listener_stops_with_the_hub(sqlite_url):
    hub, port = await _start(sqlite_url)
    await hub.stop()

    with pytest.raises(aiosmtplib.SMTPConnectError):
        await send(port, letter())


@pytest.mark.parametrize(
    ("listener", "says"),
    [
        ({"enabled": True}, "name the addresses it takes mail for"),
        ({"enabled": True, "recipients": {"s": {"addresses": ["sales"]}}}, "write an address"),
        (
            {**intake_section()["smtp_intake"], "users": {"f": PASSWORD}},
            "AUTH is offered only after STARTTLS",
        ),
        ({**intake_section()["smtp_intake"], "allow_from": []}, "nobody could hand over mail"),
        (
            {
                **intake_section()["smtp_intake"],
                "host": "0.0.0.0",
                "users": {"f": "short"},
                "auth_require_tls": False,
            },
            "too short",
        ),
        (
            {
                "recipients": {
                    "a": {"addresses": [SALES]},
                    "b": {"addresses": [SALES.upper()]},
                }
            },
            "is in both",
        ),
    ],
)
def test_a_listener_that_cannot_work_or_would_be_open_is_a_config_error(listener, says):
    with pytest.raises(ValidationError, match=says):
        EmailInboundConfig.model_validate({"smtp_intake": listener})


def test_the_listener_is_off_unless_enabled():
    assert EmailInboundConfig().smtp_intake.enabled is False
    assert EmailInbound.Config.model_validate({}).smtp_intake.recipients == {}
