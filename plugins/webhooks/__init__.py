"""Outgoing webhooks, as the Standard Webhooks specification describes them.

Every domain event the writer writes (``deal.created``, ``deal.won``, ``task.created``...)
is queued in the notification outbox for each enabled endpoint subscribed to its type,
in the transaction that wrote the event (``hub_react``): a webhook goes out for every
committed event and for none that was rolled back. The hub's sender delivers each row
through this plugin's ``webhooks`` notifier (``hub_notifiers``), signed, and retried with
backoff for ``retry_for``. An endpoint answering ``410 Gone``, or failing without a
success for ``disable_after``, is disabled; :meth:`Webhooks.status` says which.

The body is ``{"type": "deal.created", "timestamp": "...Z", "data": {"id": 7, "subject":
"deal", ...the event's fields}}``; its ``webhook-id`` is the same on every attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from hub.context import Hub
from hub.deals import Reaction
from hub.deals.changes import QueueNotification
from hub.hookspecs import hookimpl
from hub.notify import Notifier
from hub.plugins import PluginNotReady
from hub.store.types import utcnow
from plugins.webhooks.config import WebhooksConfig
from plugins.webhooks.delivery import WebhookNotifier
from plugins.webhooks.health import NOTIFIER, Health
from plugins.webhooks.subscriptions import Subscriptions, webhook_body

RULE = "webhooks"

log = structlog.get_logger("plugins.webhooks")


class Webhooks:
    """Standard Webhooks to the configured endpoints, one per domain event."""

    Config = WebhooksConfig

    def __init__(self, config: WebhooksConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.subscriptions = Subscriptions(config.endpoints)
        self.health = Health(
            [e.name for e in config.endpoints],
            config.disable_after,
            {e.name: e.enabled_since for e in config.endpoints if e.enabled_since},
        )
        self.notifier = WebhookNotifier(config, self.health)

    # -- hooks ----------------------------------------------------------------------------

    @hookimpl
    async def hub_startup(self) -> None:
        try:
            async with self.hub.read() as store:
                await self.health.load(store, utcnow())
        except (SQLAlchemyError, OSError) as error:
            raise PluginNotReady(f"cannot read the outbox: {error}") from error
        for state in self.status():
            if state["state"] == "failing":
                log.warning(
                    "webhook_endpoint_failing",
                    endpoint=state["name"],
                    failing_since=state["failing_since"].isoformat(),
                )

    @hookimpl
    async def hub_shutdown(self) -> None:
        await self.notifier.close()

    @hookimpl
    def hub_notifiers(self) -> list[Notifier]:
        return [self.notifier]

    @hookimpl
    def hub_react(self, events: Sequence[dict[str, Any]]) -> list[Reaction]:
        # Synchronous and without queries: this runs inside the writer's transaction for
        # every batch, hundreds of events at a time from the lead pipeline.
        if not self.subscriptions:
            return []
        changes: list[QueueNotification] = []
        for event in events:
            endpoints = self.subscriptions.endpoints_for(event["type"])
            if not endpoints:
                continue
            body = webhook_body(event)
            deal_id = (
                event["subject_id"]
                if event["subject"] == "deal"
                else event["payload"].get("deal_id")
            )
            for name in endpoints:
                changes.append(
                    QueueNotification(
                        key=f"webhook:{name}:{event['id']}",
                        notifier=NOTIFIER,
                        address=name,
                        template=None,
                        context=body,
                        event_type=event["type"],
                        deal_id=deal_id,
                    )
                )
        # One reaction for the whole batch: one savepoint and one insert, not one per event.
        return [Reaction(rule=RULE, changes=changes)] if changes else []

    # -- for the hub's commands -------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Each endpoint: ``name``, ``url``, ``state`` (ok | failing | disabled),
        ``failing_since``, ``last_error`` and, when disabled, the ``reason``."""
        return self.notifier.status()
