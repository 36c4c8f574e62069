"""The running hub: settings, store, intake, workers and plugins, started and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import events, scheduler
from hub.attachments import Attachments
from hub.audit import run_audits
from hub.campaigns.delivery import DeliveryReports
from hub.campaigns.desk import CampaignDesk
from hub.campaigns.gateway import Gateway
from hub.campaigns.sender import CampaignSender
from hub.config import ConfigError, Settings
from hub.deals import Actor, Change, DealWriter, Reaction, Refusal, StoreReader
from hub.domain.lead import Lead
from hub.intake import Intake, Worker
from hub.intake.handlers import Handler
from hub.leads import LeadPipeline
from hub.metrics import Metrics
from hub.notify import Notifier
from hub.notify.queue import Notifications
from hub.notify.sender import Sender
from hub.notify.templates import Templates
from hub.plugins import PluginHost, PluginRecord, await_me_maybe
from hub.store import Store
from hub.store.models import InboxEvent
from hub.store.ops import Catalog, bump_counter, sync_config

log = structlog.get_logger("hub")

# Background tasks cut short at stop: what they were doing is claimed, leased or atomic.
CANCELLED_AT_STOP = frozenset(
    {"audit-schedule", "notification-sender", "campaign-sender", "delivery-reports"}
)


class PluginView:
    """What a plugin is given as ``hub``: the settings, the intake, the deal store's writer
    (``deals``) and a read-only store (``read()``), never the engine itself, so every
    change a plugin makes goes through the writer's guards and events."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    @property
    def settings(self) -> Settings:
        return self._hub.settings

    @property
    def intake(self) -> Intake:
        return self._hub.intake

    @property
    def deals(self) -> DealWriter:
        return self._hub.deals

    @property
    def metrics(self) -> Metrics:
        return self._hub.metrics

    @property
    def attachments(self) -> Attachments:
        return self._hub.attachments

    @property
    def catalog(self) -> Catalog | None:
        return self._hub.catalog

    @property
    def notifications(self) -> Notifications:
        """Turns "tell the owner" into outbox rows (hand them to ``deals`` with their cause)."""
        return self._hub.notifications

    @property
    def campaigns(self) -> CampaignDesk:
        """Where a campaign gateway reports deliveries and opt-outs (a STOP reply)."""
        return self._hub.campaigns

    @asynccontextmanager
    async def read(self) -> AsyncIterator[StoreReader]:
        """A read-only connection: ``await reader.execute(select(...))``."""
        async with self._hub.store.read() as conn:
            yield StoreReader(conn)


