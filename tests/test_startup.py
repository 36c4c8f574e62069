"""Start-up: typed plugin failures, a start-up timeout, and a store that is not there yet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from aiohttp import web
from click.testing import CliRunner
from sqlalchemy.engine import make_url

import hub.app
from hub.app import build_app
from hub.cli import main
from hub.config import load_settings
from hub.hookspecs import hookimpl
from hub.plugins import PluginAuthFailed, PluginConfigError, PluginHost, PluginNotReady
from tests.conftest import ROOT, make_hub, make_settings, wait_for
from tests.e2e.daemon import free_port, write_config

HEAD = {"Authorization": "Bearer head-token-0123456789"}


def with_plugin(url: str, name: str, **overrides: Any) -> Any:
    return make_settings(
        url,
        plugins={"webforms": {"forms": {"contact": {"rate_limit": 100}}}, name: {}},
        **overrides,
    )


async def until(predicate: Any, within: float = 10.0) -> None:
    async def check() -> bool:
        return bool(predicate())

    await wait_for(check, within)


class Mailbox:
    """An IMAP channel whose server is down twice, then answers."""

    attempts = 0
    outcome: ClassVar[list[BaseException | None]] = []

    @hookimpl
    async def hub_startup(self) -> None:
        Mailbox.attempts += 1
        if Mailbox.outcome:
            error = Mailbox.outcome.pop(0)
            if error is not None:
                raise error

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        async def ping(request: web.Request) -> web.Response:
            return web.json_response({"pong": True})

        return [web.get("/mailbox/ping", ping)]


def mailbox(*outcomes: BaseException | None) -> type[Mailbox]:
    Mailbox.attempts = 0
    Mailbox.outcome = list(outcomes)
    return Mailbox


# -- typed failures of hub_startup ---------------------------------------------------------


async def test_hook_hub_startup_plugin_not_ready_is_retried_with_backoff_until_it_runs(
    aiohttp_client, sqlite_url
):
    plugin = mailbox(
        PluginNotReady("imap.example.ru:993 refused"), PluginNotReady("still refused"), None
    )
    hub = make_hub(with_plugin(sqlite_url, "imap"), extra={"imap": plugin})
    client = await aiohttp_client(build_app(hub))
    record = hub.plugins.records["imap"]

    await until(lambda: record.state == "not_ready")
    assert record.error.startswith("not ready: ")
    assert record.as_dict()["retrying"]
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "plugin imap: not_ready not ready: " in " ".join((await ready.json())["problems"])
    assert (await client.get("/mailbox/ping")).status == 503

    await until(lambda: record.state == "running")
    assert Mailbox.attempts == 3
    assert record.error is None
    assert (await client.get("/mailbox/ping")).status == 200
    assert (await client.get("/readyz")).status == 200


@pytest.mark.parametrize(
    ("error", "state", "label"),
    [
        (PluginAuthFailed("IMAP login refused for sales@example.ru"), "auth_failed", "auth"),
        (PluginConfigError("mailbox INBOX/Leads does not exist"), "config_error", "config"),
    ],
)
async def test_hook_hub_startup_auth_and_config_failures_are_final_and_shown_with_the_reason(
    aiohttp_client, sqlite_url, tmp_path, error, state, label
):
    plugin = mailbox(error, None)
    hub = make_hub(with_plugin(sqlite_url, "imap"), extra={"imap": plugin})
    client = await aiohttp_client(build_app(hub))
    record = hub.plugins.records["imap"]

    await until(lambda: record.state == state)
    await asyncio.sleep(0.5)  # several backoff periods (0.05 s .. 0.2 s): no second attempt
    assert Mailbox.attempts == 1
    assert record.state == state
    assert record.retry_at is None
    assert str(error) in record.error
    assert "not retried" in record.error

    ready = await client.get("/readyz")
    assert ready.status == 503
    problems = " ".join((await ready.json())["problems"])
    assert f"plugin imap: {state}" in problems and str(error) in problems
    health = {p["name"]: p for p in (await (await client.get("/healthz")).json())["plugins"]}
    assert health["imap"]["state"] == state and not health["imap"]["retrying"]
    assert health["webforms"]["state"] == "running"  # the others go on
    assert (await client.get("/mailbox/ping")).status == 503

    # `hub plugins` on this daemon's config shows the live state and the reason.
    config = write_config(tmp_path, sqlite_url, client.server.port)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["--config", str(config), "plugins"])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if row.startswith("imap"))
    assert state in line and str(error) in line


async def test_hook_hub_startup_any_other_exception_is_retried_as_failed(sqlite_url):
    plugin = mailbox(ConnectionResetError("peer reset"), None)
    hub = make_hub(with_plugin(sqlite_url, "imap"), extra={"imap": plugin})
    await hub.start()
    try:
        record = hub.plugins.records["imap"]
        await until(lambda: record.state == "running")
        assert Mailbox.attempts == 2
        assert record.failures == 1
    finally:
        await hub.stop()


class Hangs:
    """A start-up that waits for ever the first two times (a server that never answers)."""

    attempts = 0
    cancelled = 0

    @hookimpl
    async def hub_startup(self) -> None:
        Hangs.attempts += 1
        if Hangs.attempts <= 2:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                Hangs.cancelled += 1
                raise


async def test_hook_hub_startup_that_hangs_is_cancelled_at_the_timeout_and_retried(sqlite_url):
    Hangs.attempts = Hangs.cancelled = 0
    settings = with_plugin(sqlite_url, "slow", hub={"plugin_startup_timeout": "0.2s"})
    hub = make_hub(settings, extra={"slow": Hangs})
    assert hub.plugins.startup_timeout == 0.2
    await hub.start()
    try:
        record = hub.plugins.records["slow"]
        await until(lambda: record.state == "not_ready")
        assert "did not finish within 0.2s (hub.plugin_startup_timeout)" in record.error
        await until(lambda: record.state == "running")
        assert Hangs.attempts == 3
        assert Hangs.cancelled == 2
    finally:
        await hub.stop()


class OwnTimeout:
    @hookimpl
    async def hub_startup(self) -> None:
        raise TimeoutError("the CRM API did not answer in 5 s")


async def test_a_plugins_own_timeout_is_its_failure_not_the_start_up_timeout(sqlite_url):
    hub = make_hub(with_plugin(sqlite_url, "own"), extra={"own": OwnTimeout})
    await hub.start()
    try:
        record = hub.plugins.records["own"]
        await until(lambda: record.state == "failed")
        assert "TimeoutError: the CRM API did not answer" in record.error
    finally:
        await hub.stop()


def test_the_start_up_timeout_is_configured_and_documented(sqlite_url):
    assert PluginHost(make_settings(sqlite_url)).startup_timeout == 30
    example = load_settings(ROOT / "config.example.toml")
    assert example.hub.plugin_startup_timeout == timedelta(seconds=30)
    assert example.store.startup_deadline == timedelta(minutes=5)
    text = (ROOT / "config.example.toml").read_text()
    assert "\nplugin_startup_timeout = " in text and "\nstartup_deadline = " in text
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for name in ("PluginNotReady", "PluginAuthFailed", "PluginConfigError"):
        assert name in guide


# -- a store that is not there yet ---------------------------------------------------------


@contextlib.asynccontextmanager
async def forwarder(port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    """PostgreSQL appearing on ``port``: a TCP relay to the real server."""
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        writers.extend([writer, up_writer])
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for writer in writers:
            writer.close()


async def test_a_store_that_comes_up_during_the_wait_starts_the_hub(
    aiohttp_client, pg_url, monkeypatch
):
    monkeypatch.setattr(hub.app, "STORE_RETRY_BASE", 0.1)
    real = make_url(pg_url)
    port = free_port()
    url = real.set(port=port).render_as_string(hide_password=False)
    given_up: list[str] = []
    daemon = make_hub(make_settings(url))
    client = await aiohttp_client(build_app(daemon, give_up=given_up.append))

    health = await client.get("/healthz")
    assert health.status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503
    problem = (await ready.json())["problems"][0]
    assert f"127.0.0.1:{port}" in problem and "not reachable" in problem
    assert "ConnectionRefusedError" in problem and "giving up at" in problem
    api = await client.get("/api/v1/deals", headers=HEAD)
    assert api.status == 503
    assert api.headers["Retry-After"] == "10"
    assert "127.0.0.1" not in await api.text()  # where the store is, is for /readyz only
    assert (await client.post("/forms/contact", data={"fio": "Иван"})).status == 503

    async with forwarder(port, (real.host or "127.0.0.1", real.port or 5432)):

        async def ready_now() -> bool:
            return (await client.get("/readyz")).status == 200

        await wait_for(ready_now, within=15)
        response = await client.post(
            "/forms/contact", data={"fio": "Иван Петров", "tel": "+7 912 345-67-89"}
        )
        assert response.status == 202
        assert (await client.get("/api/v1/deals", headers=HEAD)).status == 200
        await client.close()  # stop the hub while its connections still have a way through
    assert given_up == []


async def test_a_store_still_down_at_the_deadline_gives_up_with_one_line(
    aiohttp_client, monkeypatch
):
    monkeypatch.setattr(hub.app, "STORE_RETRY_BASE", 0.1)
    port = free_port()
    settings = make_settings(
        f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{port}/crm",
        store={
            "url": f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{port}/crm",
            "startup_deadline": "1s",
        },
    )
    given_up: list[str] = []
    client = await aiohttp_client(build_app(make_hub(settings), give_up=given_up.append))

    async def gave_up() -> bool:
        return bool(given_up)

    await wait_for(gave_up, within=10)
    (message,) = given_up
    assert "\n" not in message
    assert f"127.0.0.1:{port}/crm did not answer within store.startup_deadline (00:01)" in message
    assert "ConnectionRefusedError" in message
    assert "hunter2" not in message
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert message in (await ready.json())["problems"]


@pytest.mark.slow
async def test_hub_run_exits_non_zero_with_one_line_when_the_store_never_answers(tmp_path):
    port, store_port = free_port(), free_port()
    config = write_config(
        tmp_path, f"postgresql+asyncpg://postgres@127.0.0.1:{store_port}/crm", port
    )
    env = {
        **os.environ,
        "HUB_CONFIG": str(config),
        "HUB__STORE__STARTUP_DEADLINE": "3s",
        "HUB__LOG__FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "run",
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        import aiohttp

        async with aiohttp.ClientSession() as session:

            async def serving() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(serving, within=20)  # alive while the store is down
            async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 503
                assert f"127.0.0.1:{store_port}" in (await r.json())["problems"][0]
        assert proc.stderr is not None
        stderr = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 1, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"hub: store postgresql+asyncpg://postgres@127.0.0.1:{store_port}/crm")
    assert "did not answer within store.startup_deadline (00:03)" in last
    assert "ConnectionRefusedError" in last
