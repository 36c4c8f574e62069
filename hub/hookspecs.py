"""Every hook a crm-hub plugin can implement, in one place.

A plugin is a class registered under the ``crm_hub`` entry-point group (the
built-in ones in ``plugins/`` are registered the same way, in this project's
``pyproject.toml``)::

    [project.entry-points.crm_hub]
    my_channel = "my_package.plugin:MyChannel"

The class may declare ``Config``, a pydantic model validating its section
``[plugins.my_channel]`` of the hub's configuration (``enabled`` is handled by the
host and is not passed on). The host builds one instance per enabled plugin as
``MyChannel(config, hub)``, where ``hub`` is the :class:`hub.context.PluginView`:
the settings, the intake, the deal store's writer (``hub.deals``) and a read-only
store (``hub.read()``); it registers the instance with pluggy. Methods marked
``@hookimpl`` are the plugin's hooks; each may take any subset of the arguments
named in its specification below.

A hook may be ``async def`` or return an awaitable; the host awaits results.
Hooks called with ``firstresult`` (one answer wins) must decline by returning
``None`` synchronously: an ``async def`` returns a coroutine, which is never None.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from hub.campaigns.gateway import Gateway
    from hub.context import Hub
    from hub.deals import Actor, Change, Reaction, Refusal, StoreReader
    from hub.domain.lead import Lead
    from hub.intake.handlers import Handler
    from hub.notify import Notifier
    from hub.scheduler import Job

PROJECT = "crm_hub"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# A background task: an async function run until it returns, restarted with backoff
# when it raises, and cancelled at shutdown.
BackgroundTask = Callable[[], Awaitable[None]]


@hookspec
def hub_routes(hub: Hub) -> list[web.RouteDef] | None:
    """Return the HTTP routes this plugin serves, e.g. ``[web.post("/forms/{id}", h)]``.

    Called once while the application is assembled. While the plugin is not
    running (failed or restarting) its routes answer ``503`` with the reason.
    """


@hookspec
def hub_startup(hub: Hub) -> Awaitable[None] | None:
    """Open what the plugin needs (connections, clients); called before it serves.

    Say why it cannot start by raising one of the failures of :mod:`hub.plugins`:

    - ``PluginNotReady("imap.example.ru:993 refused")``: something it needs is not
      there yet; the plugin is ``not_ready`` and this hook is called again with
      backoff (5 s, 10 s, 20 s ... 5 min).
    - ``PluginAuthFailed(...)`` / ``PluginConfigError(...)``: its credentials were
      refused / its settings cannot work; the plugin is ``auth_failed`` /
      ``config_error`` for good, not retried until the daemon restarts.

    Any other exception is logged with its traceback and retried like
    ``PluginNotReady`` (state ``failed``). A call still running after
    ``hub.plugin_startup_timeout`` (30 s) is cancelled and counts as not ready.
    Every reason is shown by ``hub plugins`` and ``/readyz``; the daemon and the
    other plugins go on.
    """


@hookspec
def hub_shutdown(hub: Hub) -> Awaitable[None] | None:
    """Close what :func:`hub_startup` opened; called once at shutdown after tasks stop."""


@hookspec
def hub_stopping(hub: Hub) -> Awaitable[None] | None:
    """The daemon is stopping: end long-lived responses now (an event stream, a long poll).

    Called when the HTTP server begins to shut down, before it waits (up to
    ``hub.shutdown_timeout``) for the requests still running, so a stream that never
    ends by itself does not hold the daemon up. :func:`hub_shutdown` comes after.
    """


@hookspec
def hub_background_tasks(hub: Hub) -> dict[str, BackgroundTask] | None:
    """Return named long-running tasks (an IMAP poller, a campaign sender).

    Each runs after a successful :func:`hub_startup`. A task that raises is logged,
    the plugin is marked failed, and the task is started again with backoff.
    """


@hookspec(firstresult=True)
def hub_parse_lead(channel: str, payload: dict[str, Any]) -> Lead | None:
    """Turn a stored inbox event of ``channel`` into a :class:`hub.domain.lead.Lead`.

    Called by the intake worker for every accepted event. Return ``None`` for a
    channel this plugin does not own. Raising marks the event failed; it is
    retried with backoff and, after ``intake.max_attempts``, kept as dead for
    ``hub inbox replay``.
    """


@hookspec(firstresult=True)
def hub_intake_handler(channel: str) -> Handler | None:
    """Handle the stored events of ``channel`` yourself, not as leads: return a
    :class:`hub.intake.handlers.Handler` (``async handle(event) -> result``).

    For channels whose events are not requests from a client (a call's states, a
    delivery report). The intake worker calls the handler for each event of the
    channel, in the batch's transaction and a savepoint of its own; raising fails
    that event (retried with backoff, then dead). Return ``None`` for a channel this
    plugin does not own; a channel nobody handles goes to ``hub_parse_lead``.
    """


@hookspec
def hub_domain_event(event: dict[str, Any], hub: Hub) -> Awaitable[None] | None:
    """React to a domain event (``deal.created``, ``task.created``, ...) after its commit.

    ``event`` has ``id``, ``type``, ``subject``, ``subject_id``, ``payload`` and
    ``occurred_at``. Each plugin gets every event in order, at least once: the
    host keeps a cursor per plugin and calls again, with backoff, an event whose
    handler raised. Make the handler idempotent by ``event["id"]``.
    """


@hookspec
def hub_matchers(hub: Hub) -> list[Any] | None:
    """Return extra matchers for deciding whether a lead is a known contact.

    A matcher has a ``name`` and ``evidence(lead, candidate)`` returning a list of
    :class:`hub.domain.matching.Evidence` (a weight and a readable reason), each added
    as one more partial weight to the built-in Fellegi–Sunter comparison, which always
    runs. Candidates are contacts sharing a phone or email with the lead (a scan also
    blocks on names). Called once at start-up.
    """


@hookspec
def hub_guard(
    changes: Sequence[Change], actor: Actor, store: StoreReader, hub: Hub
) -> Iterable[Refusal] | Awaitable[Iterable[Refusal]] | None:
    """Look at a batch of changes before the deal store writes any of it; refuse what breaks a rule.

    Called by :class:`hub.deals.DealWriter` for every batch on every write path (API,
    CLI, import, merge, the lead pipeline, other plugins), inside the batch's
    transaction, so ``store`` (read-only) shows the store as the batch will find it.
    ``changes`` are the typed change objects of :mod:`hub.deals.changes`, ``actor``
    who asked for them (:class:`hub.deals.Actor`: a user, a token, a plugin, the lead
    pipeline, an import, a rule).

    Return (or yield) :class:`hub.deals.Refusal` objects, each naming the change it
    refuses and a reason a manager can read ("Stage 'Договор' needs: amount"). Any
    refusal from any guard refuses the whole batch: nothing is written, and the
    caller gets every reason of every guard at once. Return nothing to allow.
    """


@hookspec
def hub_audits(hub: Hub) -> list[Any] | None:
    """Return audits: checks of the whole store run on demand (``hub rules audit``) and on a
    schedule.

    An audit has ``name``, ``severity`` (red or yellow) and ``async find(store, now, hub)``
    returning :class:`hub.audit.Finding` objects (what breaks the rule, whose it is, why),
    found with SQL over ``store`` (read-only), or a :class:`hub.audit.Found` (one SELECT the
    hub compares with the open violations in the database: for big stores). The hub keeps
    each finding as a violation from first seen until it is no longer found, so it is
    reported once and its age is known; each is written through the writer with its event
    (``task.overdue``, ``deal.stale``, ``rule.violated``, and ``rule.resolved`` when it
    clears).
    """


@hookspec
def hub_react(
    events: Sequence[dict[str, Any]], actor: Actor, store: StoreReader, hub: Hub, depth: int
) -> Iterable[Reaction] | Awaitable[Iterable[Reaction]] | None:
    """Answer domain events with changes, in the transaction that wrote them.

    Called by the writer after every batch it writes, on every write path, with the
    batch's events as dicts (``id``, ``type``, ``subject``, ``subject_id``, ``payload``
    with ``actor`` and ``v``, ``occurred_at``), who caused them and a read-only
    ``store`` that shows the batch written. Return :class:`hub.deals.Reaction` objects
    (a rule's name and its changes: a task, a stage move, a
    :class:`~hub.deals.changes.QueueNotification`...). Each reaction is written through
    the writer as the actor ``rule:NAME``, guards included, in a savepoint: a reaction
    the guards refuse is dropped and logged (``rule_refused``), and the write that fired
    it stands; so is a hook or a reaction that raises (``rule_crashed``, with its
    traceback). Reactions cause events that are reacted to in turn, ``depth`` counting
    the steps; past :data:`hub.deals.writer.MAX_REACTION_DEPTH` the chain is cut and
    logged (``rule_depth_exceeded``). Keep this fast: it runs inside the writer's
    transaction, and for the lead pipeline on batches of hundreds of events.
    """


@hookspec
def hub_notifiers(hub: Hub) -> list[Notifier] | None:
    """Return the notifiers this plugin delivers through (:class:`hub.notify.Notifier`).

    Called once at start-up. A notifier's ``name`` is what rules write in ``via``;
    the hub's sender delivers the outbox's rows through it (see :mod:`hub.notify`).
    """


@hookspec
def hub_jobs(hub: Hub) -> list[Job] | None:
    """Return jobs to run on a schedule (:class:`hub.scheduler.Job`): every N minutes, or
    daily at a local time (a digest at 09:00 Moscow time).

    Called once at start-up. With several hub processes on one store exactly one runs
    each slot of each job; a slot missed while the hub was down runs once at start-up.
    A job changes the store through ``hub.deals`` like anything else.
    """


@hookspec
def hub_campaign_gateways(hub: Hub) -> list[Gateway] | None:
    """Return the gateways this plugin sends campaign messages through
    (:class:`hub.campaigns.gateway.Gateway`: SMS providers, an SMTP account).

    Called once at start-up. A campaign names its gateway, or takes the first one for its
    channel; the hub's campaign sender claims the outbox's rows at the gateway's ``rate``
    and hands each to ``send``. Delivery reports and replies come back through
    ``hub.campaigns`` (:class:`hub.campaigns.gateway.CampaignDesk`).
    """
