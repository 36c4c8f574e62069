"""The plugin host: discovery, configuration, supervised start-up and tasks.

A plugin's failure is a state, never the daemon's: start-up and background tasks
run under a supervisor that logs the error with the plugin's name, marks the
plugin failed (``hub plugins``, ``/readyz``) and tries again with backoff.

A plugin says why its start-up failed by raising one of the typed failures
below from ``hub_startup`` (as Home Assistant's ``ConfigEntryNotReady`` /
``ConfigEntryAuthFailed`` / ``ConfigEntryError``)::

    from hub.plugins import PluginAuthFailed, PluginConfigError, PluginNotReady

:class:`PluginNotReady` is retried with backoff, like any other exception and like
a start-up that outlives ``hub.plugin_startup_timeout``; :class:`PluginAuthFailed`
and :class:`PluginConfigError` fail the plugin for good, with the reason shown,
until its configuration is fixed and the daemon restarted.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import pluggy
import structlog
from aiohttp import web
from pydantic import BaseModel, SecretStr, ValidationError

from hub import hookspecs
from hub.config import (
    ConfigError,
    Settings,
    check_listen_address,
    format_validation_error,
    secrets_in,
)
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.context import Hub

log = structlog.get_logger("hub.plugins")

ENTRY_POINT_GROUP = "crm_hub"
BUILTIN_DIST = "crm-hub"


class PluginStartupError(Exception):
    """Why a plugin's ``hub_startup`` failed: raise a subclass, with a reason a person can read."""

    state = "failed"
    retry = True
    label = "failed"


class PluginNotReady(PluginStartupError):
    """What the plugin needs is not there yet (its server is down, a queue is missing).

    The plugin is shown as ``not_ready`` and started again with backoff; nothing is
    logged as a traceback, the reason is the message.
    """

    state = "not_ready"
    label = "not ready"


class PluginAuthFailed(PluginStartupError):
    """The plugin's credentials were refused. Not retried: fix them and restart the daemon."""

    state = "auth_failed"
    retry = False
    label = "authentication failed"


class PluginConfigError(PluginStartupError):
    """The plugin's settings cannot work (a mailbox that does not exist). Not retried."""

    state = "config_error"
    retry = False
    label = "configuration error"


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable: hooks may be sync or async."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass
class PluginRecord:
    """What the host knows about one plugin, shown by ``hub plugins`` and ``/readyz``."""

    name: str
    origin: str
    factory: Any = None
    enabled: bool = False
    config: BaseModel | None = None
    instance: Any = None
    # disabled | configured | starting | running | stopped, or while retried with backoff
    # failed | not_ready, or for good (until a restart) auth_failed | config_error
    state: str = "disabled"
    error: str | None = None
    failures: int = 0
    retry_at: datetime | None = None
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "enabled": self.enabled,
            "state": self.state,
            "error": self.error,
            "failures": self.failures,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "retrying": self.retry_at is not None,
        }

    @property
    def serving(self) -> bool:
        return self.state == "running"


class _EnabledOnly(BaseModel):
    model_config = {"extra": "allow"}
    enabled: bool = True


