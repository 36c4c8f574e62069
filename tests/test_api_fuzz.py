"""Schemathesis over the OpenAPI document the hub serves: every operation, as a head of sales
and as a manager, answers no 5xx, and the store is consistent afterwards.

The hub runs for real on a loopback port (its own event loop in a thread), seeded with leads
through the web form and with deals, tasks, notes, a review pair and a merge through the
API, so generated requests often name records that exist. In ``make test`` each store gets
one bounded round (about 10 s); ``make fuzz`` sets ``FUZZ_SECONDS`` (per store) and prints
the counts: requests, statuses per operation and token, 5xx answers with a curl to replay.

Negative cases leave out or break required parts of a request; those that drop the
Authorization header are counted under the token they were meant for, and answer 401.

Knobs (environment): ``FUZZ_SECONDS`` keep starting new rounds until this many seconds
passed (default 0: one round); ``FUZZ_EXAMPLES`` examples per operation, token and
generation mode in a round (default 4); ``FUZZ_SEED`` the first round's seed (default
fixed in the suite, random when ``FUZZ_SECONDS`` is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy import select

from hub.api.common import HUB_KEY
from hub.app import build_app
from hub.store import Store
from hub.store.models import Contact, ContactPoint, DomainEvent
from tests.conftest import TEAM, make_hub, make_settings, wait_for

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "0"))
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED") or (random.randrange(2**32) if FUZZ_SECONDS else 1))

TOKENS = {"head": "head-token-0123456789", "manager": "anna-token-0123456789"}
HEAD = {"Authorization": f"Bearer {TOKENS['head']}"}
ANNA = {"Authorization": f"Bearer {TOKENS['manager']}"}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Which records a path's {id} names, so that generated requests can hit real ones.
ID_KINDS = {
    "/api/v1/deals/": "deals",
    "/api/v1/contacts/": "contacts",
    "/api/v1/companies/": "companies",
    "/api/v1/tasks/": "tasks",
    "/api/v1/leads/": "leads",
    "/api/v1/merges/": "merges",
    "/api/v1/duplicates/": "duplicates",
}
BODY_KINDS = {"deal_id": "deals", "contact_id": "contacts"}
EMAILS = [u["email"] for u in TEAM] + ["nobody@example.com"]
STAGES = ["new", "proposal", "contract", "won", "lost"]


# (what, SQL naming the rows that break it): each must find none.
ORPHANS = [
    (
        "deal {0} names contact {1}, which does not exist",
        "SELECT d.id, d.contact_id FROM deals d LEFT JOIN contacts c ON c.id = d.contact_id "
        "WHERE d.contact_id IS NOT NULL AND c.id IS NULL",
    ),
    (
        "deal {0} names company {1}, which does not exist",
        "SELECT d.id, d.company_id FROM deals d LEFT JOIN companies c ON c.id = d.company_id "
        "WHERE d.company_id IS NOT NULL AND c.id IS NULL",
    ),
    (
        "task {0} points at deal {1}, which does not exist",
        "SELECT t.id, t.deal_id FROM tasks t LEFT JOIN deals d ON d.id = t.deal_id "
        "WHERE t.deal_id IS NOT NULL AND d.id IS NULL",
    ),
    (
        "task {0} points at contact {1}, which does not exist",
        "SELECT t.id, t.contact_id FROM tasks t LEFT JOIN contacts c ON c.id = t.contact_id "
        "WHERE t.contact_id IS NOT NULL AND c.id IS NULL",
    ),
    (
        "note {0} points at deal {1}, which does not exist",
        "SELECT n.id, n.deal_id FROM notes n LEFT JOIN deals d ON d.id = n.deal_id "
        "WHERE n.deal_id IS NOT NULL AND d.id IS NULL",
    ),
    (
        "activity {0} points at deal {1}, which does not exist",
        "SELECT a.id, a.deal_id FROM activities a LEFT JOIN deals d ON d.id = a.deal_id "
        "WHERE a.deal_id IS NOT NULL AND d.id IS NULL",
    ),
    (
        "point {0} belongs to contact {1}, which does not exist",
        "SELECT p.id, p.contact_id FROM contact_points p "
        "LEFT JOIN contacts c ON c.id = p.contact_id WHERE c.id IS NULL",
    ),
    (
        "contact {0} belongs to company {1}, which does not exist",
        "SELECT c.id, c.company_id FROM contacts c LEFT JOIN companies m ON m.id = c.company_id "
        "WHERE c.company_id IS NOT NULL AND m.id IS NULL",
    ),
    (
        "deal {0} is at stage {1}, which is not of its pipeline",
        "SELECT d.id, d.stage_id FROM deals d JOIN stages s ON s.id = d.stage_id "
        "WHERE s.pipeline_id != d.pipeline_id",
    ),
    (
        "deal {0} has status {1} at a stage of another kind",
        "SELECT d.id, d.status FROM deals d JOIN stages s ON s.id = d.stage_id "
        "WHERE d.status != s.kind",
    ),
    (
        "deal {0} has no stage history",
        "SELECT d.id, NULL FROM deals d WHERE NOT EXISTS "
        "(SELECT 1 FROM stage_history h WHERE h.deal_id = d.id)",
    ),
]


async def consistency_problems(store: Store) -> list[str]:
    """What is wrong with the store: rows pointing at nothing, deals whose status and stage
    disagree, contacts made from leads that lost every phone and email without anyone
    removing them, and on SQLite the file's own integrity and foreign key checks."""
    problems: list[str] = []
    async with store.read() as conn:
        if store.is_sqlite:
            (verdict,) = (await conn.exec_driver_sql("PRAGMA integrity_check")).one()
            if verdict != "ok":
                problems.append(f"integrity_check: {verdict}")
            for row in await conn.exec_driver_sql("PRAGMA foreign_key_check"):
                problems.append(f"foreign_key_check: {tuple(row)}")
        for what, sql in ORPHANS:
            for a, b in await conn.exec_driver_sql(sql):
                problems.append(what.format(a, b))
        events = await conn.execute(
            select(DomainEvent.type, DomainEvent.subject_id, DomainEvent.payload).where(
                DomainEvent.subject == "contact"
            )
        )
        from_leads: dict[int, set[str]] = {}  # contact -> the phones and emails it came with
        removed: set[str] = set()  # phones and emails someone took off a contact by hand
        history: dict[int, list[str]] = defaultdict(list)  # what happened to each contact
        for kind, contact_id, payload in events:
            for named in {contact_id, payload.get("other_id"), payload.get("keep_id")} - {None}:
                history[named].append(f"{kind}({contact_id}, merge {payload.get('merge_id')})")
            if kind == "contact.created" and payload["actor"]["kind"] == "lead_pipeline":
                points = {*payload.get("phones", []), *payload.get("emails", [])}
                if points:
                    from_leads[contact_id] = points
            elif kind == "contact.updated":
                removed.update(payload.get("points_removed") or [])
        # A point removed by hand is gone also from the contact it came with: removed from
        # the contact it was merged into, it stays removed when the merge is undone.
        expected = sorted(i for i, points in from_leads.items() if not points & removed)
        with_points = select(ContactPoint.contact_id)
        bare = await conn.execute(
            select(Contact.id).where(Contact.id.in_(expected), ~Contact.id.in_(with_points))
        )
        problems += [
            f"contact {i} came from a lead with points and has none: {', '.join(history[i])}"
            for i in bare.scalars()
        ]
    await store.close()
    return problems


