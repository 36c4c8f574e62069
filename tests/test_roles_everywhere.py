"""A manager sees only their own contacts, deals, tasks and activities, everywhere: in every
list, every card, and every list nested in another object (a company's contacts and deals, a
merged contact's deals, a deal's tasks, notes, activities and events).

The store holds anna's and dmitry's records side by side: one company shared by both,
contacts merged across owners both ways, tasks of one manager on the other's deal, notes,
activities and attachments on both. Then every GET route of the app's router (a new route is
walked without anyone adding it here) is called with anna's token for every record id and
every filter value, and every object in every answer is checked against the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import FormData
from sqlalchemy import select, update

from hub.api.common import HUB_KEY, OPENAPI_PATH
from hub.store.models import Activity, Company, Contact, Deal, InboxEvent, Note, Task, User
from tests.conftest import TEAM, wait_for

HEAD = {"Authorization": "Bearer head-token-0123456789"}
ANNA = {"Authorization": "Bearer anna-token-0123456789"}
ANNA_EMAIL, DMITRY_EMAIL = TEAM[0]["email"], TEAM[1]["email"]

# Which records a route's {id} names; a new route with an {id} must be added here, or the
# walk fails and says so.
ID_KINDS = {
    "/api/v1/deals/{id}": "deals",
    "/api/v1/contacts/{id}": "contacts",
    "/api/v1/companies/{id}": "companies",
    "/api/v1/leads/{id}": "leads",
    "/api/v1/attachments/{sha256}": "attachments",
    # Campaigns and segments are for heads and admins: a manager is refused whatever the id.
    "/api/v1/campaigns/{id}": "campaigns",
    "/api/v1/campaigns/{id}/held": "campaigns",
    "/api/v1/segments/{name}/preview": "segments",
    # Possible duplicates are reviewed by heads and admins only, like campaigns.
    "/api/v1/duplicates/{id}": "pairs",
    "/api/v1/calls/{id}/recording": "activities",
}
# What the objects in a list named so are, wherever the list is.
NESTED = {
    "deals": "deal",
    "contacts": "contact",
    "tasks": "task",
    "activities": "activity",
    "notes": "note",
    "events": "event",
    "companies": "company",
}
SHA256 = re.compile(r'"sha256":"([0-9a-f]{64})"')
# Objects inside these keys belong to the object that holds them.
OWNED_BY_HOLDER = {"phones", "emails", "stage_history", "utm", "custom", "payload", "reasons"}


@dataclass
class Truth:
    """Who owns what, read from the store (not from the API under test)."""

    anna: int = 0
    deals: dict[int, int | None] = field(default_factory=dict)  # id -> owner
    contacts: dict[int, int | None] = field(default_factory=dict)
    tasks: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)  # owner, deal
    notes: dict[int, int | None] = field(default_factory=dict)  # id -> deal
    activities: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    companies: dict[int, int | None] = field(default_factory=dict)
    leads: list[int] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    anna_company_ids: set[int] = field(default_factory=set)  # with a contact or deal of hers
    anna_attachments: set[str] = field(default_factory=set)  # files of leads on her deals

    def anna_deal(self, deal_id: int | None) -> bool:
        return deal_id is not None and self.deals.get(deal_id) == self.anna

    def anna_task(self, task_id: int) -> bool:
        owner, deal_id = self.tasks.get(task_id, (None, None))
        return owner == self.anna or self.anna_deal(deal_id)

    def anna_activity(self, activity_id: int) -> bool:
        deal_id, contact_id = self.activities.get(activity_id, (None, None))
        if deal_id is not None:
            return self.anna_deal(deal_id)
        return contact_id is not None and self.contacts.get(contact_id) == self.anna

    def anna_company(self, company_id: int) -> bool:
        return self.companies.get(company_id) == self.anna or company_id in self.anna_company_ids


async def read_truth(client: Any) -> Truth:
    hub = client.app[HUB_KEY]
    truth = Truth()
    async with hub.store.read() as conn:
        truth.anna = (
            await conn.execute(select(User.id).where(User.email == ANNA_EMAIL))
        ).scalar_one()
        truth.deals = dict((await conn.execute(select(Deal.id, Deal.owner_id))).all())
        truth.contacts = dict((await conn.execute(select(Contact.id, Contact.owner_id))).all())
        truth.tasks = {
            i: (owner, deal)
            for i, owner, deal in await conn.execute(select(Task.id, Task.owner_id, Task.deal_id))
        }
        truth.notes = dict((await conn.execute(select(Note.id, Note.deal_id))).all())
        truth.activities = {
            i: (deal, contact)
            for i, deal, contact in await conn.execute(
                select(Activity.id, Activity.deal_id, Activity.contact_id)
            )
        }
        truth.companies = dict((await conn.execute(select(Company.id, Company.owner_id))).all())
        for model in (Contact, Deal):
            rows = await conn.execute(
                select(model.company_id).where(
                    model.owner_id == truth.anna, model.company_id.is_not(None)
                )
            )
            truth.anna_company_ids |= set(rows.scalars())
        truth.leads = sorted((await conn.execute(select(InboxEvent.id))).scalars())
        payloads = (await conn.execute(select(Activity.payload))).scalars().all()
        annas = await conn.execute(
            select(Activity.payload)
            .join(Deal, Deal.id == Activity.deal_id)
            .where(Deal.owner_id == truth.anna)
        )
        own_payloads = annas.scalars().all()
    truth.attachments = sorted(set(SHA256.findall(orjson.dumps(payloads).decode())))
    truth.anna_attachments = set(SHA256.findall(orjson.dumps(own_payloads).decode()))
    return truth


def leaks(truth: Truth, kind: str, item: Any, where: str) -> list[str]:
    """Every object in ``item`` (a ``kind``) and in the lists it holds that is not anna's."""
    if not isinstance(item, dict):
        return []
    found: list[str] = []
    object_id = item.get("id")
    if kind == "deal":
        mine = item.get("owner_id") == truth.anna and truth.anna_deal(object_id)
    elif kind == "contact":
        mine = item.get("owner_id") == truth.anna and truth.contacts.get(object_id) == truth.anna
    elif kind == "task":
        mine = truth.anna_task(object_id)
    elif kind == "note":
        mine = truth.anna_deal(truth.notes.get(object_id))
    elif kind == "activity":
        mine = truth.anna_activity(object_id)
    elif kind == "company":
        mine = truth.anna_company(object_id)
    elif kind == "event":
        mine = event_is_annas(truth, item)
    elif kind == "lead":
        mine = truth.anna_deal((item.get("result") or {}).get("deal_id"))
    else:
        mine = True  # a page: checked by what it holds
    if not mine:
        found.append(f"{where}: {kind} {object_id} is not anna's: {item}")
    for key, value in item.items():
        if key in OWNED_BY_HOLDER:
            continue
        if isinstance(value, list):
            nested = NESTED.get(key)
            assert nested is not None or not any(isinstance(v, dict) for v in value), (
                f"{where}: a new list of objects {key!r}: tell this test what they are"
            )
            for element in value:
                found += leaks(truth, nested or "", element, f"{where} .{key}")
    return found


