"""NOTIFY_START answered with a route: a known client straight to their own manager."""

from __future__ import annotations

from hub.deals import Actor
from hub.deals.changes import CreateContact
from hub.domain.normalize import phone_point
from tests.plugins.telephony_zadarma.conftest import signed_form


def start(caller: str) -> dict[str, str]:
    return {
        "event": "NOTIFY_START",
        "call_start": "2026-12-07 10:21:05",
        "pbx_call_id": "in_route_1",
        "caller_id": caller,
        "called_did": "74951234567",
    }


async def test_a_known_callers_ring_is_redirected_to_the_owners_extension_with_their_name(pbx):
    anna = pbx.hub.catalog.user_ids["anna@example.com"]  # extension 101 in the test team
    contact = CreateContact(
        name="Пётр Волков", owner_id=anna, points=[phone_point("+79123456789", "RU")]
    )
    await pbx.hub.deals.apply([contact], Actor.plugin("tests"))

    response = await pbx.post(*signed_form(start("79123456789")))

    assert response.status == 200
    assert await response.json() == {"redirect": "101", "caller_name": "Пётр Волков"}
    assert len(await pbx.calls()) == 1  # stored as ringing all the same


async def test_an_unknown_callers_ring_leaves_the_pbx_scenario_as_it_is(pbx):
    response = await pbx.post(*signed_form(start("79990001122")))

    assert response.status == 200
    assert await response.read() == b""


async def test_a_client_whose_owner_has_no_extension_goes_the_pbx_way(pbx):
    dmitry = pbx.hub.catalog.user_ids["dmitry@example.com"]  # no extension
    contact = CreateContact(
        name="Ирина", owner_id=dmitry, points=[phone_point("+79125550000", "RU")]
    )
    await pbx.hub.deals.apply([contact], Actor.plugin("tests"))

    response = await pbx.post(*signed_form(start("79125550000")))

    assert await response.read() == b""
