"""GET /telephony/route: the owner's extension for a known client, else the default route,
and always within the deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from hub.app import build_app
from plugins.telephony import Telephony
from plugins.telephony.routing import Owner
from tests.conftest import make_hub
from tests.plugins.telephony.conftest import (
    PBX,
    ROUTE_TOKEN,
    Phones,
    start_phones,
    telephony_settings,
)


async def test_a_known_client_is_routed_to_their_owners_extension(phones: Phones):
    await phones.add_client("Иван Петров", "8 (912) 345-67-89")
    answer = await phones.route("+79123456789")
    assert answer["extension"] == "101"
    assert answer["owner"] == "anna@example.com"
    assert answer["known"] is True


async def test_an_unknown_number_gets_the_default_route(phones: Phones):
    answer = await phones.route("+7 912 000-00-00")
    assert answer == {
        "extension": "0",
        "owner": None,
        "known": False,
        "route": "default",
        "reason": "unknown",
    }


async def test_a_client_whose_owner_has_no_extension_gets_the_default_route(phones: Phones):
    await phones.add_client("Клиент Дмитрия", "+7 912 345-67-89", owner="dmitry@example.com")
    answer = await phones.route("89123456789")
    assert (answer["extension"], answer["known"], answer["reason"]) == ("0", True, "no_extension")
    assert answer["owner"] == "dmitry@example.com"


async def test_a_withheld_or_malformed_number_gets_the_default_route_not_an_error(phones: Phones):
    for raw in ("", "anonymous", "101"):
        answer = await phones.route(raw)
        assert (answer["extension"], answer["reason"]) == ("0", "no_number"), raw


async def test_the_default_route_is_answered_when_the_lookup_exceeds_the_deadline(
    phones: Phones, monkeypatch: pytest.MonkeyPatch
):
    await phones.add_client("Иван Петров", "8 (912) 345-67-89")
    released = asyncio.Event()

    async def slow_lookup(e164: str) -> Owner | None:
        await released.wait()  # a store that does not answer
        return Owner("anna@example.com", "101")

    monkeypatch.setattr(phones.plugin.router, "lookup", slow_lookup)
    started = time.monotonic()
    answer = await phones.route("+79123456789")
    took = time.monotonic() - started
    assert (answer["extension"], answer["reason"]) == ("0", "deadline")
    assert 0.3 <= took < 1.0  # the configured 300 ms, then at once
    assert len(phones.plugin.router.late) == 1  # left to finish, not cancelled
    released.set()
    await asyncio.sleep(0.05)
    assert not phones.plugin.router.late


async def test_a_failing_store_gets_the_default_route(
    phones: Phones, monkeypatch: pytest.MonkeyPatch
):
    async def broken(e164: str) -> Owner | None:
        raise ConnectionError("the store is gone")

    monkeypatch.setattr(phones.plugin.router, "lookup", broken)
    answer = await phones.route("+79123456789")
    assert (answer["extension"], answer["reason"]) == ("0", "unavailable")


async def test_a_store_that_does_not_answer_still_routes_within_the_deadline(phones: Phones):
    """A real stuck store: PostgreSQL with the contact points locked by another transaction,
    SQLite with every reader connection taken, the card's one-hop ones too (the lookup
    waits for one)."""
    await phones.add_client("Иван Петров", "8 (912) 345-67-89")
    store = phones.hub.store
    async with contextlib.AsyncExitStack() as held:
        if store.is_sqlite:
            pool: Any = store.reader.pool
            for _ in range(pool.size() + pool._max_overflow):
                await held.enter_async_context(store.reader.connect())
            # and the caller card's own readers (plugins/telephony/one_hop.py): the loop's,
            # and the worker threads' the lookup then waits for
            one_hop = phones.plugin.one_hop
            assert one_hop is not None
            for conns in (one_hop.loop_conns, one_hop.thread_conns):
                while not conns.empty():
                    held.callback(conns.put, conns.get_nowait())
        else:
            conn = await held.enter_async_context(store.write())
            await conn.exec_driver_sql("LOCK TABLE contact_points IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        answer = await phones.route("+79123456789")
        took = time.monotonic() - started
    assert (answer["extension"], answer["reason"]) == ("0", "deadline")
    assert took < 0.6
    await asyncio.sleep(0.1)  # the late lookup got its answer once the store was free
    assert not phones.plugin.router.late
    assert (await phones.route("+79123456789"))["extension"] == "101"


async def test_the_route_needs_the_shared_token_in_a_header_or_the_query(phones: Phones):
    url = "/telephony/route?phone=%2B79123456789"
    assert (await phones.client.get(url)).status == 401
    assert (await phones.client.get(url, headers={"X-Hub-Token": "wrong"})).status == 401
    assert (await phones.client.get(url, headers=PBX)).status == 200
    assert (await phones.client.get(f"{url}&token={ROUTE_TOKEN}")).status == 200


async def test_the_route_answers_the_extension_alone_as_text_for_a_dialplan(phones: Phones):
    await phones.add_client("Иван Петров", "8 (912) 345-67-89")
    response = await phones.client.get(
        "/telephony/route", params={"phone": "89123456789", "format": "text"}, headers=PBX
    )
    assert (response.content_type, await response.text()) == ("text/plain", "101")


async def test_without_a_route_token_the_route_is_not_served(
    aiohttp_client: Callable[..., Any], sqlite_url: str
):
    settings = telephony_settings(sqlite_url, route_token=None)
    client = await aiohttp_client(build_app(make_hub(settings, extra={"telephony": Telephony})))
    await start_phones(client)
    response = await client.get("/telephony/route?phone=%2B79123456789")
    assert response.status == 404
