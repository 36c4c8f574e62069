"""Mail sent from a deal: through a real SMTP server (aiosmtpd), and the client's reply back
through a real IMAP server (dovecot) onto the same deal."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from hub.app import build_app
from hub.store.models import Activity, Deal, Notification
from plugins.email_inbound.channel import EmailInbound
from tests.conftest import make_hub, wait_for
from tests.dovecot import MailServer
from tests.plugins.email_inbound.test_mailboxes import (
    SALES,
    filed,
    letter,
    mailbox_settings,
)
from tests.plugins.email_notify.conftest import LoopbackServer, Mailbox

HEAD = {"Authorization": "Bearer head-token-0123456789"}
ANNA = {"Authorization": "Bearer anna-token-0123456789"}


@pytest.fixture
def smtp() -> Iterator[tuple[LoopbackServer, Mailbox]]:
    mailbox = Mailbox()
    server = LoopbackServer(mailbox)
    server.start()
    yield server, mailbox
    server.stop()


@pytest.fixture
async def desk(
    aiohttp_client: Callable[..., Any],
    mailroom: MailServer,
    smtp: Any,
    sqlite_url: str,
) -> Any:
    server, _ = smtp
    settings = mailbox_settings(mailroom, sqlite_url)
    settings.plugins["email_inbound"]["smtp"] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "sender": SALES,
        "sender_name": "Отдел продаж",
    }
    hub = make_hub(settings, extra={"email_inbound": EmailInbound})
    client = await aiohttp_client(build_app(hub))

    async def running() -> bool:
        return hub.plugins.records["email_inbound"].state == "running"

    await wait_for(running)
    return client, hub


async def test_a_letter_sent_from_a_deal_reaches_the_client_and_their_reply_the_deal(
    desk, mailroom, smtp
):
    client, hub = desk
    _, received = smtp
    mailroom.deliver(SALES, letter()[0])
    [first] = await filed(hub, 1)
    deal_id = first["deal_id"]

    response = await client.post(
        f"/api/v1/deals/{deal_id}/emails",
        json={"subject": "Коммерческое предложение", "text": "Пётр, направляем КП на 200 м²."},
        headers={**HEAD, "Idempotency-Key": "kp-1"},
    )

    assert response.status == 201, await response.text()
    sent = await response.json()
    await wait_for(lambda: _value(received.received))
    [delivered] = received.received
    assert delivered.rcpt_tos == ["petr@volkov-trade.ru"]
    letter_sent = email.message_from_bytes(delivered.data, policy=email.policy.default)
    assert letter_sent["Message-ID"] == f"<{sent['message_id']}>"
    assert letter_sent["Subject"] == "Коммерческое предложение"
    assert letter_sent["In-Reply-To"] == f"<{first['message_id']}>"  # answers the request
    assert "Auto-Submitted" not in letter_sent  # a person's letter, not a robot's
    again = await client.post(
        f"/api/v1/deals/{deal_id}/emails",
        json={"subject": "Коммерческое предложение", "text": "Пётр, направляем КП на 200 м²."},
        headers={**HEAD, "Idempotency-Key": "kp-1"},
    )
    assert (await again.json())["message_id"] == sent["message_id"]  # one letter, not two

    reply, _ = letter(
        subject="Re: Коммерческое предложение",
        text="Согласны, выставляйте счёт.\n",
        In_Reply_To=f"<{sent['message_id']}>",
    )
    mailroom.deliver(SALES, reply)
    results = await filed(hub, 2)

    assert results[1]["filed"] == "reply"
    assert results[1]["deal_id"] == deal_id
    async with hub.store.read() as conn:
        kinds = [
            (a.direction, a.summary)
            for a in await conn.execute(
                select(Activity).where(Activity.deal_id == deal_id).order_by(Activity.id)
            )
        ]
        deals = (await conn.execute(select(Deal.id))).scalars().all()
        outbox = (await conn.execute(select(Notification.state))).scalars().all()
    assert ("out", "Коммерческое предложение") in kinds
    assert ("in", "Re: Коммерческое предложение") in kinds
    assert deals == [deal_id]
    assert "sent" in outbox


async def test_a_manager_cannot_send_from_another_managers_deal(desk):
    client, hub = desk
    deal_id = await _deal(hub, "dmitry@example.com", email="client@firm.ru")

    response = await client.post(
        f"/api/v1/deals/{deal_id}/emails", json={"subject": "x", "text": "y"}, headers=ANNA
    )

    assert response.status == 404


async def test_a_deal_whose_client_has_no_email_is_told_to_give_one(desk):
    client, hub = desk
    deal_id = await _deal(hub, "anna@example.com", email=None)

    response = await client.post(
        f"/api/v1/deals/{deal_id}/emails", json={"subject": "x", "text": "y"}, headers=HEAD
    )

    assert response.status == 422
    assert "no email" in (await response.json())["detail"]


async def _deal(hub: Any, owner: str, email: str | None) -> int:
    from hub.deals import Actor
    from hub.deals.changes import CreateContact, CreateDeal
    from hub.domain.normalize import email_point, phone_point

    points = [phone_point("+79120000001", "RU")] + ([email_point(email)] if email else [])
    owner_id = hub.catalog.user_ids[owner]
    contact = CreateContact(name="Клиент", points=points, owner_id=owner_id)
    pipeline = hub.catalog.pipelines["sales"]
    deal = CreateDeal(
        title="Сделка",
        pipeline_id=pipeline.id,
        stage_id=pipeline.entry_stage.id,
        contact=contact,
        owner_id=owner_id,
    )
    await hub.deals.apply([contact, deal], Actor.plugin("tests"))
    assert deal.id is not None
    return deal.id


async def _value(value: Any) -> Any:
    return value
