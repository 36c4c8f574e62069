"""The plugin host: discovery, configuration, supervised start-up and tasks.

A plugin's failure is a state, never the daemon's: start-up and background tasks
run under a supervisor that logs the error with the plugin's name, marks the
plugin failed (``hub plugins``, ``/readyz``) and tries again with backoff.
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
from pydantic import BaseModel, ValidationError

from hub import hookspecs
from hub.config import ConfigError, Settings, format_validation_error
from hub.store.types import utcnow

if TYPE_CHECKING:
    from hub.context import Hub

log = structlog.get_logger("hub.plugins")

ENTRY_POINT_GROUP = "crm_hub"
BUILTIN_DIST = "crm-hub"


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
    state: str = "disabled"  # disabled | configured | starting | running | failed | stopped
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
    ) -> None:
        self.settings = settings
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
            enabled = raw.pop("enabled", name in sections)
            try:
                enabled = _EnabledOnly(enabled=enabled).enabled
            except ValidationError as error:
                errors.append(format_validation_error(error, f"plugins.{name}."))
                continue
            record.enabled = bool(enabled) and record.factory is not None
            if record.factory is None:
                continue
            model = getattr(record.factory, "Config", None)
            try:
                record.config = (
                    model.model_validate(raw, context={"settings": self.settings})
                    if model is not None
                    else None
                )
            except ValidationError as error:
                errors.append(format_validation_error(error, f"plugins.{name}."))
                continue
            if model is None and raw:
                errors.append(f"plugins.{name}: this plugin takes no settings")
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
            record.state = "starting"
            try:
                await await_me_maybe(self.call_one(record, "hub_startup", hub=hub))
                tasks = dict(self.call_one(record, "hub_background_tasks", hub=hub) or {})
                tasks.update(extra_tasks(record))
            except Exception as error:
                self._fail(record, error, where="hub_startup")
                delay = self._backoff(record.failures)
                record.retry_at = utcnow() + timedelta(seconds=delay)
                if await self._sleep_or_stop(delay):
                    return
                continue
            record.state, record.error, record.retry_at = "running", None, None
            log.info("plugin_started", plugin=record.name, tasks=sorted(tasks))
            for task_name, function in tasks.items():
                record.tasks[task_name] = asyncio.create_task(
                    self._run_task(record, task_name, function),
                    name=f"plugin:{record.name}:{task_name}",
                )
            return

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
            try:
                await asyncio.wait_for(
                    await_me_maybe(self.call_one(record, "hub_shutdown", hub=hub)), grace
                )
            except Exception:
                log.exception("plugin_shutdown_failed", plugin=record.name)
            if record.state != "failed":
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
