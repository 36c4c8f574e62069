"""A message a crash left unknown waits for a person: the head sees it, checks with the
provider, and either has it sent again or takes it as sent. Either way the decision is
an event, and nobody else is touched."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from hub.app import build_app
from hub.deals import SYSTEM
from hub.store.models import CampaignMessage, DomainEvent
from hub.store.types import utcnow
from tests.campaigns.conftest import GatewayPlugin, campaign_settings, contact
from tests.conftest import make_hub

HEAD = {"Authorization": "Bearer head-token-0123456789"}
ANNA = {"Authorization": "Bearer anna-token-0123456789"}


async def held_campaign(hub, gateway) -> int:
    """Two recipients whose sends a crash cut off, and a gateway that cannot tell."""
    gateway.can_tell = False
    hub.campaign_sender.stop()
    await contact(hub, "Пётр", phone="+79161234567", segment="Опт")
    await contact(hub, "Мария", phone="+79161234568", segment="Опт")
    campaign = await hub.campaigns.create(
        name="Цены", segment="wholesale", channel="sms", text="Цены", actor=SYSTEM
    )
    await hub.campaigns.start(campaign, SYSTEM)
    async with hub.store.write() as conn:
        await conn.execute(
            update(CampaignMessage).values(
                state="sending", claimed_by="dead", lease_until=utcnow() - timedelta(seconds=1)
            )
        )
    await hub.campaign_sender.drain()  # settles them as held, finishes the campaign
    assert (await hub.campaigns.status(campaign))["campaign"]["state"] == "finished"
    return campaign


async def test_held_messages_are_listed_and_sent_again_when_the_head_says_they_did_not_go(
    aiohttp_client, store_url, gateway
):
    hub = make_hub(campaign_settings(store_url), {"testgateway": GatewayPlugin})
    client = await aiohttp_client(build_app(hub))
    campaign = await held_campaign(hub, gateway)

    held = await (await client.get(f"/api/v1/campaigns/{campaign}/held", headers=HEAD)).json()
    assert [m["name"] for m in held["held"]] == ["Пётр", "Мария"]
    assert "неизвестно, ушло ли" in held["held"][0]["error"]
    refused = await client.get(f"/api/v1/campaigns/{campaign}/held", headers=ANNA)
    assert refused.status == 403

    petr = held["held"][0]["id"]
    answer = await client.post(
        f"/api/v1/campaigns/{campaign}/held", headers=HEAD, json={"resend": True, "ids": [petr]}
    )
    assert (await answer.json()) == {"settled": [petr]}
    assert (await hub.campaigns.status(campaign))["campaign"]["state"] == "running"
    await hub.campaign_sender.drain()
    assert [m.address for m in gateway.sent] == ["+79161234567"]
    status = await hub.campaigns.status(campaign)
    assert status["states"] == {"sent": 1, "review": 1}
    assert status["campaign"]["state"] == "finished"

    answer = await client.post(
        f"/api/v1/campaigns/{campaign}/held", headers=HEAD, json={"resend": False}
    )
    assert len((await answer.json())["settled"]) == 1
    assert (await hub.campaigns.status(campaign))["states"] == {"sent": 2}
    assert len(gateway.sent) == 1  # taken as sent: nobody gets it twice
    async with hub.store.read() as conn:
        events = (
            (
                await conn.execute(
                    select(DomainEvent.payload).where(DomainEvent.type == "campaign.held_settled")
                )
            )
            .scalars()
            .all()
        )
    assert [(e["messages"], e["resend"]) for e in events] == [(1, True), (1, False)]


async def test_settling_asks_for_a_decision_and_names_nothing_that_is_not_held(
    aiohttp_client, sqlite_url, gateway
):
    hub = make_hub(campaign_settings(sqlite_url), {"testgateway": GatewayPlugin})
    client = await aiohttp_client(build_app(hub))
    campaign = await held_campaign(hub, gateway)
    bad = await client.post(f"/api/v1/campaigns/{campaign}/held", headers=HEAD, json={})
    assert bad.status == 422
    other = await client.post(
        f"/api/v1/campaigns/{campaign}/held", headers=HEAD, json={"resend": True, "ids": [999]}
    )
    assert (await other.json()) == {"settled": []}
    assert (await hub.campaigns.status(campaign))["states"] == {"review": 2}
