"""Quiet hours are kept in the recipient's own time: a Russian mobile number names no
region, so the contact's city says where they are, in any usual spelling."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from hub.campaigns.sender import RecipientClock
from hub.campaigns.zones import DATA, zone_of_city
from hub.deals import SYSTEM
from hub.store.models import CampaignMessage
from hub.store.types import utcnow
from tests.campaigns.conftest import contact, started_hub

MOSCOW = ZoneInfo("Europe/Moscow")
CITIES = [
    (zone, city.split("/")[0])
    for line in DATA.read_text().splitlines()
    if line and not line.startswith("#")
    for zone, cities in [line.split("\t")]
    for city in cities.split("|")
]


def test_a_city_is_found_in_cyrillic_latin_and_with_its_prefix_or_country():
    for spelling in ("Самара", "г. Самара", "САМАРА, Россия", "Samara", "город Самара"):
        assert zone_of_city(spelling) == ZoneInfo("Europe/Samara"), spelling
    assert zone_of_city("Yekaterinburg") == zone_of_city("Екатеринбург")
    assert zone_of_city("Орел") == zone_of_city("Орёл") == MOSCOW
    assert zone_of_city("Неизвестный посёлок") is None
    assert zone_of_city(None) is None


@given(st.sampled_from(CITIES), st.sampled_from(["", "г. ", "город "]), st.booleans())
def test_every_city_of_the_table_is_found_whatever_its_case_and_prefix(entry, prefix, upper):
    zone, city = entry
    assert zone_of_city(prefix + (city.upper() if upper else city)) == ZoneInfo(zone)


def test_a_landline_numbers_own_region_wins_over_the_city():
    clock = RecipientClock(MOSCOW)
    # +7 383: a Novosibirsk landline; the contact's card says Moscow.
    assert clock.zone("+73832000000", "Москва") == ZoneInfo("Asia/Novosibirsk")
    assert clock.zone("+79161234567", "Владивосток") == ZoneInfo("Asia/Vladivostok")
    assert clock.zone("+79161234567", None) == MOSCOW


async def test_a_message_waits_for_morning_in_vladivostok_while_moscow_gets_it_now(
    sqlite_url, gateway
):
    hub = await started_hub(sqlite_url)
    try:
        await contact(hub, "Пётр", phone="+79161234567", segment="Опт", city="Москва")
        await contact(hub, "Иван", phone="+79141234567", segment="Опт", city="Владивосток")
        # Quiet for the next two hours of Vladivostok's clock: Moscow is 7 hours behind.
        hour = datetime.now(ZoneInfo("Asia/Vladivostok")).hour
        quiet = f"{hour:02d}:00-{(hour + 2) % 24:02d}:00"
        campaign = await hub.campaigns.create(
            name="Цены", segment="wholesale", channel="sms", text="Цены", actor=SYSTEM,
            quiet_hours=quiet,
        )  # fmt: skip
        await hub.campaigns.start(campaign, SYSTEM)
        for _ in range(100):
            if gateway.sent:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert [m.address for m in gateway.sent] == ["+79161234567"]
        async with hub.store.read() as conn:
            held = (
                await conn.execute(select(CampaignMessage).where(CampaignMessage.state == "queued"))
            ).one()
        assert held.address == "+79141234567"
        local = held.due_at.astimezone(ZoneInfo("Asia/Vladivostok"))
        assert (local.hour, local.minute) == ((hour + 2) % 24, 0)
        assert held.due_at - utcnow() <= timedelta(hours=2)
    finally:
        await hub.stop()