def event_is_annas(truth: Truth, event: dict[str, Any]) -> bool:
    subject, subject_id = event.get("subject"), event.get("subject_id")
    if subject == "deal":
        return truth.anna_deal(subject_id)
    if subject == "task":
        return truth.anna_task(subject_id)
    if subject == "note":
        return truth.anna_deal(truth.notes.get(subject_id))
    if subject == "activity":
        return truth.anna_activity(subject_id)
    if subject == "contact":
        return truth.contacts.get(subject_id) == truth.anna
    return False  # leads, merges, review pairs: not for a manager's eyes


def kind_of_answer(path: str) -> str:
    """What the top-level object of a route's answer is."""
    parts = [p for p in path.split("/") if p]
    resource = parts[2] if len(parts) > 2 else ""
    single = {"deals": "deal", "contacts": "contact", "companies": "company", "tasks": "task"}
    if len(parts) == 4:
        return single.get(resource) or ("lead" if resource == "leads" else "")
    return ""  # a list: its "items" are named by the route


async def get_all(client: Any, url: str, headers: dict[str, str]) -> list[tuple[str, Any, int]]:
    """The answer at ``url`` and, for a list, every page after it."""
    answers = []
    while url:
        response = await client.get(url, headers=headers)
        data = await response.json() if response.content_type.endswith("json") else None
        answers.append((url, data, response.status))
        url = data.get("next") if response.status == 200 and isinstance(data, dict) else None
    return answers


# -- the store ------------------------------------------------------------------------------


async def post_lead(client: Any, **fields: str) -> int:
    form = FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("brief", f"ТЗ {fields['fio']}".encode(), filename="brief.txt")
    response = await client.post("/forms/contact", data=form)
    assert response.status == 202, await response.text()
    lead_id = (await response.json())["lead_id"]

    async def done() -> bool:
        answer = await (await client.get(f"/api/v1/leads/{lead_id}", headers=HEAD)).json()
        return answer["status"] == "done"

    await wait_for(done)
    return lead_id


