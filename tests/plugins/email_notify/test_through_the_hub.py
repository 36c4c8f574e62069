"""The whole way: a rule queues a notification for a new deal's owner, the hub's sender hands
it to the email notifier, and it arrives at the SMTP server as mail, recorded as sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hub.deals import Reaction
from hub.hookspecs import hookimpl
from hub.store.models import Notification
from plugins.email_notify import EmailNotifier
from tests.conftest import make_hub, make_settings, wait_for
from tests.plugins.email_notify.conftest import SENDER
from tests.test_stage_rules import a_deal


class NewDealByEmail:
    """Tells a new deal's owner about it by email."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    @hookimpl
    def hub_react(self, events: list[dict[str, Any]]) -> list[Reaction]:
        return [
            Reaction(
                "new_deal_by_email",
                self.hub.notifications.queue(
                    to=["owner"],
                    template="deal_created",
                    context={"deal": {"title": event["payload"]["title"], "stage": "Новая"}},
                    key=f"deal.created:{event['id']}",
                    now=event["occurred_at"],
                    via=["email"],
                    deal={"id": event["subject_id"], "owner_id": event["payload"]["owner_id"]},
                    event_type=event["type"],
                ),
            )
            for event in events
            if event["type"] == "deal.created"
        ]


async def test_a_new_deals_owner_gets_an_email_recorded_as_sent(smtp_server, mailbox, sqlite_url):
    server = smtp_server()
    settings = make_settings(
        sqlite_url,
        notifications={"poll_every": "0.05s", "deal_url": "https://crm.example.ru/deals/{id}"},
        plugins={
            "email_notify": {
                "host": "127.0.0.1",
                "port": server.port,
                "security": "none",
                "sender": SENDER,
            },
            "alerts": {},
        },
    )
    hub = make_hub(settings, extra={"email_notify": EmailNotifier, "alerts": NewDealByEmail})
    await hub.start()
    try:
        deal_id = await a_deal(hub)

        async def sent() -> list[dict[str, Any]]:
            async with hub.store.read() as conn:
                rows = await conn.execute(select(Notification.__table__))
                return [dict(r._mapping) for r in rows if r.state == "sent"]

        [row] = await wait_for(sent)
    finally:
        await hub.stop()

    [received] = mailbox.received
    assert received.rcpt_tos == ["anna@example.com"]
    letter = received.message
    assert letter["Subject"] == "Новая сделка: Плитка"
    assert letter["Message-ID"] == row["provider_id"]
    text = letter.get_body(preferencelist=("plain",)).get_content()
    assert "«Плитка»" in text
    assert text.rstrip().endswith(f"Открыть сделку: https://crm.example.ru/deals/{deal_id}")
    assert "Плитка" in letter.get_body(preferencelist=("html",)).get_content()
