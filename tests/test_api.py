"""The read-only API: no token, no data; a manager sees only their own."""

from __future__ import annotations

from tests.conftest import wait_for

HEAD = {"Authorization": "Bearer head-token-0123456789"}
ANNA = {"Authorization": "Bearer anna-token-0123456789"}


async def post_leads(client, n: int) -> list[int]:
    ids = []
    for i in range(n):
        response = await client.post(
            "/forms/contact", data={"fio": f"Клиент {i}", "tel": f"+7 912 300-00-{i:02d}"}
        )
        ids.append((await response.json())["lead_id"])

    async def processed() -> bool:
        response = await client.get(f"/api/v1/leads/{ids[-1]}", headers=HEAD)
        return (await response.json())["status"] == "done"

    await wait_for(processed)
    return ids


async def test_no_token_or_a_wrong_one_gets_401_and_no_data(hub_client):
    await post_leads(hub_client, 1)
    assert (await hub_client.get("/api/v1/deals")).status == 401
    wrong = await hub_client.get("/api/v1/deals", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert "items" not in await wrong.json()


async def test_deals_are_paginated_newest_first_with_a_next_link(hub_client):
    await post_leads(hub_client, 5)
    page = await (await hub_client.get("/api/v1/deals?limit=2", headers=HEAD)).json()
    seen = [d["id"] for d in page["items"]]
    while page["next"]:
        page = await (await hub_client.get(page["next"], headers=HEAD)).json()
        seen += [d["id"] for d in page["items"]]
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 5


async def test_a_manager_token_sees_only_that_managers_deals_and_tasks(hub_client):
    await post_leads(hub_client, 4)  # round-robin: two for anna, two for dmitry
    everyone = await (await hub_client.get("/api/v1/deals", headers=HEAD)).json()
    anna = await (await hub_client.get("/api/v1/deals", headers=ANNA)).json()
    assert len(everyone["items"]) == 4
    assert len(anna["items"]) == 2
    assert {d["owner"] for d in anna["items"]} == {"anna@example.com"}
    other = next(d for d in everyone["items"] if d["owner"] != "anna@example.com")
    assert (await hub_client.get(f"/api/v1/deals/{other['id']}", headers=ANNA)).status == 404
    tasks = await (await hub_client.get("/api/v1/tasks?open=true", headers=ANNA)).json()
    assert len(tasks["items"]) == 2


async def test_deal_detail_has_tasks_history_and_the_original_submission(hub_client):
    await post_leads(hub_client, 1)
    deal = await (await hub_client.get("/api/v1/deals/1", headers=HEAD)).json()
    assert deal["stage"] == "new"
    assert deal["tasks"][0]["title"] == "Связаться с клиентом"
    assert deal["stage_history"][0]["stage"] == "new"
    assert deal["activities"][0]["payload"]["submission"]["fio"] == "Клиент 0"


async def test_contacts_are_found_by_phone_in_any_format(hub_client):
    await post_leads(hub_client, 2)
    found = await (
        await hub_client.get("/api/v1/contacts", params={"q": "8 912 300 00 01"}, headers=HEAD)
    ).json()
    assert [c["name"] for c in found["items"]] == ["Клиент 1"]
    contact = await (
        await hub_client.get(f"/api/v1/contacts/{found['items'][0]['id']}", headers=HEAD)
    ).json()
    assert contact["phones"] == [{"value": "+7 912 300-00-01", "normalized": "+79123000001"}]
    assert len(contact["deals"]) == 1


async def test_bad_parameters_get_400_and_unknown_ids_404(hub_client):
    assert (await hub_client.get("/api/v1/deals?limit=x", headers=HEAD)).status == 400
    assert (await hub_client.get("/api/v1/deals/999", headers=HEAD)).status == 404
    assert (await hub_client.get("/api/v1/leads/abc", headers=HEAD)).status == 404


async def test_review_and_merge_through_the_api(hub_client):
    for name, phone in [
        ("Ольга Лебедева", "+7 916 111-22-33"),
        ("Лебедева Ольга", "+7 8172 22-33-44"),
    ]:
        await hub_client.post(
            "/forms/contact", data={"fio": name, "email": "info@romashka.ru", "tel": phone}
        )

    async def flagged():
        page = await (await hub_client.get("/api/v1/duplicates", headers=HEAD)).json()
        return page["items"]

    items = await wait_for(flagged)
    pair = items[0]
    assert any(r.startswith("shared email info@romashka.ru +") for r in pair["reasons"])
    assert (await hub_client.get("/api/v1/duplicates", headers=ANNA)).status == 403
    merged = await hub_client.post(
        f"/api/v1/contacts/{pair['other_id']}/merge",
        json={"other_id": pair["contact_id"]},
        headers=HEAD,
    )
    assert merged.status == 201
    merge_id = (await merged.json())["merge_id"]
    gone = await hub_client.get(f"/api/v1/contacts/{pair['contact_id']}", headers=HEAD)
    assert gone.status == 404
    undone = await hub_client.post(f"/api/v1/merges/{merge_id}/undo", headers=HEAD)
    assert undone.status == 200
    back = await hub_client.get(f"/api/v1/contacts/{pair['contact_id']}", headers=HEAD)
    assert back.status == 200
    again = await hub_client.post(f"/api/v1/merges/{merge_id}/undo", headers=HEAD)
    assert again.status == 409


async def test_the_openapi_document_describes_every_route_and_needs_no_token(
    aiohttp_client, store_url
):
    import re

    from hub.app import build_app
    from plugins.telephony import Telephony
    from tests.conftest import make_hub, make_settings

    # The channels that serve HTTP under /api/ or /forms/: the web forms and the caller card.
    settings = make_settings(store_url, plugins={"telephony": {}})
    hub_client = await aiohttp_client(build_app(make_hub(settings, {"telephony": Telephony})))
    spec = await (await hub_client.get("/api/v1/openapi.json")).json()
    served = {
        (re.sub(r"\{[^}]+\}", "{}", route.resource.canonical), route.method.lower())
        for route in hub_client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/api/", "/forms/"))
        and route.method != "HEAD"
    }
    described = {
        (re.sub(r"\{[^}]+\}", "{}", path), method)
        for path, methods in spec["paths"].items()
        for method in methods
    }
    assert served == described
    from openapi_spec_validator import validate

    validate(spec)  # a valid OpenAPI 3.1 document, usable by client generators