class LiveHub:
    """The real app (``build_app(make_hub(make_settings(url)))``) on 127.0.0.1, served from
    an event loop in a thread so that the fuzzer's blocking client can call it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.base = ""

    def __enter__(self) -> LiveHub:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        deadline = time.monotonic() + 30
        while requests.get(f"{self.base}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the hub did not become ready"
            time.sleep(0.05)
        return self

    async def _start(self) -> None:
        self.runner = web.AppRunner(build_app(make_hub(make_settings(self.url))))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _wait_processed(base: str, lead_id: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        status = requests.get(f"{base}/api/v1/leads/{lead_id}", headers=HEAD, timeout=5).json()
        if status.get("status") == "done":
            return
        assert time.monotonic() < deadline, f"lead {lead_id} was not processed: {status}"
        time.sleep(0.05)


def seed_store(base: str) -> None:
    """Leads through the form (two managers by round-robin, one company, a review pair),
    then a manual deal, tasks, notes, an activity, a won deal and a merge through the API."""
    s = requests.Session()
    leads = [
        {"fio": "Иван Петров", "tel": "+7 912 300-00-01", "company": "ООО «Ромашка»"},
        {"fio": "Пётр Иванов", "tel": "+7 912 300-00-02", "company": "Romashka LLC"},
        {"fio": "Ольга Лебедева", "tel": "+7 916 111-22-33", "email": "info@romashka.ru"},
        {"fio": "Лебедева Ольга", "tel": "+7 8172 22-33-44", "email": "info@romashka.ru"},
        {"fio": "Мария Сидорова", "tel": "+7 912 300-00-05", "email": "maria@example.ru"},
        {"fio": "Анна Кузнецова", "tel": "+7 912 300-00-06"},
    ]
    last = 0
    for form in leads:
        answer = s.post(f"{base}/forms/contact", data=form, timeout=10)
        assert answer.status_code == 202, answer.text
        last = answer.json()["lead_id"]
    _wait_processed(base, last)
    made = s.post(
        f"{base}/api/v1/deals",
        json={"title": "Поставка", "contact": {"name": "Ирина", "phones": ["+79125550102"]}},
        headers=ANNA,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    deals = s.get(f"{base}/api/v1/deals", headers=HEAD, timeout=10).json()["items"]
    for deal in deals[:4]:
        path = f"{base}/api/v1/deals/{deal['id']}"
        for url, body in [
            (
                f"{base}/api/v1/tasks",
                {"deal_id": deal["id"], "title": "КП", "due_at": "2030-01-01"},
            ),
            (f"{path}/notes", {"text": "Перезвонить"}),
            (f"{path}/activities", {"kind": "call", "summary": "Созвонились"}),
        ]:
            answer = s.post(url, json=body, headers=HEAD, timeout=10)
            assert answer.status_code == 201, answer.text
    won = s.post(f"{base}/api/v1/deals/{deals[0]['id']}/won", json={}, headers=HEAD, timeout=10)
    assert won.status_code == 200, won.text
    pairs = s.get(f"{base}/api/v1/duplicates", headers=HEAD, timeout=10).json()["items"]
    if pairs:
        merged = s.post(
            f"{base}/api/v1/contacts/{pairs[0]['contact_id']}/merge",
            json={"other_id": pairs[0]["other_id"]},
            headers=HEAD,
            timeout=10,
        )
        assert merged.status_code == 201, merged.text


class Pool:
    """Ids of records that exist (or existed), refreshed between rounds."""

    def __init__(self) -> None:
        self.ids: dict[str, set[int]] = defaultdict(set)

    def refresh(self, base: str) -> None:
        s = requests.Session()
        for kind in ("deals", "contacts", "companies", "tasks", "duplicates"):
            url = f"{base}/api/v1/{kind}?limit=1000"
            if kind == "duplicates":
                url += "&status=open"
            for item in s.get(url, headers=HEAD, timeout=10).json()["items"]:
                self.ids[kind].add(item["id"])
                if item.get("contact_id"):
                    self.ids["contacts"].add(item["contact_id"])
        self.ids["leads"] |= set(range(1, 10))
        self.ids["merges"] |= set(range(1, max(self.ids["merges"] | {0}) + 3))

    def learn(self, path: str, answer: Any) -> None:
        """Ids a successful write answered: a new deal and its contact, a task, a merge."""
        if not isinstance(answer, dict):
            return
        if path in ("/api/v1/deals", "/api/v1/tasks") and isinstance(answer.get("id"), int):
            self.ids[path.rsplit("/", 1)[1]].add(answer["id"])
        for key, kind in (("contact_id", "contacts"), ("merge_id", "merges")):
            if isinstance(answer.get(key), int):
                self.ids[kind].add(answer[key])

    def some(self, kind: str) -> list[int]:
        return sorted(self.ids[kind]) or [1]


def _kind_of(path: str) -> str | None:
    return next((kind for prefix, kind in ID_KINDS.items() if path.startswith(prefix)), None)


def aimed(operation: Any, mode: GenerationMode, pool: Pool) -> st.SearchStrategy[Any]:
    """Schemathesis' cases for ``operation``, often pointed at records that exist, and often
    fitted to the rules the schema cannot say (a deal names a contact_id or a new contact,
    not both; a task names a deal or a contact), so that writes get through to the store."""
    kind = _kind_of(operation.path)
    creates = operation.method.upper() == "POST" and operation.path in (
        "/api/v1/deals",
        "/api/v1/tasks",
    )

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        case = draw(operation.as_strategy(generation_mode=mode))
        if "id" in (case.path_parameters or {}) and kind and draw(st.integers(0, 3)):
            case.path_parameters["id"] = draw(st.sampled_from(pool.some(kind)))
        if "form_id" in (case.path_parameters or {}) and draw(st.booleans()):
            case.path_parameters["form_id"] = draw(st.sampled_from(["contact", "partner"]))
        if not isinstance(case.body, dict):
            return case
        body = case.body
        if creates and draw(st.booleans()):
            named = {k for k in ("contact", "contact_id", "deal_id") if body.get(k) is not None}
            if {"contact", "contact_id"} <= named:
                del body[draw(st.sampled_from(["contact", "contact_id"]))]
            elif not named:
                body["deal_id" if "tasks" in operation.path else "contact_id"] = 1
        for name in list(body):
            if not draw(st.booleans()):
                continue
            if name in BODY_KINDS:
                body[name] = draw(st.sampled_from(pool.some(BODY_KINDS[name])))
            elif name == "other_id":
                other = "companies" if "/companies/" in operation.path else "contacts"
                body[name] = draw(st.sampled_from(pool.some(other)))
            elif name == "owner":
                body[name] = draw(st.sampled_from(EMAILS))
            elif name == "stage":
                body[name] = draw(st.sampled_from(STAGES))
            elif name == "pipeline":
                body[name] = draw(st.sampled_from(["sales", "wholesale"]))
            elif name == "amount":
                body[name] = str(draw(st.decimals(0, 10**9, places=2)))
        return case

    return build()


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[tuple[str, str, int]] = Counter()
        self.errors: Counter[str] = Counter()
        self.server_errors: list[str] = []
        self.impossible: set[str] = set()

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def by_class(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (_, _, status), n in self.statuses.items():
            out[f"{status // 100}xx"] += n
        return dict(sorted(out.items()))

    def report(self, store: str, rounds: int, seconds: float) -> str:
        lines = [
            f"fuzz {store}: {self.requests} requests in {rounds} round(s), {seconds:.0f} s, "
            f"seed {FUZZ_SEED}; statuses {self.by_class()}; transport errors "
            f"{sum(self.errors.values())}; 5xx {len(self.server_errors)}"
        ]
        per_op: dict[str, Counter[int]] = defaultdict(Counter)
        for (token, label, status), n in self.statuses.items():
            per_op[f"{label} [{token}]"][status] += n
        for label in sorted(per_op):
            lines.append(f"  {label}: {dict(sorted(per_op[label].items()))}")
        for label in sorted(self.impossible):
            lines.append(f"  no case could be generated: {label}")
        for error, n in self.errors.most_common():
            lines.append(f"  transport error x{n}: {error}")
        return "\n".join(lines)


class Fuzzer:
    """Sends schemathesis' cases to the live hub with a token, counting every answer."""

    def __init__(self, schema: Any, base: str, pool: Pool, tally: Tally) -> None:
        self.schema, self.base, self.pool, self.tally = schema, base, pool, tally
        self.session = requests.Session()

    def round(self, round_seed: int) -> None:
        for result in self.schema.get_all_operations():
            operation = result.ok()
            for token_name in TOKENS:
                for mode in MODES:
                    self.operation(operation, token_name, mode, round_seed)

    def operation(self, operation: Any, token_name: str, mode: Any, round_seed: int) -> None:
        @seed(round_seed)
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=aimed(operation, mode, self.pool))
        def send(case: Any) -> None:
            self.send(case, token_name)

        try:
            send()
        except Unsatisfiable:  # nothing invalid can be said to it (no body, a string path)
            label = f"{operation.method.upper()} {operation.path}"
            self.tally.impossible.add(f"{label} [{mode.value}]")

    def send(self, case: Any, token_name: str) -> None:
        label = f"{case.operation.method.upper()} {case.operation.path}"
        auth = {"Authorization": f"Bearer {TOKENS[token_name]}"}
        try:
            answer = case.call(base_url=self.base, session=self.session, headers=auth, timeout=30)
        except requests.ConnectionError as error:
            raise AssertionError(f"the hub stopped answering: {error}") from error
        except Exception as error:  # the client would not send what was generated
            self.tally.errors[f"{type(error).__name__}: {str(error)[:120]}"] += 1
            return
        self.tally.statuses[(token_name, label, answer.status_code)] += 1
        if answer.status_code >= 500:
            curl = case.as_curl_command(headers=auth, base_url=self.base)
            self.tally.server_errors.append(
                f"{answer.status_code} {label} [{token_name}]: {curl}\n  -> {answer.text[:300]}"
            )
        elif answer.status_code < 300:
            with contextlib.suppress(ValueError):
                self.pool.learn(case.operation.path, answer.json())


