"""Durable intake and the worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text

from hub.context import Hub
from hub.domain.lead import Lead
from hub.hookspecs import hookimpl
from hub.intake import idempotency_keys, replay
from hub.store import Store
from hub.store.models import Deal, InboxEvent
from tests.conftest import make_hub, make_settings, wait_for


class Flaky:
    """A channel whose parser fails while ``broken`` is set, like a plugin with a bug."""

    broken = True

    @hookimpl
    def hub_parse_lead(self, channel: str, payload: dict[str, Any]) -> Lead | None:
        if channel != "flaky":
            return None
        if payload.get("poison") and Flaky.broken:
            raise ValueError("cannot read this payload")
        return Lead(channel="flaky", name=payload["name"], phones=[payload["phone"]])


async def started(url: str, **overrides: Any) -> Hub:
    Flaky.broken = True
    hub = make_hub(make_settings(url, **overrides), extra={"flaky": Flaky})
    await hub.start()
    return hub


async def statuses(hub: Hub) -> dict[int, tuple[str, int, str | None]]:
    async with hub.store.read() as conn:
        rows = await conn.execute(
            select(InboxEvent.id, InboxEvent.status, InboxEvent.attempts, InboxEvent.last_error)
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def deals_by_event(hub: Hub) -> dict[int, int]:
    async with hub.store.read() as conn:
        rows = await conn.execute(select(Deal.inbox_id, func.count()).group_by(Deal.inbox_id))
        return dict(rows.all())


async def test_a_failing_event_is_retried_then_dead_then_replayed(store_url):
    hub = await started(store_url, plugins={"webforms": {}, "flaky": {}})
    try:
        bad = await hub.intake.accept(
            "flaky", {"name": "Ошибка", "phone": "+79120000001", "poison": True}
        )
        good = await hub.intake.accept("flaky", {"name": "Норма", "phone": "+79120000002"})

        async def dead() -> bool:
            return (await statuses(hub))[bad.id][0] == "dead"

        await wait_for(dead)
        state = await statuses(hub)
        assert state[bad.id][1] == 3  # intake.max_attempts in the test settings
        assert "cannot read this payload" in state[bad.id][2]
        assert state[good.id][0] == "done"  # the bad one held nobody up
        assert await deals_by_event(hub) == {good.id: 1}

        Flaky.broken = False  # the plugin is fixed and the event replayed
        assert await replay(hub.store, [bad.id, good.id]) == [bad.id]
        hub.intake.new_events.set()

        async def done() -> bool:
            return (await statuses(hub))[bad.id][0] == "done"

        await wait_for(done)
        assert await deals_by_event(hub) == {good.id: 1, bad.id: 1}
    finally:
        await hub.stop()


async def test_events_of_a_disabled_channel_wait_as_failures_not_losses(store_url):
    hub = await started(store_url)  # "flaky" is installed but not enabled
    try:
        event = await hub.intake.accept("flaky", {"name": "Никто", "phone": "+79120000003"})

        async def failed() -> bool:
            return (await statuses(hub))[event.id][1] >= 1

        await wait_for(failed)
        status, _, error = (await statuses(hub))[event.id]
        assert status in ("pending", "dead")
        assert "no enabled plugin parses channel 'flaky'" in error
    finally:
        await hub.stop()


async def test_concurrent_accepts_are_committed_in_groups_with_distinct_ids(store_url):
    hub = make_hub(make_settings(store_url), start_workers=False)
    await hub.start()
    try:
        results = await asyncio.gather(
            *(hub.intake.accept("webforms", {"form": "contact", "n": i}) for i in range(500))
        )
        assert len({r.id for r in results}) == 500
        assert not any(r.duplicate for r in results)
        groups = hub.metrics.group_commit.collect()[0].samples
        commits = next(s.value for s in groups if s.name.endswith("_count"))
        assert commits < 100  # 500 events in far fewer commits than events
        assert len(await statuses(hub)) == 500
    finally:
        await hub.stop()


async def test_repeats_inside_one_group_and_across_groups_get_the_first_id(store_url):
    hub = make_hub(make_settings(store_url), start_workers=False)
    await hub.start()
    try:
        same = [hub.intake.accept("webforms", {"form": "contact", "x": 1}) for _ in range(5)]
        results = await asyncio.gather(*same)
        assert len({r.id for r in results}) == 1
        assert sum(not r.duplicate for r in results) == 1
        later = await hub.intake.accept("webforms", {"form": "contact", "x": 1})
        assert later.id == results[0].id
        assert later.duplicate
    finally:
        await hub.stop()


async def test_two_workers_share_the_queue_without_processing_anything_twice(store_url):
    hub = await started(
        store_url, plugins={"webforms": {}, "flaky": {}}, intake={"batch_size": 16, "workers": 2}
    )
    try:
        events = await asyncio.gather(
            *(
                hub.intake.accept("flaky", {"name": f"Клиент {i}", "phone": f"+7912555{i:04d}"})
                for i in range(400)
            )
        )

        async def all_done() -> bool:
            return all(s[0] == "done" for s in (await statuses(hub)).values())

        await wait_for(all_done, within=30)
        per_event = await deals_by_event(hub)
        assert set(per_event) == {e.id for e in events}
        assert set(per_event.values()) == {1}
    finally:
        await hub.stop()


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


@given(
    content=st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=4),
    gap=st.integers(min_value=0, max_value=int(WINDOW.total_seconds())),
)
def test_same_content_within_the_window_always_meets_an_earlier_key(content, gap):
    first, _ = idempotency_keys(external_id=None, fingerprint=content, now=NOW, window=WINDOW)
    key, previous = idempotency_keys(
        external_id=None, fingerprint=content, now=NOW + timedelta(seconds=gap), window=WINDOW
    )
    assert first in (key, previous)


def test_same_content_a_day_later_is_a_new_request():
    first, _ = idempotency_keys(external_id=None, fingerprint={"a": 1}, now=NOW, window=WINDOW)
    key, previous = idempotency_keys(
        external_id=None, fingerprint={"a": 1}, now=NOW + timedelta(days=1), window=WINDOW
    )
    assert first not in (key, previous)


def test_channel_ids_are_keys_for_ever_and_long_ones_are_hashed():
    key, previous = idempotency_keys(external_id="msg-1", fingerprint=None, now=NOW, window=WINDOW)
    assert (key, previous) == ("id:msg-1", None)
    long_key, _ = idempotency_keys(external_id="x" * 500, fingerprint=None, now=NOW, window=WINDOW)
    assert len(long_key) < 100


async def test_an_ingress_only_process_accepts_and_another_turns_the_inbox_into_deals(store_url):
    ingress = make_hub(make_settings(store_url, intake={"process": False}))
    await ingress.start()
    try:
        accepted = await ingress.intake.accept(
            "webforms",
            {"form": "contact", "lead": {"name": "Иван", "phones": ["+7 912 345-67-89"]}},
        )
        await asyncio.sleep(0.3)
        assert (await statuses(ingress))[accepted.id][0] == "pending"  # nobody processes here
        worker = await started(store_url)
        try:

            async def done() -> bool:
                return (await statuses(worker))[accepted.id][0] == "done"

            await wait_for(done)
        finally:
            await worker.stop()
    finally:
        await ingress.stop()


async def test_a_burst_keeps_the_cpu_for_accepting_and_its_leads_wait_at_most_burst_defer(
    store_url,
):
    """While leads arrive and the process is busy (here a thread burns the CPU that parsing
    a flood of posts would take), the worker leaves the CPU alone, but no longer than
    intake.burst_defer."""
    import hashlib
    import threading
    import time

    hub = await started(store_url, intake={"burst_defer": "1s", "batch_linger": "10ms"})
    lead = {"form": "contact", "lead": {"name": "Иван", "phones": ["+7 912 345-67-89"]}}

    async def processed_after(payload: dict[str, Any]) -> float:
        started_at = time.monotonic()
        accepted = await hub.intake.accept("webforms", payload)

        async def done() -> bool:
            return (await statuses(hub))[accepted.id][0] == "done"

        await wait_for(done, within=10)
        return time.monotonic() - started_at

    burning = threading.Event()
    burning.set()

    def burn() -> None:  # CPU without the GIL: the event loop stays as quick as before
        block = bytes(1 << 20)
        while burning.is_set():
            hashlib.sha256(block).digest()

    async def arrivals() -> None:
        for n in range(10_000):
            await hub.intake.accept("webforms", {**lead, "n": n})
            await asyncio.sleep(0.02)

    try:
        assert await processed_after(lead) < 0.7  # a quiet process: at once
        burners = [threading.Thread(target=burn) for _ in range(2)]
        for burner in burners:
            burner.start()
        flood = asyncio.create_task(arrivals())
        try:
            await asyncio.sleep(0.3)
            waited = await processed_after({**lead, "lead": {**lead["lead"], "name": "Мария"}})
        finally:
            flood.cancel()
            burning.clear()
            for burner in burners:
                burner.join()
        # Deferred (a quiet process takes it in ~0.05 s) until the flood's first lead,
        # 0.3 s older, had waited 1 s.
        assert 0.5 <= waited < 3
        assert hub.metrics.deferred.collect()[0].samples[0].value >= 0.5
    finally:
        await hub.stop()


async def test_the_same_content_after_a_window_boundary_is_still_the_first_event(
    store_url, monkeypatch
):
    clock = {"now": datetime(2026, 11, 23, 11, 59, 50, tzinfo=UTC)}  # 10 s before a boundary
    monkeypatch.setattr("hub.intake.accept.utcnow", lambda: clock["now"])
    hub = make_hub(make_settings(store_url, intake={"dedupe_window": "10m"}), start_workers=False)
    await hub.start()
    try:
        form = {"form": "contact", "name": "Ольга", "phone": "+79120000001"}
        first = await hub.intake.accept("webforms", form)
        clock["now"] += timedelta(seconds=20)  # the next window, 20 s after the first
        again = await hub.intake.accept("webforms", form)
        assert (again.id, again.duplicate) == (first.id, True)
        clock["now"] += timedelta(minutes=11)  # past the window: a new request
        later = await hub.intake.accept("webforms", form)
        assert later.id != first.id
        assert not later.duplicate
        assert len(await statuses(hub)) == 2
    finally:
        await hub.stop()


async def test_two_hub_processes_given_the_same_leads_at_once_store_each_once(store_url):
    first = make_hub(make_settings(store_url), start_workers=False)
    second = make_hub(make_settings(store_url), start_workers=False)
    await first.start()
    await second.start()
    try:
        leads = [{"form": "contact", "phone": f"+7912000{i:04d}"} for i in range(300)]
        results = await asyncio.gather(
            *(hub.intake.accept("webforms", lead) for lead in leads for hub in (first, second))
        )
        ids = [r.id for r in results]
        assert ids[0::2] == ids[1::2]  # both processes answer each lead with one id
        assert sum(not r.duplicate for r in results) == 300
        assert len(await statuses(first)) == 300
    finally:
        await second.stop()
        await first.stop()


async def test_accepting_goes_on_when_the_database_drops_the_intakes_connection(pg_url):
    hub = make_hub(make_settings(pg_url), start_workers=False)
    await hub.start()
    try:
        before = await hub.intake.accept("webforms", {"form": "contact", "n": 1})
        async with hub.store.write() as conn:  # what a PostgreSQL restart does to it
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        after = await asyncio.gather(
            *(hub.intake.accept("webforms", {"form": "contact", "n": n}) for n in range(2, 50))
        )
        assert len({before.id, *(r.id for r in after)}) == 49
        assert len(await statuses(hub)) == 49
    finally:
        await hub.stop()


async def test_a_lead_another_process_is_storing_at_that_moment_gets_that_processs_id(store_url):
    hub = make_hub(make_settings(store_url), start_workers=False)
    await hub.start()
    other = Store(store_url)  # another hub process on the same store
    try:
        async with other.write() as conn:
            stored = await conn.execute(
                insert(InboxEvent)
                .values(channel="webforms", idem_key="id:call-42", payload={"n": 1})
                .returning(InboxEvent.id)
            )
            stored_id = stored.scalar_one()
            accepting = asyncio.create_task(
                hub.intake.accept("webforms", {"n": 1}, external_id="call-42")
            )
            await asyncio.sleep(0.3)
            assert not accepting.done()  # it waits for the other process's commit
        result = await accepting
        assert (result.id, result.duplicate) == (stored_id, True)
        assert list(await statuses(hub)) == [stored_id]
    finally:
        await other.close()
        await hub.stop()


async def test_a_client_that_hangs_up_while_waiting_still_has_its_lead_stored(store_url):
    hub = make_hub(make_settings(store_url), start_workers=False)
    await hub.start()
    try:
        waiting = asyncio.create_task(hub.intake.accept("webforms", {"form": "contact", "n": 7}))
        await asyncio.sleep(0)  # queued for the next group
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

        async def stored() -> bool:
            return len(await statuses(hub)) == 1

        await wait_for(stored)
        again = await hub.intake.accept("webforms", {"form": "contact", "n": 7})
        assert again.duplicate
    finally:
        await hub.stop()
