"""The plugin host: a plugin's failure is its own state, never the daemon's."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import select

from hub import hookspecs
from hub.app import build_app
from hub.config import ConfigError
from hub.domain.lead import Lead
from hub.hookspecs import hookimpl
from hub.plugins import PluginHost
from hub.store.models import Deal, InboxEvent
from tests.conftest import ROOT, make_hub, make_settings, wait_for


class FailsToStart:
    """Cannot reach its server the first two times, like a channel whose IMAP is down."""

    attempts = 0

    @hookimpl
    async def hub_startup(self) -> None:
        FailsToStart.attempts += 1
        if FailsToStart.attempts <= 2:
            raise ConnectionError("imap.example.ru:993 refused")

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        async def ping(request: web.Request) -> web.Response:
            return web.json_response({"pong": True})

        return [web.get("/failing/ping", ping)]


class CrashingTask:
    """A poller that crashes once, then runs."""

    runs = 0
    running = asyncio.Event()

    @hookimpl
    def hub_background_tasks(self) -> dict[str, Any]:
        async def poll() -> None:
            CrashingTask.runs += 1
            if CrashingTask.runs == 1:
                raise RuntimeError("mailbox vanished")
            CrashingTask.running.set()
            await asyncio.Event().wait()

        return {"poll": poll}


class Listener:
    """Records the domain events it is given; fails on the first ``deal.created``."""

    class Config(BaseModel):
        model_config = {"extra": "forbid"}
        channel: str = "telegram"

    seen: ClassVar[list[tuple[int, str]]] = []
    failed_once = False

    def __init__(self, config: Config) -> None:
        self.config = config

    @hookimpl
    def hub_domain_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "deal.created" and not Listener.failed_once:
            Listener.failed_once = True
            raise TimeoutError("telegram did not answer")
        Listener.seen.append((event["id"], event["type"]))


class Stopper:
    stopped = False

    @hookimpl
    def hub_startup(self, hub: Any) -> None:
        assert hub.deals is not None  # the writer, and a read-only store
        assert not hasattr(hub, "store")

    @hookimpl
    async def hub_shutdown(self) -> None:
        Stopper.stopped = True


def plugins_section(*names: str) -> dict[str, Any]:
    return {
        "plugins": {
            "webforms": {"forms": {"contact": {"rate_limit": 100}}},
            **{n: {} for n in names},
        }
    }


async def test_hook_hub_startup_failure_marks_the_plugin_failed_and_retries(
    aiohttp_client, sqlite_url
):
    FailsToStart.attempts = 0
    hub = make_hub(
        make_settings(sqlite_url, **plugins_section("imap")), extra={"imap": FailsToStart}
    )
    client = await aiohttp_client(build_app(hub))
    record = hub.plugins.records["imap"]

    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok"  # the daemon is alive
    states = {p["name"]: p for p in health["plugins"]}
    assert states["imap"]["state"] in ("failed", "starting")
    assert states["webforms"]["state"] == "running"  # the others go on
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "imap" in " ".join((await ready.json())["problems"])
    ping = await client.get("/failing/ping")
    assert ping.status == 503  # its routes say why instead of half-working

    async def running() -> bool:
        return record.state == "running"

    await wait_for(running)
    assert FailsToStart.attempts == 3
    assert (await client.get("/failing/ping")).status == 200
    assert (await client.get("/readyz")).status == 200


async def test_hook_hub_background_tasks_are_restarted_after_a_crash(sqlite_url):
    CrashingTask.runs = 0
    CrashingTask.running = asyncio.Event()
    hub = make_hub(
        make_settings(sqlite_url, **plugins_section("poller")), extra={"poller": CrashingTask}
    )
    await hub.start()
    try:
        await asyncio.wait_for(CrashingTask.running.wait(), 5)
        record = hub.plugins.records["poller"]
        assert CrashingTask.runs == 2
        assert record.failures == 1
        assert record.state == "running"
    finally:
        await hub.stop()


async def test_hook_hub_domain_event_gets_every_event_once_in_order_despite_a_failure(
    aiohttp_client, store_url
):
    Listener.seen = []
    Listener.failed_once = False
    hub = make_hub(
        make_settings(store_url, **plugins_section("listener")), extra={"listener": Listener}
    )
    client = await aiohttp_client(build_app(hub))
    for i in range(3):
        response = await client.post(
            "/forms/contact", data={"name": f"Клиент {i}", "phone": f"+7 912 777-00-0{i}"}
        )
        assert response.status == 202

    async def all_seen() -> bool:
        return sum(1 for _, t in Listener.seen if t == "deal.created") == 3

    await wait_for(all_seen)
    ids = [i for i, _ in Listener.seen]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))  # the failed event came again once, then never more
    types = {t for _, t in Listener.seen}
    assert types == {
        "lead.received",
        "contact.created",
        "deal.created",
        "task.created",
        "activity.logged",
    }
    assert hub.plugins.records["listener"].failures == 1


class DeliveryReports:
    """A channel whose events are not leads: a courier's delivery reports."""

    @hookimpl
    def hub_intake_handler(self, channel: str) -> Any:
        return self if channel == "deliveries" else None

    async def handle(self, event: Any) -> dict[str, Any]:
        if event.payload.get("broken"):
            raise ValueError("a report without a parcel")
        decision = await event.lead(
            Lead(channel="deliveries", phones=[event.payload["phone"]], source="Курьер")
        )
        return {"parcel": event.payload["parcel"], **decision}


