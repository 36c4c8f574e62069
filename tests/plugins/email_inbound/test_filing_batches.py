"""A batch's letters are filed together (one writer call for its replies) and each exactly
as it would be alone; when the batch's write is refused, the letters are filed one by one."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.context import Hub
from hub.deals import Refusal
from hub.deals.changes import LogActivity
from hub.hookspecs import hookimpl
from hub.intake import Worker
from hub.leads import LeadPipeline
from hub.store.models import Activity, Deal, InboxEvent
from plugins.email_inbound.channel import EmailInbound
from plugins.email_inbound.mailbox import Seen
from tests.conftest import make_hub, make_settings


def letter(i: int, **headers: str) -> tuple[bytes, str]:
    message = EmailMessage()
    message["From"] = f"Клиент {i} <client{i}@firm{i}.ru>"
    message["To"] = "sales@example.com"
    message["Subject"] = headers.pop("subject", f"Заявка №{i}")
    message_id = make_msgid(idstring=f"b{i}", domain=f"firm{i}.ru")
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(f"Здравствуйте! Нужно {i + 10} м² плитки.\n")
    return bytes(message), message_id


class RefuseReplies:
    """A guard refusing the activities of one deal (as a rule might refuse a closed one)."""

    deal: int | None = None

    @hookimpl
    def hub_guard(self, changes: Any) -> list[Refusal]:
        return [
            Refusal(change, "this deal takes no more mail")
            for change in changes
            if isinstance(change, LogActivity) and change.deal == RefuseReplies.deal
        ]


@pytest.fixture
async def hub(sqlite_url: str) -> AsyncIterator[Hub]:
    settings = make_settings(
        sqlite_url,
        plugins={"email_inbound": {"leads_per_sender_per_hour": 100}, "refuse": {}},
        intake={"batch_size": 500},
    )
    hub = make_hub(
        settings,
        extra={"email_inbound": EmailInbound, "refuse": RefuseReplies},
        start_workers=False,
    )
    await hub.start()
    yield hub
    RefuseReplies.deal = None
    await hub.stop()


async def keep(hub: Hub, raws: list[bytes]) -> None:
    plugin = hub.plugins.records["email_inbound"].instance
    for uid, raw in enumerate(raws, start=1):
        await plugin.keep(raw, Seen("sales", "INBOX", 1, uid))


async def file_one_batch(hub: Hub) -> tuple[int, list[int]]:
    """Run the intake worker over one batch; how many events, and the writer's batch sizes."""
    pipeline = LeadPipeline(hub.catalog, hub.settings, hub.reserve, hub.deals, hub.matchers())
    worker = Worker(
        hub.store, hub.settings.intake, pipeline, hub.parse_lead, hub.metrics,
        handler=hub.intake_handler,
    )  # fmt: skip
    writes: list[int] = []
    apply_in = hub.deals.apply_in

    async def counted(conn: Any, changes: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("depth", 0) == 0:
            writes.append(len(changes))
        return await apply_in(conn, changes, *args, **kwargs)

    hub.deals.apply_in = counted  # type: ignore[method-assign]
    try:
        return await worker.run_once(), writes
    finally:
        del hub.deals.apply_in


async def results(hub: Hub) -> list[Any]:
    async with hub.store.read() as conn:
        return list(
            await conn.execute(
                select(InboxEvent.id, InboxEvent.status, InboxEvent.result).order_by(InboxEvent.id)
            )
        )


async def activities_on(hub: Hub, deal_id: int) -> list[str]:
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(Activity.summary).where(Activity.deal_id == deal_id).order_by(Activity.id)
        )
        return list(rows.scalars())


