"""Working a deal through the API: stages, calls, tasks, closing; roles and retries hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from hub.api.common import HUB_KEY
from hub.store.models import Deal, DomainEvent, Task
from tests.test_api import ANNA, HEAD, post_leads

DMITRY_DEAL = "dmitry@example.com"


async def _deals(client: Any) -> list[dict[str, Any]]:
    page = await (await client.get("/api/v1/deals", headers=HEAD)).json()
    return page["items"]


async def _count(client: Any, model: Any) -> int:
    hub = client.app[HUB_KEY]
    async with hub.store.read() as conn:
        return (await conn.execute(select(func.count()).select_from(model))).scalar_one()


async def test_a_manager_works_a_form_lead_from_first_call_to_a_lost_deal(hub_client):
    await post_leads(hub_client, 1)
    (deal,) = await _deals(hub_client)
    deal_id = deal["id"]
    as_owner = HEAD if deal["owner"] != "anna@example.com" else ANNA

    moved = await hub_client.post(
        f"/api/v1/deals/{deal_id}/stage", json={"stage": "proposal"}, headers=as_owner
    )
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["stage"] == "proposal"
    called = await hub_client.post(
        f"/api/v1/deals/{deal_id}/activities",
        json={"kind": "call", "summary": "Обсудили КП", "result": "ждёт договор"},
        headers=as_owner,
    )
    assert called.status == 201
    assert (await called.json())["occurred_at"] is not None  # logged now, when not said
    contract = await hub_client.post(
        f"/api/v1/deals/{deal_id}/stage", json={"stage": "contract"}, headers=as_owner
    )
    assert contract.status == 200
    task_id = (await contract.json())["tasks"][0]["id"]
    done = await hub_client.post(
        f"/api/v1/tasks/{task_id}/complete", json={"result": "дозвонились"}, headers=as_owner
    )
    assert done.status == 200
    assert (await done.json())["result"] == "дозвонились"
    lost = await hub_client.post(
        f"/api/v1/deals/{deal_id}/lost",
        json={"reason": "Дорого", "competitor": "ООО «Конкурент»"},
        headers=as_owner,
    )
    assert lost.status == 200
    card = await lost.json()
    assert card["status"] == "lost"
    assert (card["loss_reason"], card["competitor"]) == ("Дорого", "ООО «Конкурент»")
    assert [(s["from"], s["stage"]) for s in card["stage_history"]] == [
        (None, "new"),
        ("new", "proposal"),
        ("proposal", "contract"),
        ("contract", "lost"),
    ]
    assert [a["kind"] for a in card["activities"]] == ["form", "call"]
    assert card["activities"][1]["payload"]["result"] == "ждёт договор"
    types = [e["type"] for e in card["events"]]
    assert types == [
        "deal.created",
        "task.created",
        "activity.logged",
        "deal.stage_changed",
        "activity.logged",
        "deal.stage_changed",
        "task.completed",
        "deal.lost",
    ]
    ids = [e["id"] for e in card["events"]]
    assert ids == sorted(ids)
    assert card["events"][-1]["payload"]["actor"]["kind"] == "token"


async def test_a_manager_moving_another_managers_deal_gets_404_and_nothing_changes(hub_client):
    await post_leads(hub_client, 2)  # round-robin: one for anna, one for dmitry
    theirs = next(d for d in await _deals(hub_client) if d["owner"] != "anna@example.com")
    before = await _count(hub_client, DomainEvent)
    for method, path, body in [
        ("post", f"/api/v1/deals/{theirs['id']}/stage", {"stage": "proposal"}),
        ("post", f"/api/v1/deals/{theirs['id']}/lost", {"reason": "Дорого"}),
        ("patch", f"/api/v1/deals/{theirs['id']}", {"amount": "1000"}),
        ("post", f"/api/v1/deals/{theirs['id']}/notes", {"text": "чужая"}),
        ("post", "/api/v1/tasks", {"deal_id": theirs["id"], "title": "x", "due_at": "2030-01-01"}),
        ("patch", f"/api/v1/contacts/{theirs['contact_id']}", {"city": "Казань"}),
    ]:
        response = await hub_client.request(method, path, json=body, headers=ANNA)
        assert response.status == 404, (path, await response.text())
        assert response.content_type == "application/problem+json"
    after = (await hub_client.get(f"/api/v1/deals/{theirs['id']}", headers=HEAD)).json
    card = await after()
    assert card["stage"] == "new" and card["status"] == "open"
    assert card["amount"] is None and card["notes"] == []
    assert await _count(hub_client, DomainEvent) == before


async def test_the_same_idempotency_key_twice_makes_one_change_and_another_body_is_refused(
    hub_client,
):
    await post_leads(hub_client, 1)
    (deal,) = await _deals(hub_client)
    key = {"Idempotency-Key": "note-7f3a", **HEAD}
    first = await hub_client.post(
        f"/api/v1/deals/{deal['id']}/notes", json={"text": "Перезвонить в пятницу"}, headers=key
    )
    again = await hub_client.post(
        f"/api/v1/deals/{deal['id']}/notes", json={"text": "Перезвонить в пятницу"}, headers=key
    )
    assert first.status == again.status == 201
    assert await first.json() == await again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = await hub_client.post(
        f"/api/v1/deals/{deal['id']}/notes", json={"text": "Другое"}, headers=key
    )
    assert other.status == 422
    card = await (await hub_client.get(f"/api/v1/deals/{deal['id']}", headers=HEAD)).json()
    assert [n["text"] for n in card["notes"]] == ["Перезвонить в пятницу"]


async def test_a_bad_request_names_every_bad_field_at_once_and_changes_nothing(hub_client):
    await post_leads(hub_client, 1)
    (deal,) = await _deals(hub_client)
    response = await hub_client.post(
        "/api/v1/tasks",
        json={"deal_id": deal["id"], "title": "", "due_at": "завтра", "colour": "red"},
        headers=HEAD,
    )
    assert response.status == 422
    problem = await response.json()
    assert {r["field"] for r in problem["reasons"]} == {"title", "due_at", "colour"}
    assert await _count(hub_client, Task) == 1  # the lead's own first task only


async def test_a_closed_deal_cannot_move_and_the_answer_says_why(hub_client):
    await post_leads(hub_client, 1)
    (deal,) = await _deals(hub_client)
    won = await hub_client.post(
        f"/api/v1/deals/{deal['id']}/won", json={"amount": "150000.00"}, headers=HEAD
    )
    assert (await won.json())["amount"] == "150000.00"
    refused = await hub_client.post(
        f"/api/v1/deals/{deal['id']}/stage", json={"stage": "proposal"}, headers=HEAD
    )
    assert refused.status == 422
    assert "reopen it first" in (await refused.json())["detail"]
    reopened = await hub_client.post(f"/api/v1/deals/{deal['id']}/reopen", json={}, headers=HEAD)
    assert (await reopened.json())["status"] == "open"
    card = await reopened.json()
    assert [e["type"] for e in card["events"]][-2:] == ["deal.won", "deal.reopened"]


async def test_a_deal_entered_by_hand_for_a_new_client_gets_a_normalized_contact(hub_client):
    created = await hub_client.post(
        "/api/v1/deals",
        json={
            "title": "Поставка плитки",
            "contact": {"name": "Ирина Волкова", "phones": ["8 (912) 555-01-02"]},
            "amount": "99000",
            "source": "Звонок",
        },
        headers=ANNA,
    )
    assert created.status == 201, await created.text()
    card = await created.json()
    assert card["owner"] == "anna@example.com" and card["stage"] == "new"
    contact = await (
        await hub_client.get(f"/api/v1/contacts/{card['contact_id']}", headers=ANNA)
    ).json()
    assert contact["phones"] == [{"value": "8 (912) 555-01-02", "normalized": "+79125550102"}]
    same_phone = await hub_client.post(
        "/api/v1/deals",
        json={"title": "Ещё", "contact": {"phones": ["+7 912 555 01 02"]}},
        headers=HEAD,
    )
    assert same_phone.status == 409
    assert f"belongs to contact {card['contact_id']}" in (await same_phone.json())["detail"]


async def test_a_contacts_phones_are_replaced_and_a_phone_of_another_contact_is_a_conflict(
    hub_client,
):
    await post_leads(hub_client, 2)
    one, two = sorted(await _deals(hub_client), key=lambda d: d["id"])
    first = await (
        await hub_client.get(f"/api/v1/contacts/{one['contact_id']}", headers=HEAD)
    ).json()
    second = await (
        await hub_client.get(f"/api/v1/contacts/{two['contact_id']}", headers=HEAD)
    ).json()
    taken = second["phones"][0]["value"]
    conflict = await hub_client.patch(
        f"/api/v1/contacts/{one['contact_id']}", json={"phones": [taken]}, headers=HEAD
    )
    assert conflict.status == 409
    assert f"contact {two['contact_id']}" in (await conflict.json())["detail"]
    changed = await hub_client.patch(
        f"/api/v1/contacts/{one['contact_id']}",
        json={"phones": ["+7 912 111-22-33"], "emails": ["Client@Example.com"], "city": "Пермь"},
        headers=HEAD,
    )
    assert changed.status == 200, await changed.text()
    card = await changed.json()
    assert [p["normalized"] for p in card["phones"]] == ["+79121112233"]
    assert [e["normalized"] for e in card["emails"]] == ["client@example.com"]
    assert card["city"] == "Пермь"
    assert first["phones"][0]["normalized"] not in [p["normalized"] for p in card["phones"]]


async def test_tasks_are_rescheduled_in_the_users_zone_and_only_head_reassigns(hub_client):
    await post_leads(hub_client, 1)
    (deal,) = await _deals(hub_client)
    added = await hub_client.post(
        "/api/v1/tasks",
        json={"deal_id": deal["id"], "title": "Отправить КП", "due_at": "2030-03-01T10:00"},
        headers=HEAD,
    )
    assert added.status == 201
    task = await added.json()
    assert task["due_at"] == "2030-03-01T07:00:00+00:00"  # 10:00 in Moscow
    assert task["owner_id"] == deal["owner_id"]
    moved = await hub_client.patch(
        f"/api/v1/tasks/{task['id']}",
        json={"due_at": "2030-03-02T09:30:00+03:00", "owner": "olga@example.com"},
        headers=HEAD,
    )
    assert moved.status == 200
    assert (await moved.json())["due_at"] == "2030-03-02T06:30:00+00:00"
    if deal["owner"] == "anna@example.com":
        refused = await hub_client.patch(
            f"/api/v1/tasks/{task['id']}", json={"owner": "dmitry@example.com"}, headers=ANNA
        )
        assert refused.status in (404, 422)


async def test_a_review_pair_can_be_dismissed_as_two_different_clients(hub_client):
    for name, phone in [
        ("Ольга Лебедева", "+7 916 111-22-33"),
        ("Лебедева Ольга", "+7 8172 22-33-44"),
    ]:
        await hub_client.post(
            "/forms/contact", data={"fio": name, "email": "info@romashka.ru", "tel": phone}
        )

    async def flagged() -> list[dict[str, Any]]:
        page = await (await hub_client.get("/api/v1/duplicates", headers=HEAD)).json()
        return page["items"]

    from tests.conftest import wait_for

    (pair,) = await wait_for(flagged)
    dismissed = await hub_client.post(f"/api/v1/duplicates/{pair['id']}/dismiss", headers=HEAD)
    assert dismissed.status == 200
    assert (await dismissed.json())["status"] == "dismissed"
    assert await flagged() == []
    again = await hub_client.post(f"/api/v1/duplicates/{pair['id']}/dismiss", headers=HEAD)
    assert again.status == 409


async def test_unknown_api_paths_and_out_of_range_ids_answer_problem_documents(hub_client):
    missing = await hub_client.get("/api/v1/nothing-here", headers=HEAD)
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"
    huge = await hub_client.get("/api/v1/deals/99999999999999999999", headers=HEAD)
    assert huge.status == 404
    assert (await hub_client.get("/api/v1/deals?limit=0", headers=HEAD)).status == 400
    assert (await hub_client.get("/api/v1/deals?after=1e400", headers=HEAD)).status == 400
    big = await hub_client.get("/api/v1/deals?contact_id=99999999999999999999", headers=HEAD)
    assert big.status == 400


async def test_a_deals_count_is_unchanged_by_a_refused_manual_deal(hub_client):
    refused = await hub_client.post(
        "/api/v1/deals",
        json={"title": "X", "contact": {"name": "Y"}, "pipeline": "nope"},
        headers=HEAD,
    )
    assert refused.status == 422
    assert await _count(hub_client, Deal) == 0
