"""The caller card read on the driver with prepared statements (on SQLite on the loop, on
PostgreSQL on the card's own pool) is the card SQLAlchemy's async reader gives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.store.types import utcnow
from plugins.telephony.card import _contacts, number_params
from plugins.telephony.one_hop import Suspended, run_to_end
from plugins.telephony.prepared import Prepared
from plugins.telephony.routing import find_owner


async def test_the_prepared_card_is_the_async_readers_card_for_every_viewer(phones):
    contact = await phones.add_client("Пётр Волков", "8 (912) 345-67-89", company="ООО «Трубы»")
    deal = await phones.add_deal(contact, "Поставка труб", amount="125000")
    await phones.add_task(deal, "Позвонить", timedelta(hours=2))
    await phones.add_activity(contact, "Звонок", utcnow() - timedelta(days=1), deal_id=deal)
    plugin, catalog, now = phones.plugin, phones.hub.catalog, utcnow()
    anna, dmitry = phones.user("anna@example.com"), phones.user("dmitry@example.com")

    for number in ("+79123456789", "+79990000000", "+74951234567;ext=12"):
        for viewer in (None, anna, dmitry):
            async with phones.hub.view.read() as reader:
                expected = await plugin.cards.card(
                    reader, number, viewer=viewer, catalog=catalog, now=now
                )
            got = await plugin.reads.read(
                lambda r, n=number, v=viewer: plugin.cards.card(
                    r, n, viewer=v, catalog=catalog, now=now
                )
            )
            assert got == expected
        async with phones.hub.view.read() as reader:
            owner = await find_owner(reader, number)
        assert await plugin.reads.read(lambda r, n=number: find_owner(r, n)) == owner


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(), max_size=5))
def test_a_coroutine_that_never_waits_runs_to_its_end_in_one_step(values):
    async def total() -> int:
        out = 0
        for value in values:
            out += await _now(value)
        return out

    assert run_to_end(total()) == sum(values)


def test_a_coroutine_that_waits_is_refused_rather_than_half_run():
    import asyncio

    async def waits() -> None:
        await asyncio.sleep(0)

    with pytest.raises(Suspended):
        run_to_end(waits())


async def _now(value: int) -> int:
    return value


async def test_a_card_is_read_on_the_loop_and_in_a_worker_thread_when_its_reader_is_taken(
    phones,
):
    one_hop = phones.plugin.one_hop
    if one_hop is None:
        pytest.skip("the loop's own reader is SQLite's")
    await phones.add_client("Пётр Волков", "8 (912) 345-67-89")
    inline, hopped = one_hop.inline, one_hop.hopped
    assert (await phones.card("+79123456789"))["contact"]["name"] == "Пётр Волков"
    assert (one_hop.inline, one_hop.hopped) == (inline + 1, hopped)
    taken = one_hop.loop_conns.get_nowait()  # a lookup holding it
    try:
        assert (await phones.card("+79123456789"))["contact"]["name"] == "Пётр Волков"
    finally:
        one_hop.loop_conns.put(taken)
    assert (one_hop.inline, one_hop.hopped) == (inline + 1, hopped + 1)


def test_on_postgresql_the_constants_are_in_the_text_and_the_callers_number_a_parameter():
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    prepared = Prepared(_contacts(limited=False), dialect())
    assert "deals.status = 'open'" in prepared.sql
    assert "LIMIT 6" in prepared.sql
    assert "+7912" not in prepared.sql
    assert prepared.arguments(number_params("+79123456789")) == [
        "+79123456789",
        "+79123456789;",
        "+79123456789<",
    ]