async def test_replies_of_one_batch_are_written_in_one_call_each_on_its_own_deal(hub):
    firsts = [letter(i) for i in range(3)]
    await keep(hub, [raw for raw, _ in firsts])
    assert (await file_one_batch(hub))[0] == 3
    deals = [r.result["deal_id"] for r in await results(hub)]

    replies = [
        letter(10 + i, subject=f"Re: Заявка №{i}", In_Reply_To=message_id)
        for i, (_, message_id) in enumerate(firsts)
    ]
    newcomer = letter(20)
    away = letter(21, Auto_Submitted="auto-replied", subject="Вне офиса")
    await keep(hub, [replies[0][0], newcomer[0], replies[1][0], away[0], replies[2][0]])

    handled, writes = await file_one_batch(hub)

    assert handled == 5
    found = (await results(hub))[3:]
    assert [r.status for r in found] == ["done"] * 5
    assert [r.result.get("filed") or r.result.get("skipped") for r in found] == [
        "reply", "lead", "reply", "auto_reply", "reply",
    ]  # fmt: skip
    assert [found[i].result["deal_id"] for i in (0, 2, 4)] == deals
    assert found[1].result["decision"] == "new_contact"
    for i, deal_id in enumerate(deals):
        assert await activities_on(hub, deal_id) == [f"Заявка №{i}", f"Re: Заявка №{i}"]
    assert writes[0] == 3  # the three replies' activities in one writer call; then the lead


async def test_a_reply_the_writer_refuses_fails_alone_and_the_batch_is_filed_one_by_one(hub):
    firsts = [letter(i) for i in range(2)]
    await keep(hub, [raw for raw, _ in firsts])
    await file_one_batch(hub)
    deals = [r.result["deal_id"] for r in await results(hub)]
    RefuseReplies.deal = deals[0]
    await keep(
        hub,
        [
            letter(10 + i, subject=f"Re: Заявка №{i}", In_Reply_To=message_id)[0]
            for i, (_, message_id) in enumerate(firsts)
        ],
    )

    handled, _ = await file_one_batch(hub)

    assert handled == 2
    refused, filed = (await results(hub))[2:]
    assert refused.status == "pending"  # failed, to be retried with backoff
    assert filed.status == "done" and filed.result["deal_id"] == deals[1]
    assert await activities_on(hub, deals[0]) == ["Заявка №0"]
    assert await activities_on(hub, deals[1]) == ["Заявка №1", "Re: Заявка №1"]


async def test_a_letter_whose_stored_file_is_gone_fails_alone(hub):
    raws = [letter(i)[0] for i in range(3)]
    await keep(hub, raws)
    missing = hub.attachments.path(hashlib.sha256(raws[1]).hexdigest())
    assert missing is not None
    missing.unlink()

    handled, _ = await file_one_batch(hub)

    assert handled == 3
    assert [r.status for r in await results(hub)] == ["done", "pending", "done"]


async def test_a_reply_in_the_same_batch_as_the_letter_it_answers_goes_to_that_letters_deal(hub):
    request, request_id = letter(1)
    # a colleague answers in the thread from another address before the hub has filed the
    # first letter: both arrive in one batch, the reply first
    colleague = EmailMessage()
    colleague["From"] = "Коллега <boss@firm1.ru>"
    colleague["To"] = "sales@example.com"
    colleague["Subject"] = "Re: Заявка №1"
    colleague["Message-ID"] = make_msgid(idstring="c1", domain="firm1.ru")
    colleague["In-Reply-To"] = request_id
    colleague["References"] = request_id
    colleague.set_content("Добавлю: нужна ещё доставка.\n")
    await keep(hub, [bytes(colleague), request])

    handled, _ = await file_one_batch(hub)

    assert handled == 2
    reply, lead = await results(hub)
    assert lead.result["filed"] == "lead" and lead.result["decision"] == "new_contact"
    assert reply.result["filed"] == "reply"
    assert reply.result["deal_id"] == lead.result["deal_id"]
    assert await activities_on(hub, lead.result["deal_id"]) == ["Заявка №1", "Re: Заявка №1"]
    async with hub.store.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(Deal))).scalar() == 1
