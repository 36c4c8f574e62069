"""Where a provider's delivery callback is not set up, the hub asks the gateway: sent
messages become delivered or failed (with the reason in words), each one is asked about
once a round, and a gateway that does not answer loses nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hub.campaigns.gateway import DeliveryReport
from hub.deals import SYSTEM
from hub.deals import changes as ch
from hub.store.types import utcnow
from tests.campaigns.conftest import contact, started_hub, until_sent


async def sent_campaign(hub, gateway, people: int) -> int:
    for i in range(people):
        await contact(hub, f"Клиент {i}", phone=f"+7916123{i:04d}", segment="Опт")
    campaign = await hub.campaigns.create(
        name="Новые цены", segment="wholesale", channel="sms", text="Новые цены", actor=SYSTEM
    )
    await hub.campaigns.start(campaign, SYSTEM)
    await until_sent(hub, campaign)
    assert len(gateway.sent) == people
    return campaign


async def test_unreported_messages_are_asked_for_and_become_delivered_or_failed(store_url, gateway):
    hub = await started_hub(store_url)
    try:
        campaign = await sent_campaign(hub, gateway, 3)
        gateway.reports = {
            "p1": DeliveryReport("p1", "delivered"),
            "p2": DeliveryReport("p2", "failed", error="абонент недоступен"),
        }
        reports = hub.delivery_reports
        assert reports is not None
        # Reports rarely come within a minute of sending: nobody is asked yet.
        assert await reports.ask() == 0
        assert gateway.asked == []

        later = utcnow() + timedelta(minutes=2)
        assert await reports.ask(later) == 2
        assert sorted(gateway.asked[0]) == ["p1", "p2", "p3"]
        status = await hub.campaigns.status(campaign)
        assert status["states"] == {"delivered": 1, "failed": 1, "sent": 1}
        report = await hub.campaigns.report(campaign)
        assert report["delivered"] == 1 and report["failed"] == 1

        # The one still unreported is asked about again a round later, not at once.
        assert await reports.ask(later + timedelta(seconds=1)) == 0
        assert len(gateway.asked) == 1
        gateway.reports["p3"] = DeliveryReport("p3", "delivered")
        assert await reports.ask(later + timedelta(minutes=6)) == 1
        assert gateway.asked[1] == ["p3"]
        assert (await hub.campaigns.status(campaign))["states"] == {"delivered": 2, "failed": 1}
    finally:
        await hub.stop()


async def test_a_gateway_that_does_not_answer_is_asked_again_next_round(sqlite_url, gateway):
    hub = await started_hub(sqlite_url)
    try:
        campaign = await sent_campaign(hub, gateway, 2)
        gateway.reports = {pid: DeliveryReport(pid, "delivered") for pid in ("p1", "p2")}
        gateway.down = True
        later = utcnow() + timedelta(minutes=2)
        assert await hub.delivery_reports.ask(later) == 0
        assert (await hub.campaigns.status(campaign))["states"] == {"sent": 2}
        gateway.down = False
        assert await hub.delivery_reports.ask(later + timedelta(minutes=6)) == 2
        assert (await hub.campaigns.status(campaign))["states"] == {"delivered": 2}
    finally:
        await hub.stop()


async def test_messages_sent_longer_ago_than_ask_reports_for_are_no_longer_asked_about(
    sqlite_url, gateway
):
    hub = await started_hub(sqlite_url)
    hub.settings.campaigns.ask_reports_for = timedelta(hours=1)
    try:
        await sent_campaign(hub, gateway, 1)
        assert await hub.delivery_reports.ask(utcnow() + timedelta(hours=2)) == 0
        assert gateway.asked == []
    finally:
        await hub.stop()


async def test_the_report_counts_delivery_cost_opt_outs_and_the_deals_recipients_made_after(
    store_url, gateway
):
    gateway.cost = Decimal("2.18")
    hub = await started_hub(store_url)
    try:
        sales = hub.catalog.pipelines["sales"]
        # Иван lost a deal before the campaign; Ольга had none.
        ivan = await contact(hub, "Иван Петров", phone="+79161230001", segment="Опт")
        olga = await contact(hub, "Ольга Смирнова", phone="+79161230002", segment="Опт")
        quiet = await contact(hub, "Пётр Молчун", phone="+79161230003", segment="Опт")
        lost = ch.CreateDeal(
            title="Плитка", pipeline_id=sales.id, stage_id=sales.entry_stage.id, contact=ivan
        )
        await hub.deals.apply(
            [lost, ch.CloseLost(deal=lost, reason="Дорого", override="тест")], SYSTEM
        )
        campaign = await hub.campaigns.create(
            name="Новые цены", segment="wholesale", channel="sms", text="Цены", actor=SYSTEM
        )
        await hub.campaigns.start(campaign, SYSTEM)
        await until_sent(hub, campaign)
        gateway.reports = {
            "p1": DeliveryReport("p1", "delivered"),
            "p2": DeliveryReport("p2", "failed", error="номер не обслуживается"),
        }
        await hub.delivery_reports.ask(utcnow() + timedelta(minutes=2))

        # After the message: Иван's lost deal is reopened, Ольга buys, Пётр unsubscribes.
        await hub.deals.apply([ch.Reopen(deal=lost.id)], SYSTEM)
        new = ch.CreateDeal(
            title="Опт", pipeline_id=sales.id, stage_id=sales.entry_stage.id, contact=olga
        )
        await hub.deals.apply([new, ch.CloseWon(deal=new, amount=45000, override="тест")], SYSTEM)
        await hub.campaigns.set_consent(quiet, "sms", False, source="smsc:reply", actor=SYSTEM)

        report = await hub.campaigns.report(campaign)
        assert report["recipients"] == 3 and report["sent"] == 3
        assert (report["delivered"], report["failed"]) == (1, 1)
        assert report["failures"] == {"номер не обслуживается": 1}
        assert report["cost"] == Decimal("6.54")
        assert report["sms_parts"] == 3
        assert report["opted_out"] == 1
        assert report["deals_created"] == 1
        assert report["deals_reopened"] == 1
        assert (report["deals_won"], report["won_amount"]) == (1, 45000)
        assert report["attribution_days"] == 30
    finally:
        await hub.stop()


async def test_the_contact_card_lists_the_campaigns_that_reached_the_contact_and_their_consent(
    aiohttp_client, sqlite_url, gateway
):
    from hub.app import build_app
    from tests.campaigns.conftest import GatewayPlugin, campaign_settings
    from tests.conftest import make_hub

    hub = make_hub(campaign_settings(sqlite_url), {"testgateway": GatewayPlugin})
    client = await aiohttp_client(build_app(hub))
    campaign = await sent_campaign(hub, gateway, 1)
    card = await (
        await client.get(
            "/api/v1/contacts/1", headers={"Authorization": "Bearer head-token-0123456789"}
        )
    ).json()
    assert [(c["campaign_id"], c["name"], c["state"]) for c in card["campaigns"]] == [
        (campaign, "Новые цены", "sent")
    ]
    assert card["campaigns"][0]["sent_at"] is not None
    assert [(c["channel"], c["granted"], c["source"]) for c in card["consents"]] == [
        ("sms", True, "import:test")
    ]
