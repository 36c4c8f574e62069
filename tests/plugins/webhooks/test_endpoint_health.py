"""An endpoint's state outlives a restart: it is taken up again from the outbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hub.context import Hub
from hub.store.models import Notification
from hub.store.types import utcnow
from plugins.webhooks import Webhooks
from tests.conftest import make_hub, make_settings, wait_for
from tests.plugins.webhooks.conftest import endpoint

NOW = utcnow()


def _row(key: str, address: str, state: str, created: timedelta, **more: Any) -> dict[str, Any]:
    return {
        "key": key,
        "notifier": more.pop("notifier", "webhooks"),
        "address": address,
        "template": None,
        "context": {"type": "deal.created"},
        "queued_by": "rule:webhooks",
        "state": state,
        "attempts": more.pop("attempts", 1),
        "due_at": NOW,
        "created_at": NOW - created,
        "sent_at": more.pop("sent_at", None),
        "last_error": more.pop("last_error", None),
    }


ROWS = [
    # erp: delivered ten days ago, failing for six days since: past disable_after (5d).
    _row("a1", "erp", "sent", timedelta(days=10), sent_at=NOW - timedelta(days=10)),
    _row(
        "a2", "erp", "failed", timedelta(days=6), attempts=9, last_error="503 Service Unavailable"
    ),
    _row("a3", "erp", "queued", timedelta(hours=1), attempts=2, last_error="503"),
    # bi: failing for an hour.
    _row("b1", "bi", "sent", timedelta(days=2), sent_at=NOW - timedelta(days=2)),
    _row("b2", "bi", "queued", timedelta(hours=1), attempts=3, last_error="no answer within 15s"),
    # shop: said 410 Gone.
    _row("c1", "shop", "failed", timedelta(minutes=5), last_error="410 Gone: the endpoint ..."),
    # crm: a failure, then a success after it.
    _row("d1", "crm", "queued", timedelta(days=7), attempts=4, last_error="500"),
    _row("d2", "crm", "sent", timedelta(hours=2), sent_at=NOW - timedelta(hours=2)),
    # paused: turned off in the config for a week, now on again; refused rows are no failures.
    _row(
        "f1",
        "paused",
        "failed",
        timedelta(days=8),
        last_error="endpoint 'paused' has enabled = false",
    ),
    _row(
        "f2",
        "paused",
        "failed",
        timedelta(days=7),
        last_error="endpoint disabled after 5 days of failures",
    ),
    # fresh: queued, not tried yet; and another notifier's failures are not ours.
    _row("e1", "fresh", "queued", timedelta(days=9), attempts=0),
    _row("e2", "fresh", "failed", timedelta(days=9), notifier="telegram", last_error="403"),
]


async def test_endpoint_states_are_taken_up_from_the_outbox_at_start_up(store_url):
    names = ["erp", "bi", "shop", "crm", "paused", "fresh"]
    settings = make_settings(
        store_url,
        plugins={"webhooks": {"endpoints": [endpoint(n) for n in names], "disable_after": "5d"}},
    )
    hub = make_hub(settings, extra={"webhooks": Webhooks}, start_workers=False)
    await hub.store.upgrade()
    async with hub.store.write() as conn:
        await conn.execute(Notification.__table__.insert(), ROWS)
    await hub.start()
    try:
        record = hub.plugins.records["webhooks"]
        await wait_for(_running(hub))
        states = {s["name"]: s for s in record.instance.status()}
    finally:
        await hub.stop()

    assert {n: s["state"] for n, s in states.items()} == {
        "erp": "disabled",
        "bi": "failing",
        "shop": "disabled",
        "crm": "ok",
        "paused": "ok",
        "fresh": "ok",
    }
    assert states["erp"]["reason"] == "endpoint disabled after 5 days of failures"
    assert abs(states["erp"]["failing_since"] - (NOW - timedelta(days=6))) < timedelta(seconds=1)
    assert abs(states["bi"]["failing_since"] - (NOW - timedelta(hours=1))) < timedelta(seconds=1)
    assert states["shop"]["reason"].startswith("410 Gone")


def _running(hub: Hub) -> Any:
    async def check() -> bool:
        return hub.plugins.records["webhooks"].state == "running"

    return check


async def test_an_endpoint_switched_on_again_forgets_the_failures_queued_before(store_url):
    # erp failed for six days and shop said 410 Gone; the operator fixed both receivers and
    # set enabled_since: the old failures no longer count, later ones would.
    since = (NOW - timedelta(minutes=1)).isoformat()
    endpoints = [endpoint("erp"), endpoint("shop"), endpoint("bi")]
    endpoints[0]["enabled_since"] = since
    endpoints[1]["enabled_since"] = since
    settings = make_settings(
        store_url, plugins={"webhooks": {"endpoints": endpoints, "disable_after": "5d"}}
    )
    hub = make_hub(settings, extra={"webhooks": Webhooks}, start_workers=False)
    await hub.store.upgrade()
    async with hub.store.write() as conn:
        await conn.execute(
            Notification.__table__.insert(),
            [r for r in ROWS if r["address"] in ("erp", "shop", "bi")],
        )
    await hub.start()
    try:
        await wait_for(_running(hub))
        states = {s["name"]: s["state"] for s in hub.plugins.records["webhooks"].instance.status()}
    finally:
        await hub.stop()
    assert states == {"erp": "ok", "shop": "ok", "bi": "failing"}