def test_every_operation_answers_without_a_server_error_and_leaves_the_store_consistent(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    tally = Tally()
    started = time.monotonic()
    rounds = 0
    with LiveHub(store_url) as live:
        seed_store(live.base)
        schema = schemathesis.openapi.from_url(f"{live.base}/api/v1/openapi.json")
        pool = Pool()
        fuzzer = Fuzzer(schema, live.base, pool, tally)
        while True:
            pool.refresh(live.base)
            fuzzer.round(FUZZ_SEED + rounds)
            rounds += 1
            if time.monotonic() - started >= FUZZ_SECONDS:
                break
        health = requests.get(f"{live.base}/readyz", timeout=10)
    elapsed = time.monotonic() - started
    report = tally.report(store, rounds, elapsed)
    if FUZZ_SECONDS:  # `make fuzz`: the counts, while the hub's own log lines stay captured
        with capsys.disabled():
            print("\n" + report)
    operations = {label for (_, label, _) in tally.statuses}
    assert len(operations) == len(list(schema.get_all_operations())), report
    assert health.status_code == 200, health.text
    assert not tally.server_errors, "\n".join([report, *tally.server_errors[:20]])
    problems = asyncio.run(consistency_problems(Store(store_url)))
    assert problems == [], f"seed {FUZZ_SEED}: the store is inconsistent"


def test_the_consistency_check_names_what_is_broken(sqlite_url: str) -> None:
    """The check itself, on a store broken behind the writer's back (foreign keys off)."""

    async def broken() -> list[str]:
        store = Store(sqlite_url)
        await store.upgrade()
        await store.close()
        with sqlite3.connect(sqlite_url.split(":///", 1)[1]) as raw:  # foreign keys off
            raw.execute(
                "INSERT INTO tasks (id, title, kind, deal_id, due_at, created_at) "
                "VALUES (1, 'x', 'call', 99, '2030-01-01', '2030-01-01')"
            )
        return await consistency_problems(Store(sqlite_url))

    problems = asyncio.run(broken())
    assert any("task 1" in p and "deal 99" in p for p in problems), problems


async def test_the_consistency_check_notices_a_lead_contact_whose_points_vanished(hub_client):
    card = await _lead(hub_client, fio="Иван Петров", tel="+79120000001")
    hub = hub_client.app[HUB_KEY]
    assert await consistency_problems(Store(hub.settings.store_url)) == []
    async with hub.store.write() as conn:  # behind the writer's back, as a bug would
        await conn.exec_driver_sql("DELETE FROM contact_points")
    problems = await consistency_problems(Store(hub.settings.store_url))
    assert [p.split(":")[0] for p in problems] == [
        f"contact {card['contact_id']} came from a lead with points and has none"
    ]


# -- what the fuzzer found, kept as regressions ---------------------------------------------


async def _lead(client: Any, **form: str) -> dict[str, Any]:
    """A lead through the form, processed; its deal's card."""
    answer = await (await client.post("/forms/contact", data=form)).json()

    async def deal() -> Any:
        lead = await (await client.get(f"/api/v1/leads/{answer['lead_id']}", headers=HEAD)).json()
        return lead["status"] == "done" and lead["result"]

    result = await wait_for(deal)
    card = await client.get(f"/api/v1/deals/{result['deal_id']}", headers=HEAD)
    return await card.json()


async def test_a_deal_or_task_naming_a_contact_that_does_not_exist_is_404_not_500(hub_client):
    missing = {"contact_id": 987654}
    deal = await hub_client.post("/api/v1/deals", json={"title": "X", **missing}, headers=HEAD)
    assert deal.status == 404, await deal.text()
    task = await hub_client.post(
        "/api/v1/tasks", json={"title": "X", "due_at": "2030-01-01", **missing}, headers=HEAD
    )
    assert task.status == 404, await task.text()


async def test_a_nul_character_in_a_body_or_a_query_is_refused_not_500(hub_client):
    deal = await hub_client.post(
        "/api/v1/deals",
        json={"title": "a\u0000b", "contact": {"name": "Y"}, "custom": {"k\u0000": 1}},
        headers=HEAD,
    )
    assert deal.status == 422, await deal.text()
    assert (await deal.json())["reasons"][0]["field"] in ("title", "custom.k\u0000")
    listed = await hub_client.get("/api/v1/deals", params={"pipeline": "a\u0000"}, headers=HEAD)
    assert listed.status == 400
    assert (await hub_client.get("/api/v1/deals", headers=HEAD)).status == 200


async def test_a_merge_is_undone_after_its_kept_contact_was_merged_away(hub_client):
    shared = "info@romashka.ru"  # a shared mailbox: two contacts and a review pair
    first = await _lead(hub_client, fio="Ольга Лебедева", tel="+7 916 111-22-33", email=shared)
    second = await _lead(hub_client, fio="Лебедева Ольга", tel="+7 8172 22-33-44", email=shared)
    keep, other = first["contact_id"], second["contact_id"]
    pairs = await (await hub_client.get("/api/v1/duplicates", headers=HEAD)).json()
    assert len(pairs["items"]) == 1  # the review pair the merge takes away and its undo restores
    # Made before the merges: on SQLite a new contact may take the id a merge freed.
    third = await hub_client.post(
        "/api/v1/deals", json={"title": "Z", "contact": {"name": "Ольга"}}, headers=HEAD
    )
    merged = await hub_client.post(
        f"/api/v1/contacts/{keep}/merge", json={"other_id": other}, headers=HEAD
    )
    merge_id = (await merged.json())["merge_id"]
    away = await hub_client.post(
        f"/api/v1/contacts/{(await third.json())['contact_id']}/merge",
        json={"other_id": keep},
        headers=HEAD,
    )
    assert away.status == 201
    undone = await hub_client.post(f"/api/v1/merges/{merge_id}/undo", headers=HEAD)
    assert undone.status == 200, await undone.text()
    back = await hub_client.get(f"/api/v1/contacts/{other}", headers=HEAD)
    assert back.status == 200
    assert [d["id"] for d in (await back.json())["deals"]] == [second["id"]]
    pairs = await (await hub_client.get("/api/v1/duplicates", headers=HEAD)).json()
    assert pairs["items"] == []  # its pair named a contact that is gone: not restored


async def test_a_merge_whose_contact_had_a_company_merged_away_since_is_refused_not_500(
    hub_client,
):
    first = await _lead(hub_client, fio="Иван Петров", tel="+79120000001", company="Альфа")
    second = await _lead(hub_client, fio="Пётр Иванов", tel="+79120000002", company="Бета")
    merged = await hub_client.post(
        f"/api/v1/contacts/{first['contact_id']}/merge",
        json={"other_id": second["contact_id"]},
        headers=HEAD,
    )
    merge_id = (await merged.json())["merge_id"]
    companies = await hub_client.post(
        f"/api/v1/companies/{first['company_id']}/merge",
        json={"other_id": second["company_id"]},
        headers=HEAD,
    )
    assert companies.status == 201, await companies.text()
    undone = await hub_client.post(f"/api/v1/merges/{merge_id}/undo", headers=HEAD)
    assert undone.status == 409, await undone.text()
    assert f"company {second['company_id']}" in (await undone.json())["detail"]


async def test_a_currency_is_three_latin_letters_so_upper_case_still_fits_its_column(hub_client):
    deal = await _lead(hub_client, fio="Иван Петров", tel="+79120000001")
    path = f"/api/v1/deals/{deal['id']}"
    refused = await hub_client.patch(path, json={"currency": "ðßx"}, headers=HEAD)  # ÐSSX
    assert refused.status == 422, await refused.text()
    assert (await refused.json())["reasons"][0]["field"] == "currency"
    changed = await hub_client.patch(path, json={"currency": "usd"}, headers=HEAD)
    assert (await changed.json())["currency"] == "USD"


async def test_undoing_merges_out_of_order_leaves_each_phone_with_the_contact_it_came_with(
    hub_client,
):
    """Contact A merged into B, B into C; A's merge undone first (A's phone comes back from
    C), then B's: B takes back only what is still where its merge left it."""
    a = await _lead(hub_client, fio="Иван Петров", tel="+79120000001")
    ids = [a["contact_id"]]
    for name, phone in [("Б", "+79120000002"), ("В", "+79120000003")]:
        made = await hub_client.post(
            "/api/v1/deals",
            json={"title": name, "contact": {"name": name, "phones": [phone]}},
            headers=HEAD,
        )
        ids.append((await made.json())["contact_id"])
    first, second, third = ids
    merges = []
    for keep, other in [(second, first), (third, second)]:
        merged = await hub_client.post(
            f"/api/v1/contacts/{keep}/merge", json={"other_id": other}, headers=HEAD
        )
        merges.append((await merged.json())["merge_id"])
    for merge_id in merges:
        undone = await hub_client.post(f"/api/v1/merges/{merge_id}/undo", headers=HEAD)
        assert undone.status == 200, await undone.text()
    phones = ["+79120000001", "+79120000002", "+79120000003"]
    for contact_id, phone in zip(ids, phones, strict=True):
        card = await (await hub_client.get(f"/api/v1/contacts/{contact_id}", headers=HEAD)).json()
        assert [p["normalized"] for p in card["phones"]] == [phone], (contact_id, card)
        assert len(card["deals"]) == 1
    assert await consistency_problems(Store(hub_client.app[HUB_KEY].settings.store_url)) == []