class Hub:
    """Everything a plugin may use: ``settings``, ``store``, ``intake``, ``metrics``."""

    def __init__(
        self,
        settings: Settings,
        *,
        plugins: PluginHost | None = None,
        start_workers: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = Store(
            settings.store_url,
            sqlite_synchronous=settings.store.sqlite_synchronous,
            pool_size=settings.store.pool_size,
            echo=settings.store.echo,
        )
        self.intake = Intake(self.store, settings.intake, self.metrics)
        self.attachments = Attachments(settings.attachments_path)
        self.plugins = plugins if plugins is not None else PluginHost(settings)
        self.view = PluginView(self)  # what plugins get as ``hub``
        self.plugins.configure(self.view)  # type: ignore[arg-type]
        self.catalog: Catalog | None = None
        self.notifiers: dict[str, Notifier] = {}
        self.templates = Templates(settings.notification_templates_path)
        self.sender: Sender | None = None
        self.gateways: dict[str, Gateway] = {}
        self.campaign_sender: CampaignSender | None = None
        self.delivery_reports: DeliveryReports | None = None
        self.notifications = Notifications(settings, lambda: self.notifiers, lambda: self.catalog)
        # The only way anything changes deals, contacts, tasks...: see hub/deals/writer.py.
        reacts = bool(self.plugins.pm.hook.hub_react.get_hookimpls())
        self.deals = DealWriter(
            self.store, lambda: self.catalog, self.guard, self.react if reacts else None
        )
        self.campaigns = CampaignDesk(
            self.store, self.deals, settings, lambda: self.gateways, lambda: self.catalog
        )
        self.events_written = asyncio.Event()
        self.start_workers = start_workers
        self.workers: list[Worker] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self.ready = False

    # -- the lead pipeline's collaborators ------------------------------------------------

    def parse_lead(self, *, channel: str, payload: dict[str, Any]) -> Lead | None:
        return self.plugins.pm.hook.hub_parse_lead(channel=channel, payload=payload)

    def intake_handler(self, channel: str) -> Handler | None:
        return self.plugins.pm.hook.hub_intake_handler(channel=channel)

    async def reserve(self, conn: AsyncConnection, counter: str, n: int) -> int:
        """Bump a durable counter without holding its row lock for a whole batch.

        On PostgreSQL the bump commits on its own connection at once, so workers
        in several processes never queue on the counter's row; on SQLite every
        write shares one connection anyway, so it rides on the batch's transaction.
        """
        if self.store.is_sqlite:
            return await bump_counter(conn, counter, n)
        async with self.store.write() as own:
            return await bump_counter(own, counter, n)

    async def guard(
        self, changes: Sequence[Change], actor: Actor, reader: StoreReader
    ) -> list[Refusal]:
        """Every enabled plugin's ``hub_guard`` verdict on a batch, each refusal named by
        the plugin that made it."""
        hook = self.plugins.pm.hook.hub_guard
        impls = hook.get_hookimpls()
        if not impls:
            return []
        given = {"changes": changes, "actor": actor, "store": reader, "hub": self.view}
        refusals: list[Refusal] = []
        for impl in impls:
            name = self.plugins.pm.get_name(impl.plugin) or "guard"
            found = await await_me_maybe(impl.function(**{a: given[a] for a in impl.argnames}))
            for refusal in found or ():
                if not isinstance(refusal, Refusal):
                    raise TypeError(f"hub_guard of {name} returned {refusal!r}, not a Refusal")
                refusals.append(refusal if refusal.guard else replace(refusal, guard=name))
        return refusals

    async def react(
        self, events: list[dict[str, Any]], actor: Actor, reader: StoreReader, depth: int
    ) -> list[Reaction]:
        """Every enabled plugin's ``hub_react`` answer to a written batch's events."""
        hook = self.plugins.pm.hook.hub_react
        given = {
            "events": events,
            "actor": actor,
            "store": reader,
            "hub": self.view,
            "depth": depth,
        }
        reactions: list[Reaction] = []
        for impl in hook.get_hookimpls():
            try:
                found = await await_me_maybe(impl.function(**{a: given[a] for a in impl.argnames}))
                found = list(found or ())
            except Exception:
                # A rule's bug must not cost the write that fired it (a batch of leads): the
                # rule is skipped for this batch and the traceback logged for its author.
                log.exception(
                    "rule_crashed",
                    plugin=self.plugins.pm.get_name(impl.plugin),
                    events=[e["id"] for e in events],
                )
                continue
            for reaction in found:
                if not isinstance(reaction, Reaction):
                    name = self.plugins.pm.get_name(impl.plugin)
                    raise TypeError(f"hub_react of {name} returned {reaction!r}, not a Reaction")
                reactions.append(reaction)
        return reactions

    def _collect_notifiers(self) -> dict[str, Notifier]:
        found: dict[str, Notifier] = {}
        for notifiers in self.plugins.pm.hook.hub_notifiers(hub=self.view):
            for notifier in notifiers or ():
                if not isinstance(notifier, Notifier):
                    raise TypeError(f"hub_notifiers returned {notifier!r}, not a Notifier")
                if notifier.name in found:
                    raise ConfigError(f"two plugins deliver through notifier {notifier.name!r}")
                found[notifier.name] = notifier
        return found

    def _collect_gateways(self) -> dict[str, Gateway]:
        found: dict[str, Gateway] = {}
        for gateways in self.plugins.pm.hook.hub_campaign_gateways(hub=self.view):
            for gateway in gateways or ():
                if not isinstance(gateway, Gateway):
                    raise TypeError(f"hub_campaign_gateways returned {gateway!r}, not a Gateway")
                if gateway.name in found:
                    raise ConfigError(f"two plugins send campaigns as {gateway.name!r}")
                found[gateway.name] = gateway
        return found

    def matchers(self) -> list[Any]:
        """Matchers the enabled plugins add to the built-in ones (``hub_matchers``)."""
        return [
            matcher
            for found in self.plugins.pm.hook.hub_matchers(hub=self.view)
            for matcher in (found or [])
        ]

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.upgrade()
        async with self.store.write() as conn:
            self.catalog = await sync_config(conn, self.settings)
        self.notifiers = self._collect_notifiers()
        self.gateways = self._collect_gateways()
        await self.campaigns.load_key()
        await self.intake.start()
        pipeline = LeadPipeline(
            self.catalog, self.settings, self.reserve, self.deals, self.matchers()
        )
        count = self.settings.intake.workers if not self.store.is_sqlite else 1
        if self.start_workers and self.settings.intake.process:
            for index in range(count):
                worker = Worker(
                    self.store,
                    self.settings.intake,
                    pipeline,
                    self.parse_lead,
                    self.metrics,
                    name=f"worker-{index}",
                    on_commit=self._committed,
                    handler=self.intake_handler,
                )
                self.workers.append(worker)
                self._worker_tasks.append(
                    asyncio.create_task(worker.run(self.intake), name=worker.name)
                )
        await self.plugins.start(self.view, self._plugin_extra_tasks)  # type: ignore[arg-type]
        if self.start_workers and self.notifiers:
            self.sender = Sender(
                self.store,
                self.notifiers,
                self.templates,
                self.settings.notifications,
                self.metrics,
            )
            self._worker_tasks.append(
                asyncio.create_task(self.sender.run(), name="notification-sender")
            )
        if self.start_workers and self.gateways:
            self.campaign_sender = CampaignSender(self.campaigns, self.gateways)
            self._worker_tasks.append(
                asyncio.create_task(self.campaign_sender.run(), name="campaign-sender")
            )
            if self.settings.campaigns.ask_reports_every.total_seconds() > 0:
                self.delivery_reports = DeliveryReports(self.campaigns, self.gateways)
                self._worker_tasks.append(
                    asyncio.create_task(self.delivery_reports.run(), name="delivery-reports")
                )
        every = self.settings.rules.audit_every
        audits = self.plugins.pm.hook.hub_audits.get_hookimpls()
        if self.start_workers and audits and every.total_seconds() > 0:
            self._worker_tasks.append(
                asyncio.create_task(
                    scheduler.every(self.store, "audit", every, lambda: run_audits(self)),
                    name="audit-schedule",
                )
            )
        if self.start_workers:
            for jobs in self.plugins.pm.hook.hub_jobs(hub=self.view):
                for job in jobs or ():
                    self._worker_tasks.append(
                        asyncio.create_task(
                            scheduler.run_job(self.store, job, self.settings.hub.timezone),
                            name=f"job-{job.name}",
                        )
                    )
        self.ready = True
        log.info(
            "hub_started",
            store=self.store.dialect,
            workers=len(self.workers),
            plugins=[r.name for r in self.plugins.active()],
        )

    def _committed(self) -> None:
        self.events_written.set()
        if self.sender is not None:
            self.sender.wake.set()

    def _plugin_extra_tasks(self, record: PluginRecord) -> dict[str, Any]:
        if self.plugins.implements(record, "hub_domain_event"):
            return {"domain-events": lambda: events.deliver(self, record)}
        return {}

    async def stop(self) -> None:
        """Stop accepting, write what was accepted, finish claimed batches, stop plugins."""
        self.ready = False
        await self.intake.stop()
        for worker in self.workers:
            worker.stop()
        self.intake.new_events.set()
        if self.sender is not None:
            self.sender.stop()  # sends in flight are cut off; their leases resolve them
        if self.campaign_sender is not None:
            self.campaign_sender.stop()
        if self.delivery_reports is not None:
            self.delivery_reports.stop()
        for task in self._worker_tasks:
            if task.get_name() in CANCELLED_AT_STOP or (task.get_name().startswith("job-")):
                task.cancel()  # a job is cut short; its slot was claimed, its changes atomic
        if self._worker_tasks:
            await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        self._worker_tasks.clear()
        self.workers.clear()
        await self.plugins.stop(self.view)  # type: ignore[arg-type]
        await self.store.close()
        log.info("hub_stopped")

    async def queue_depth(self) -> dict[str, int]:
        inbox = InboxEvent.__table__
        async with self.store.read() as conn:
            rows = await conn.execute(
                select(inbox.c.status, func.count())
                .where(inbox.c.status.in_(["pending", "dead"]))
                .group_by(inbox.c.status)
            )
            return dict(rows.all())