class PluginHost:
    def __init__(
        self,
        settings: Settings,
        *,
        load_entry_points: bool = True,
        extra: dict[str, Any] | None = None,
        retry_base: float = 5.0,
        retry_max: float = 300.0,
        startup_timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.startup_timeout = (
            startup_timeout
            if startup_timeout is not None
            else settings.hub.plugin_startup_timeout.total_seconds()
        )
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._stopping = asyncio.Event()
        self._supervisors: list[asyncio.Task[None]] = []
        self._discover(load_entry_points, extra or {})

    # -- discovery and configuration ------------------------------------------------------

    def _discover(self, load_entry_points: bool, extra: dict[str, Any]) -> None:
        if load_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._load_entry_point(ep)
        for name, factory in extra.items():
            self.records[name] = PluginRecord(name=name, origin="registered", factory=factory)

    def _load_entry_point(self, ep: EntryPoint) -> None:
        dist = ep.dist
        if dist is not None and dist.name == BUILTIN_DIST:
            origin = "built-in"
        elif dist is not None:
            origin = f"{dist.name} {dist.version}"
        else:
            origin = ep.value
        record = PluginRecord(name=ep.name, origin=origin)
        self.records[ep.name] = record
        try:
            record.factory = ep.load()
        except Exception as error:
            record.state = "failed"
            record.error = f"cannot import {ep.value}: {error!r}"
            log.error("plugin_import_failed", plugin=ep.name, error=record.error)

    def configure(self, hub: Hub | None) -> None:
        """Validate every plugin section; build and register the enabled plugins.

        Raises :class:`ConfigError` naming each bad key, with the plugin's section
        as the prefix (``plugins.webforms.forms.contact.pipeline: ...``).
        """
        sections = self.settings.plugins
        errors = [
            f"plugins.{name}: no such plugin installed (see `hub plugins`)"
            for name in sections
            if name not in self.records
        ]
        for name, record in self.records.items():
            raw = dict(sections.get(name, {}))
            # A plugin without a section is off, unless it says it is on by default (the
            # built-in stage rules: a policy every install should have).
            default = name in sections or bool(getattr(record.factory, "enabled_by_default", False))
            enabled = raw.pop("enabled", default)
            try:
                enabled = _EnabledOnly(enabled=enabled).enabled
            except ValidationError as error:
                errors.append(format_validation_error(error, f"plugins.{name}."))
                continue
            record.enabled = bool(enabled) and record.factory is not None
            if record.factory is None or (not record.enabled and name not in sections):
                continue  # installed, not configured: nothing to check (a token it needs...)
            model = getattr(record.factory, "Config", None)
            try:
                record.config = (
                    model.model_validate(
                        raw, context={"settings": self.settings, "enabled": record.enabled}
                    )
                    if model is not None
                    else None
                )
            except ValidationError as error:
                errors.append(format_validation_error(error, f"plugins.{name}."))
                continue
            if model is None and raw:
                errors.append(f"plugins.{name}: this plugin takes no settings")
        if not errors:
            try:
                check_listen_address(self.settings, self.settings.hub.host, self.secrets())
            except ConfigError as error:
                errors.append(str(error))
        if errors:
            raise ConfigError("\n".join(errors))
        if hub is None:
            return
        for record in self.records.values():
            if not record.enabled:
                continue
            try:
                record.instance = self._build(record, hub)
                self.pm.register(record.instance, name=record.name)
                record.state = "configured"
            except Exception as error:
                record.state = "failed"
                record.error = f"{type(error).__name__}: {error}"
                log.exception("plugin_build_failed", plugin=record.name)
        self.pm.check_pending()

    def secrets(self) -> list[tuple[str, SecretStr]]:
        """Every secret in the enabled plugins' sections, with its key."""
        return [
            found
            for name, record in self.records.items()
            if record.enabled and record.config is not None
            for found in secrets_in(record.config, f"plugins.{name}")
        ]

    @staticmethod
    def _build(record: PluginRecord, hub: Hub) -> Any:
        factory = record.factory
        if inspect.isclass(factory):
            params = inspect.signature(factory).parameters
            kwargs: dict[str, Any] = {}
            if "config" in params:
                kwargs["config"] = record.config
            if "hub" in params:
                kwargs["hub"] = hub
            return factory(**kwargs)
        return factory  # a module of hook functions

    # -- calling hooks --------------------------------------------------------------------

    def _impl(self, record: PluginRecord, hook: str) -> Callable[..., Any] | None:
        if record.instance is None:
            return None
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin is record.instance:
                return impl.function
        return None

    def call_one(self, record: PluginRecord, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation of ``hook`` with the arguments it takes."""
        function = self._impl(record, hook)
        if function is None:
            return None
        names = inspect.signature(function).parameters
        return function(**{k: v for k, v in kwargs.items() if k in names})

    def active(self) -> Iterable[PluginRecord]:
        return (r for r in self.records.values() if r.instance is not None)

    def implements(self, record: PluginRecord, hook: str) -> bool:
        return self._impl(record, hook) is not None

    # -- routes ---------------------------------------------------------------------------

    def routes(self, hub: Hub) -> list[web.RouteDef]:
        routes: list[web.RouteDef] = []
        for record in list(self.active()):
            try:
                defs = self.call_one(record, "hub_routes", hub=hub) or []
            except Exception as error:
                self._fail(record, error, where="hub_routes")
                continue
            for route in defs:
                routes.append(
                    web.RouteDef(
                        route.method,
                        route.path,
                        _guarded(record, route.handler),
                        route.kwargs,
                    )
                )
        return routes

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, hub: Hub, extra_tasks: Callable[[PluginRecord], dict[str, Any]]) -> None:
        """Start every configured plugin under its own supervisor; returns at once."""
        self._stopping.clear()
        for record in list(self.active()):
            supervisor = asyncio.create_task(
                self._supervise(record, hub, extra_tasks), name=f"plugin:{record.name}"
            )
            self._supervisors.append(supervisor)

    def _backoff(self, failures: int) -> float:
        delay = min(self.retry_max, self.retry_base * 2 ** max(0, failures - 1))
        return delay * random.uniform(0.8, 1.2)

    def _fail(self, record: PluginRecord, error: BaseException, *, where: str) -> None:
        record.state = "failed"
        record.failures += 1
        record.error = f"{where}: {type(error).__name__}: {error}"
        log.error("plugin_failed", plugin=record.name, where=where, exc_info=error)

    def _startup_failed(self, record: PluginRecord, error: PluginStartupError) -> None:
        """A failure the plugin named: its reason is the message, no traceback."""
        record.state = error.state
        record.failures += 1
        reason = str(error) or type(error).__name__
        if error.retry:
            record.error = f"{error.label}: {reason}"
            log.warning(
                "plugin_not_ready", plugin=record.name, reason=reason, failures=record.failures
            )
        else:
            record.error = (
                f"{error.label}: {reason} "
                f"(not retried: fix [plugins.{record.name}] and restart the daemon)"
            )
            log.error(
                "plugin_failed_for_good", plugin=record.name, state=error.state, reason=reason
            )

    async def _startup(self, record: PluginRecord, hub: Hub) -> None:
        """Call ``hub_startup``; one that outlives the start-up timeout is cancelled, not ready."""
        limit = self.startup_timeout
        try:
            async with asyncio.timeout(limit) as timeout:
                await await_me_maybe(self.call_one(record, "hub_startup", hub=hub))
        except TimeoutError as error:
            if not timeout.expired():
                raise  # the plugin's own timeout, not ours
            raise PluginNotReady(
                f"hub_startup did not finish within {limit:g}s (hub.plugin_startup_timeout)"
            ) from error

    async def _sleep_or_stop(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; True when shutdown began meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True

    async def _supervise(
        self,
        record: PluginRecord,
        hub: Hub,
        extra_tasks: Callable[[PluginRecord], dict[str, Any]],
    ) -> None:
        while not self._stopping.is_set():
            record.state, record.retry_at = "starting", None
            try:
                await self._startup(record, hub)
                tasks = dict(self.call_one(record, "hub_background_tasks", hub=hub) or {})
                tasks.update(extra_tasks(record))
            except PluginStartupError as error:
                self._startup_failed(record, error)
                if not error.retry:
                    return
            except Exception as error:
                self._fail(record, error, where="hub_startup")
            else:
                self._run(record, tasks)
                return
            delay = self._backoff(record.failures)
            record.retry_at = utcnow() + timedelta(seconds=delay)
            if await self._sleep_or_stop(delay):
                return

    def _run(self, record: PluginRecord, tasks: dict[str, Any]) -> None:
        record.state, record.error, record.retry_at = "running", None, None
        log.info("plugin_started", plugin=record.name, tasks=sorted(tasks))
        for task_name, function in tasks.items():
            record.tasks[task_name] = asyncio.create_task(
                self._run_task(record, task_name, function),
                name=f"plugin:{record.name}:{task_name}",
            )

    async def _run_task(self, record: PluginRecord, name: str, function: Any) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await function()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                self._fail(record, error, where=f"task {name}")
                delay = self._backoff(failures)
                record.retry_at = utcnow() + timedelta(seconds=delay)
                if await self._sleep_or_stop(delay):
                    return
                record.state, record.retry_at = "running", None

    async def stopping(self, hub: Hub, grace: float = 5.0) -> None:
        """Tell every started plugin the daemon is stopping (``hub_stopping``), before the
        HTTP server waits for the requests still running."""
        for record in list(self.active()):
            if record.state == "configured":
                continue
            try:
                await asyncio.wait_for(
                    await_me_maybe(self.call_one(record, "hub_stopping", hub=hub)), grace
                )
            except Exception:
                log.exception("plugin_stopping_failed", plugin=record.name)

    async def stop(self, hub: Hub, grace: float = 10.0) -> None:
        self._stopping.set()
        tasks = [*self._supervisors]
        for record in self.active():
            tasks.extend(record.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisors.clear()
        for record in list(self.active()):
            record.tasks.clear()
            if record.state == "configured":
                continue  # never started: nothing to close
            try:
                await asyncio.wait_for(
                    await_me_maybe(self.call_one(record, "hub_shutdown", hub=hub)), grace
                )
            except Exception:
                log.exception("plugin_shutdown_failed", plugin=record.name)
            if record.state in ("starting", "running"):
                record.state = "stopped"

    def summary(self) -> list[dict[str, Any]]:
        return [record.as_dict() for record in sorted(self.records.values(), key=lambda r: r.name)]


def _guarded(record: PluginRecord, handler: Callable[..., Awaitable[web.StreamResponse]]) -> Any:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not record.serving:
            return web.json_response(
                {"error": f"plugin {record.name} is not running", "state": record.state},
                status=503,
                headers={"Retry-After": "30"},
            )
        return await handler(request)

    guarded.__name__ = getattr(handler, "__name__", "handler")
    return guarded
