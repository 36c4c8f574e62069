"""The ``hub`` command: run the daemon, check the config, look into the store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from hub.commands.common import _run, _settings, _table
from hub.config import ConfigError, Settings, default_config_path, load_settings
from hub.logging import configure_logging

T = TypeVar("T")


@click.group()
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    default=None,
    help="Configuration file (default: $HUB_CONFIG, ./config.toml, ./config.example.toml).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """crm-hub: lead channels in, clean deals out."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config or default_config_path()


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: hub.host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: hub.port).")
@click.pass_context
def run(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the daemon until SIGTERM or Ctrl-C.

    Exits 2 on an invalid configuration (naming each key), 1 when the store did
    not answer within `store.startup_deadline` or start-up failed (one line on
    stderr saying why; details in the log).
    """
    from aiohttp import web

    from hub.app import STARTUP_KEY, build_app
    from hub.context import Hub

    settings = _settings(ctx)
    configure_logging(settings.log.level, settings.log.format)
    if host:
        settings.hub.host = host  # so the check of secrets on a public address sees it
    address = (settings.hub.host, port or settings.hub.port)
    try:
        hub = Hub(settings)  # validates the plugins' sections and the secrets
    except ConfigError as error:
        click.echo(f"invalid configuration ({ctx.obj['config']}):\n{error}", err=True)
        sys.exit(2)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        uvloop = None
    import structlog

    log = structlog.get_logger("hub")

    def listening(_banner: str) -> None:
        # aiohttp prints its banner once the socket is bound, after the hub started:
        # said then, "listening" is true (a port in use fails before it).
        log.info(
            "hub_listening",
            url=f"http://{address[0]}:{address[1]}",
            config=str(ctx.obj["config"]),
        )

    app = build_app(hub, freeze_heap=True)
    try:
        web.run_app(
            app,
            host=address[0],
            port=address[1],
            shutdown_timeout=settings.hub.shutdown_timeout.total_seconds(),
            access_log=None,
            print=listening,
            loop=uvloop.new_event_loop() if uvloop else None,
            handle_signals=True,
        )
    except Exception as error:
        log.exception("hub_failed")
        click.echo(f"hub: {type(error).__name__}: {error}".split("\n", 1)[0], err=True)
        sys.exit(1)
    fatal = app[STARTUP_KEY].fatal
    if fatal:
        click.echo(f"hub: {fatal}", err=True)
        sys.exit(1)


@main.group()
def config() -> None:
    """Check the configuration."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.pass_context
def config_check(ctx: click.Context, file: Path | None) -> None:
    """Validate FILE (default: the file `hub run` would use) with every plugin's section."""
    from hub.plugins import PluginHost

    path = file or ctx.obj["config"]
    try:
        settings = load_settings(path)
        PluginHost(settings).configure(None)
    except ConfigError as error:
        click.echo(f"invalid configuration ({path}):\n{error}", err=True)
        sys.exit(2)
    click.echo(f"{path}: ok ({len(settings.pipelines)} pipelines, {len(settings.users)} users)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, where each comes from, and its state.

    With the daemon running on this config, shows the live states from its
    /healthz; otherwise what the configuration enables.
    """
    from hub.plugins import PluginHost

    settings = _settings(ctx)
    summary = _live_plugins(settings)
    if summary is None:
        host = PluginHost(settings)
        try:
            host.configure(None)
        except ConfigError as error:
            click.echo(f"invalid configuration:\n{error}", err=True)
            sys.exit(2)
        summary = [
            {**r, "state": "enabled (daemon not running)" if r["enabled"] else r["state"]}
            for r in host.summary()
        ]
    if as_json:
        click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return
    from datetime import datetime

    from hub.commands.common import _local

    show = _local(settings)

    def state(p: dict[str, Any]) -> str:
        if p.get("retry_at"):  # failed or not ready, retried with backoff
            return f"{p['state']} (retry {show(datetime.fromisoformat(p['retry_at']))})"
        return str(p["state"])

    _table(
        ["name", "origin", "enabled", "state", "error"],
        [
            [p["name"], p["origin"], "yes" if p["enabled"] else "no", state(p), p["error"]]
            for p in summary
        ],
    )


def _live_plugins(settings: Settings) -> list[dict[str, Any]] | None:
    import urllib.request

    host = settings.hub.host if settings.hub.host not in ("0.0.0.0", "::") else "127.0.0.1"
    try:
        with urllib.request.urlopen(
            f"http://{host}:{settings.hub.port}/healthz", timeout=1
        ) as response:
            return orjson.loads(response.read())["plugins"]
    except Exception:
        return None


@main.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply migrations (also done at every start-up)."""
    from hub.store import Store

    settings = _settings(ctx)

    async def go() -> str | None:
        store = Store(settings.store_url)
        try:
            await store.upgrade()
            return await store.current_revision()
        finally:
            await store.close()

    click.echo(f"store at revision {_run(go())}")


def _register() -> None:
    from hub.commands import (
        calls,
        campaigns,
        companies,
        contacts,
        deals,
        dedupe,
        imports,
        inbox,
        notes,
        notifications,
        rules,
        tasks,
        users,
    )

    main.add_command(deals.deals)
    main.add_command(tasks.tasks)
    main.add_command(calls.calls)
    main.add_command(notes.notes)
    main.add_command(rules.rules)
    main.add_command(inbox.inbox)
    main.add_command(notifications.notifications)
    main.add_command(users.users)
    main.add_command(contacts.contacts)
    main.add_command(companies.companies)
    main.add_command(imports.import_, "import")
    main.add_command(dedupe.dedupe)
    main.add_command(campaigns.segments)
    main.add_command(campaigns.campaigns)
    main.add_command(campaigns.consents)


_register()


if __name__ == "__main__":  # pragma: no cover
    main()