async def call(client: Any, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    response = await client.request(method, path, json=body, headers=HEAD)
    assert response.status == expect, (path, await response.text())
    return await response.json()


async def deal_for(client: Any, owner: str, name: str, phone: str) -> dict[str, Any]:
    body = {"title": f"Сделка {name}", "owner": owner, "contact": {"name": name, "phones": [phone]}}
    return await call(client, "POST", "/api/v1/deals", body, 201)


async def two_managers(client: Any) -> None:
    """anna's and dmitry's records, tangled every way the store allows."""
    company = "ООО «Ромашка»"
    for i in range(4):  # round-robin: both managers get contacts and deals of one company
        await post_lead(client, fio=f"Сотрудник {i}", tel=f"+7 912 400-00-0{i}", company=company)
    deals = (await call(client, "GET", "/api/v1/deals"))["items"]
    owners = {d["owner"] for d in deals}
    assert owners == {ANNA_EMAIL, DMITRY_EMAIL}, owners
    assert len({d["company_id"] for d in deals}) == 1  # one company shared by both
    anna_deal = next(d for d in deals if d["owner"] == ANNA_EMAIL)
    dmitry_deal = next(d for d in deals if d["owner"] == DMITRY_EMAIL)

    # Merged contacts, both ways: dmitry's contact into anna's, anna's into dmitry's.
    merged_into_anna = await deal_for(client, DMITRY_EMAIL, "Дмитриев клиент", "+79125550001")
    await call(
        client,
        "POST",
        f"/api/v1/contacts/{anna_deal['contact_id']}/merge",
        {"other_id": merged_into_anna["contact_id"]},
        201,
    )
    merged_into_dmitry = await deal_for(client, ANNA_EMAIL, "Аннин клиент", "+79125550002")
    await call(
        client,
        "POST",
        f"/api/v1/contacts/{dmitry_deal['contact_id']}/merge",
        {"other_id": merged_into_dmitry["contact_id"]},
        201,
    )
    # Work of one manager on the other's deal or contact; notes and calls on both.
    for deal, owner in [(anna_deal, DMITRY_EMAIL), (dmitry_deal, ANNA_EMAIL)]:
        await call(
            client,
            "POST",
            "/api/v1/tasks",
            {
                "deal_id": deal["id"],
                "title": "Чужая задача",
                "due_at": "2030-01-01",
                "owner": owner,
            },
            201,
        )
        await call(
            client,
            "POST",
            "/api/v1/tasks",
            {"contact_id": deal["contact_id"], "title": "По контакту", "due_at": "2030-01-02"},
            201,
        )
        await call(client, "POST", f"/api/v1/deals/{deal['id']}/notes", {"text": "Заметка"}, 201)
        await call(
            client,
            "POST",
            f"/api/v1/deals/{deal['id']}/activities",
            {"kind": "call", "summary": "Звонок"},
            201,
        )
    # A deal that changed hands from anna to dmitry, and one closed.
    given = await deal_for(client, ANNA_EMAIL, "Переданный", "+79125550003")
    await call(client, "PATCH", f"/api/v1/deals/{given['id']}", {"owner": DMITRY_EMAIL})
    await call(client, "POST", f"/api/v1/deals/{dmitry_deal['id']}/won", {})


# -- the walk -------------------------------------------------------------------------------


def get_routes(app: Any) -> list[str]:
    return sorted(
        {
            route.resource.canonical
            for route in app.router.routes()
            if route.method == "GET"
            and route.resource is not None
            and route.resource.canonical.startswith("/api/")
            and route.resource.canonical != OPENAPI_PATH  # the API's description, no records
        }
    )


async def urls_of(client: Any, truth: Truth, route: str) -> list[str]:
    """Every URL of ``route``: one per record id for a card; for a list, plain and with every
    filter the OpenAPI document names, each given every value a record has."""
    if "{" in route:
        kind = ID_KINDS.get(route)
        assert kind is not None, f"{route}: a new route; tell this test what its id names"
        ids: list[Any] = {
            "deals": sorted(truth.deals),
            "contacts": sorted(truth.contacts),
            "companies": sorted(truth.companies),
            "leads": truth.leads,
            "attachments": truth.attachments,
            "campaigns": [1, 2],
            "segments": ["wholesale", "nobody"],
            "pairs": [1, 2],
            "activities": sorted(truth.activities),
        }[kind]
        assert ids, f"{route}: the store has no {kind} to ask for"
        name = re.search(r"\{(\w+)\}", route).group(1)  # type: ignore[union-attr]
        return [route.replace(f"{{{name}}}", str(i)) for i in ids]
    spec = await (await client.get("/api/v1/openapi.json")).json()
    params = [p["name"] for p in spec["paths"].get(route, {}).get("get", {}).get("parameters", [])]
    values: dict[str, list[str]] = {
        "contact_id": [str(i) for i in truth.contacts],
        "deal_id": [str(i) for i in truth.deals],
        "owner": [ANNA_EMAIL, DMITRY_EMAIL],
        "status": ["open", "won", "lost"],
        "open": ["true"],
        "overdue": ["true"],
        "q": ["Сотрудник", "Ромашка", "клиент", "+79125550001", "8 912 400 00 01"],
        "limit": ["1"],  # walks every page
    }
    urls = [route]
    for param in params:
        urls += [f"{route}?{param}={v}" for v in values.get(param, [])]
    return urls


async def walk(client: Any, truth: Truth, headers: dict[str, str]) -> tuple[list[str], int]:
    found: list[str] = []
    seen = 0
    for route in get_routes(client.app):
        for url in await urls_of(client, truth, route):
            for page_url, data, status in await get_all(client, url, headers):
                assert status < 500, (page_url, data)
                if route == "/api/v1/attachments/{sha256}":
                    sha = page_url.rsplit("/", 1)[1]
                    if (status == 200) != (sha in truth.anna_attachments):
                        found.append(
                            f"{page_url}: {status}, anna's file: {sha in truth.anna_attachments}"
                        )
                    continue
                if status != 200 or not isinstance(data, dict):
                    continue
                seen += 1
                if "items" in data:
                    kind = NESTED.get(route.rsplit("/", 1)[-1], "")
                    for item in data["items"]:
                        found += leaks(truth, kind, item, page_url)
                else:
                    found += leaks(truth, kind_of_answer(route), data, page_url)
    return found, seen


async def test_a_manager_sees_only_their_own_records_on_every_get_route(hub_client):
    await two_managers(hub_client)
    truth = await read_truth(hub_client)
    assert truth.attachments, "the leads' files should be stored"
    found, seen = await walk(hub_client, truth, ANNA)
    assert found == []
    assert seen > 20  # anna did see her own records
    # And the head of sales sees dmitry's records on the same walk: the check can fail.
    found, _ = await walk(hub_client, truth, HEAD)
    assert any("is not anna's" in f for f in found)


async def test_write_answers_show_a_manager_only_their_own_records(hub_client):
    await two_managers(hub_client)
    truth = await read_truth(hub_client)
    mine = [i for i, owner in truth.deals.items() if owner == truth.anna]
    contacts = [i for i, owner in truth.contacts.items() if owner == truth.anna]
    tasks = [i for i, (owner, _) in truth.tasks.items() if owner == truth.anna]
    deal_id = mine[0]
    found: list[str] = []
    for method, path, body, kind in [
        ("post", f"/api/v1/deals/{deal_id}/stage", {"stage": "proposal"}, "deal"),
        ("patch", f"/api/v1/deals/{deal_id}", {"amount": "1000"}, "deal"),
        ("post", f"/api/v1/deals/{deal_id}/lost", {"reason": "Дорого"}, "deal"),
        ("post", f"/api/v1/deals/{deal_id}/reopen", {}, "deal"),
        ("patch", f"/api/v1/contacts/{contacts[0]}", {"city": "Пермь"}, "contact"),
        ("post", f"/api/v1/tasks/{tasks[0]}/complete", {"result": "готово"}, "task"),
        (
            "post",
            "/api/v1/tasks",
            {"deal_id": deal_id, "title": "Ещё", "due_at": "2030-02-01"},
            "task",
        ),
    ]:
        response = await hub_client.request(method, path, json=body, headers=ANNA)
        assert response.status in (200, 201), (path, await response.text())
        truth = await read_truth(hub_client)
        found += leaks(truth, kind, await response.json(), f"{method.upper()} {path}")
    assert found == []


async def test_a_manager_token_whose_user_is_deactivated_answers_401_everywhere(hub_client):
    await two_managers(hub_client)
    truth = await read_truth(hub_client)
    hub = hub_client.app[HUB_KEY]

    async def set_active(active: bool) -> None:
        async with hub.store.write() as conn:
            await conn.execute(update(User).where(User.email == ANNA_EMAIL).values(active=active))

    await set_active(False)
    for route in get_routes(hub_client.app):
        for url in (await urls_of(hub_client, truth, route))[:3]:
            response = await hub_client.get(url, headers=ANNA)
            assert response.status == 401, (url, await response.text())
    refused = await hub_client.post(
        "/api/v1/tasks",
        json={"deal_id": 1, "title": "x", "due_at": "2030-01-01"},
        headers=ANNA,
    )
    assert refused.status == 401
    await set_active(True)
    assert (await hub_client.get("/api/v1/deals", headers=ANNA)).status == 200