async def test_hook_hub_intake_handler_files_a_channels_events_one_failure_apart(store_url):
    hub = make_hub(
        make_settings(store_url, **plugins_section("deliveries")),
        extra={"deliveries": DeliveryReports},
    )
    await hub.start()
    try:
        good = await hub.intake.accept("deliveries", {"parcel": "P-1", "phone": "+79127770011"})
        bad = await hub.intake.accept("deliveries", {"parcel": "P-2", "broken": True})

        async def settled() -> Any:
            async with hub.store.read() as conn:
                found = {
                    row.id: row
                    for row in await conn.execute(
                        select(
                            InboxEvent.id,
                            InboxEvent.status,
                            InboxEvent.result,
                            InboxEvent.last_error,
                        )
                    )
                }
            return found if found[bad.id].last_error and found[good.id].status == "done" else None

        found = await wait_for(settled)
        assert found[good.id].result["parcel"] == "P-1"
        assert found[good.id].result["decision"] == "new_contact"
        assert "a report without a parcel" in found[bad.id].last_error
        async with hub.store.read() as conn:
            sources = (await conn.execute(select(Deal.source))).scalars().all()
        assert sources == ["Курьер"]  # the good report stands beside the failed one
    finally:
        await hub.stop()


class Streamer:
    """A plugin holding a never-ending event stream open, as the /card page does."""

    def __init__(self, config: Any = None, hub: Any = None) -> None:
        self.stop = asyncio.Event()

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        async def stream(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b": open\n\n")
            await self.stop.wait()
            return response

        return [web.get("/stream", stream)]

    @hookimpl
    async def hub_stopping(self) -> None:
        self.stop.set()


async def test_hook_hub_stopping_ends_open_streams_so_the_daemon_stops_promptly(sqlite_url):
    import aiohttp

    hub = make_hub(
        make_settings(sqlite_url, **plugins_section("streamer")), extra={"streamer": Streamer}
    )
    runner = web.AppRunner(build_app(hub), shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def running() -> bool:
        return hub.plugins.records["streamer"].state == "running"

    await wait_for(running)
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"http://127.0.0.1:{port}/stream")
        assert await response.content.readline() == b": open\n"
        started = asyncio.get_running_loop().time()
        await runner.cleanup()
        assert asyncio.get_running_loop().time() - started < 5  # not the 30 s timeout
        response.close()


async def test_hook_hub_shutdown_is_called_when_the_hub_stops(sqlite_url):
    Stopper.stopped = False
    hub = make_hub(
        make_settings(sqlite_url, **plugins_section("stopper")), extra={"stopper": Stopper}
    )
    await hub.start()
    await wait_for(lambda: _true_when(hub.plugins.records["stopper"].state == "running"))
    await hub.stop()
    assert Stopper.stopped
    assert hub.plugins.records["stopper"].state == "stopped"


async def _true_when(value: bool) -> bool:
    return value


async def test_hook_hub_routes_and_hub_parse_lead_serve_the_web_form_channel(hub_client):
    # The built-in web-form channel is an ordinary plugin: its route and parser are hooks.
    response = await hub_client.post("/forms/contact", data={"fio": "Иван", "tel": "89123456789"})
    assert response.status == 202


def test_plugin_sections_are_validated_by_the_plugins_own_model(sqlite_url):
    settings = make_settings(
        sqlite_url,
        plugins={
            "listener": {"chanel": "x"},
            "webforms": {"forms": {"f": {"pipeline": "nope"}}},
            "ghost": {},
        },
    )
    host = PluginHost(
        settings,
        load_entry_points=False,
        extra={"listener": Listener, "webforms": make_hub.__globals__["WebForms"]},
    )
    with pytest.raises(ConfigError) as error:
        host.configure(None)
    message = str(error.value)
    assert "plugins.listener.chanel: unknown key" in message
    assert "plugins.webforms.forms.f" in message
    assert "'nope' is not configured" in message
    assert "plugins.ghost: no such plugin installed" in message


def test_a_plugin_that_cannot_be_imported_is_listed_as_failed(sqlite_url, monkeypatch):
    from importlib.metadata import EntryPoint

    broken = EntryPoint(name="broken", value="no_such_module:Plugin", group="crm_hub")
    monkeypatch.setattr("hub.plugins.entry_points", lambda group: [broken])
    settings = make_settings(sqlite_url)
    settings.plugins = {}
    host = PluginHost(settings)
    host.configure(None)
    summary = {p["name"]: p for p in host.summary()}
    assert summary["broken"]["state"] == "failed"
    assert "no_such_module" in summary["broken"]["error"]


def test_built_in_plugins_come_from_the_entry_point_group(sqlite_url):
    host = PluginHost(make_settings(sqlite_url))
    assert host.records["webforms"].origin == "built-in"


# -- meta-tests: every hook is documented and tested ------------------------------------------

HOOKS = sorted(
    name
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("hub_")
)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_and_a_section_in_the_plugin_guide(hook):
    assert getattr(hookspecs, hook).__doc__
    guide = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### `{hook}`", guide, re.MULTILINE), f"docs/plugins.md lacks {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    source = "\n".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))
    assert re.search(rf"def test_hook_\w*{hook}", source), f"no test_hook_... for {hook}"
