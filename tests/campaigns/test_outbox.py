"""Starting a campaign writes its outbox in one statement: the right people once each, the
rest skipped with the reason; the sender delivers it at its pace, retries what the gateway
could not take, and settles what a crash cut off without sending anyone the message twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hub.campaigns.desk import CampaignError
from hub.deals import SYSTEM, Refused
from hub.deals import changes as ch
from hub.store.models import CampaignMessage
from hub.store.types import utcnow
from tests.campaigns.conftest import contact, started_hub, until_sent
from tests.conftest import wait_for

TEXT = "{{ contact.first_name or 'Добрый день' }}, новые оптовые цены с 1 января. {{ owner.name }}"


async def sms_campaign(hub, segment: str = "wholesale", **options) -> int:
    return await hub.campaigns.create(
        name=options.pop("name", "Новые цены"),
        segment=segment,
        channel="sms",
        text=options.pop("text", TEXT),
        actor=SYSTEM,
        **options,
    )


async def test_only_contacts_with_consent_and_a_phone_get_the_advert_once_each(store_url, gateway):
    hub = await started_hub(store_url)
    try:
        agreed = await contact(hub, "Пётр Иванов", phone="+79161234567", segment="Опт")
        await contact(hub, "Олег Без Согласия", phone="+79161234568", segment="Опт", sms=None)
        await contact(hub, "Ирина Отписалась", phone="+79161234569", segment="Опт", sms=False)
        await contact(hub, "Без Телефона", email="x@zavod.ru", segment="Опт")
        await contact(hub, "Жена Петра", phone="8 (916) 123-45-67", segment="Опт")  # same phone
        await contact(hub, "Розница", phone="+79161234570", segment="Розница")

        campaign = await sms_campaign(hub)
        started = await hub.campaigns.start(campaign, SYSTEM)
        assert started == {
            "queued": 1,
            "skipped": {"no_consent": 1, "opted_out": 1, "no_address": 1, "same_address": 1},
        }
        await until_sent(hub, campaign)
        assert [(m.address, m.contact_id) for m in gateway.sent] == [("+79161234567", agreed)]
        assert gateway.sent[0].text.startswith("Пётр, новые оптовые цены")
        status = await hub.campaigns.status(campaign)
        assert status["states"] == {"sent": 1, "skipped": 4}
        assert status["campaign"]["state"] == "finished"
    finally:
        await hub.stop()


async def test_a_service_message_needs_no_consent_but_never_reaches_an_opt_out(sqlite_url, gateway):
    hub = await started_hub(sqlite_url)
    try:
        await contact(hub, "Олег", phone="+79161234568", segment="Опт", sms=None)
        await contact(hub, "Ирина", phone="+79161234569", segment="Опт", sms=False)
        campaign = await sms_campaign(hub, service=True, text="Ваш заказ готов к отгрузке.")
        started = await hub.campaigns.start(campaign, SYSTEM)
        assert started == {"queued": 1, "skipped": {"opted_out": 1}}
        await until_sent(hub, campaign)
        assert [m.address for m in gateway.sent] == ["+79161234568"]
    finally:
        await hub.stop()


async def test_a_campaign_starts_once(sqlite_url, gateway):
    hub = await started_hub(sqlite_url)
    try:
        await contact(hub, "Пётр", phone="+79161234567", segment="Опт")
        campaign = await sms_campaign(hub)
        await hub.campaigns.start(campaign, SYSTEM)
        with pytest.raises(Refused):
            await hub.campaigns.start(campaign, SYSTEM)
        await until_sent(hub, campaign)
        assert len(gateway.sent) == 1
    finally:
        await hub.stop()


async def test_segments_filter_by_won_amount_and_by_the_stage_of_open_deals(store_url, gateway):
    hub = await started_hub(store_url)
    try:
        sales = hub.catalog.pipelines["sales"]
        big = await contact(hub, "Крупный", phone="+79161230001")
        small = await contact(hub, "Мелкий", phone="+79161230002")
        talking = await contact(hub, "На КП", phone="+79161230003")
        for who, amount in ((big, 60000), (big, 50000), (small, 90000)):
            deal = ch.CreateDeal(
                title="Поставка", pipeline_id=sales.id, stage_id=sales.entry_stage.id, contact=who
            )
            await hub.deals.apply(
                [deal, ch.CloseWon(deal=deal, amount=amount, override="тест")], SYSTEM
            )
        deal = ch.CreateDeal(
            title="Плитка", pipeline_id=sales.id, stage_id=sales.entry_stage.id, contact=talking
        )
        await hub.deals.apply(
            [deal, ch.MoveStage(deal=deal, stage="proposal", override="тест")], SYSTEM
        )

        big_buyers = await hub.campaigns.preview(hub.campaigns.audience("big_buyers"))
        assert big_buyers["count"] == 1 and big_buyers["sample"][0]["id"] == big
        at_proposal = await hub.campaigns.preview(hub.campaigns.audience("proposal_stage"))
        assert [p["id"] for p in at_proposal["sample"]] == [talking]
        assert at_proposal["with_consent"] == {"sms": 1, "email": 0}
    finally:
        await hub.stop()


async def test_a_transient_failure_is_retried_and_then_sent(sqlite_url, gateway):
    hub = await started_hub(sqlite_url)
    try:
        await contact(hub, "Пётр", phone="+79161234567", segment="Опт")
        gateway.fail_first["+79161234567"] = 1
        campaign = await sms_campaign(hub)
        await hub.campaigns.start(campaign, SYSTEM)
        row = await wait_for(lambda: _tried(hub))  # queued again, due after the backoff
        assert row.state == "queued" and row.error == "503 from the gateway"
        async with hub.store.write() as conn:  # the backoff has passed
            await conn.execute(update(CampaignMessage).values(due_at=utcnow()))
        hub.campaign_sender.wake.set()
        await until_sent(hub, campaign)
        assert len(gateway.sent) == 1
    finally:
        await hub.stop()


async def test_a_send_cut_off_by_a_crash_is_settled_by_asking_the_gateway(sqlite_url, gateway):
    hub = await started_hub(sqlite_url)
    try:
        hub.campaign_sender.stop()
        await contact(hub, "Пётр", phone="+79161234567", segment="Опт")
        await contact(hub, "Мария", phone="+79161234568", segment="Опт")
        campaign = await sms_campaign(hub)
        await hub.campaigns.start(campaign, SYSTEM)
        # A process took both rows, got the first to the gateway and died before recording.
        async with hub.store.write() as conn:
            await conn.execute(
                update(CampaignMessage).values(
                    state="sending", claimed_by="dead", lease_until=utcnow() - timedelta(seconds=1)
                )
            )
            rows = (await conn.execute(select(CampaignMessage).order_by(CampaignMessage.id))).all()
        gateway.known[rows[0].key] = "p-before-crash"
        await hub.campaign_sender.recover()
        async with hub.store.read() as conn:
            after = {
                r.address: (r.state, r.provider_id)
                for r in (await conn.execute(select(CampaignMessage))).all()
            }
        assert after == {
            "+79161234567": ("sent", "p-before-crash"),  # it got there: not sent again
            "+79161234568": ("queued", None),  # it never arrived: sent now
        }
    finally:
        await hub.stop()


async def test_when_the_gateway_cannot_tell_an_interrupted_message_waits_for_review(
    sqlite_url, gateway
):
    gateway.can_tell = False
    hub = await started_hub(sqlite_url)
    try:
        hub.campaign_sender.stop()
        await contact(hub, "Пётр", phone="+79161234567", segment="Опт")
        campaign = await sms_campaign(hub)
        await hub.campaigns.start(campaign, SYSTEM)
        async with hub.store.write() as conn:
            await conn.execute(
                update(CampaignMessage).values(
                    state="sending", claimed_by="dead", lease_until=utcnow() - timedelta(seconds=1)
                )
            )
        await hub.campaign_sender.recover()
        status = await hub.campaigns.status(campaign)
        assert status["states"] == {"review": 1}
        assert gateway.sent == []
    finally:
        await hub.stop()


async def test_quiet_hours_hold_a_message_until_morning_at_the_recipients(sqlite_url, gateway):
    hub = await started_hub(sqlite_url)
    try:
        await contact(hub, "Пётр", phone="+79161234567", segment="Опт")
        campaign = await sms_campaign(hub, quiet_hours="00:00-24:00")  # always quiet
        await hub.campaigns.start(campaign, SYSTEM)
        await asyncio.sleep(0.5)
        async with hub.store.read() as conn:
            row = (await conn.execute(select(CampaignMessage))).one()
        assert row.state == "queued" and row.due_at > utcnow()
        assert gateway.sent == []
    finally:
        await hub.stop()


async def test_a_campaign_on_an_unknown_segment_or_with_a_broken_template_is_refused(
    sqlite_url, gateway
):
    hub = await started_hub(sqlite_url)
    try:
        with pytest.raises(CampaignError, match="нет сегмента «vip»"):
            await sms_campaign(hub, segment="vip")
        with pytest.raises(CampaignError, match="text: строка 1"):
            await sms_campaign(hub, text="{{ contact.name ")
        with pytest.raises(CampaignError, match="нет шлюза для канала email"):
            await hub.campaigns.create(
                name="x", segment="wholesale", channel="email", text="x", subject="x", actor=SYSTEM
            )
    finally:
        await hub.stop()


async def _tried(hub):
    async with hub.store.read() as conn:
        row = (await conn.execute(select(CampaignMessage))).one()
    return row if row.attempts == 1 and row.state == "queued" else None


async def test_hook_hub_campaign_gateways_gives_campaigns_a_third_partys_gateway(
    sqlite_url, gateway
):
    hub = await started_hub(sqlite_url)
    try:
        assert list(hub.gateways) == ["testsms"]
        await contact(hub, "Пётр", phone="+79161234567", segment="Опт")
        campaign = await sms_campaign(hub)  # the only sms gateway: taken without naming it
        assert (await hub.campaigns.get(campaign))["gateway"] == "testsms"
        await hub.campaigns.start(campaign, SYSTEM)
        await until_sent(hub, campaign)
        assert len(gateway.sent) == 1
    finally:
        await hub.stop()
