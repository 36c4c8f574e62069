"""Asterisk calls from its manager interface (AMI, TCP port 5038), as call events.

The plugin logs in to Asterisk (``[plugins.telephony_ami]`` host, port, username, secret:
a ``manager.conf`` user with ``read = call,agent,system``), follows the Asterisk 13+ events
of every call (:mod:`plugins.telephony_ami.tracker`: Newchannel, DialBegin, DialEnd,
BridgeEnter, Hangup, transfers; the ``Linkedid`` is the call's id) and stores each state a
call reaches as a :class:`plugins.telephony.calls.CallEvent` through
:func:`plugins.telephony.calls.accept_call`: ``ringing`` for each extension that rings,
``answered``, and one final ``ended`` or ``missed`` when the call's last channel hangs up.

Connection. ``hub_startup`` tries one connection within ``connect_timeout``: a refused
Login is :class:`hub.plugins.PluginAuthFailed` (shown by ``hub plugins``, not retried); an
unreachable PBX is only logged, and start-up goes on. The background task ``ami`` keeps
the session: on a dropped connection, a reset, or a Ping unanswered within
``ping_interval``, it logs ``ami_reconnecting`` with the reason and the wait, and connects
again after ``reconnect_min`` doubling up to ``reconnect_max``, each wait drawn from its
upper half (jitter), the doubling reset after a session that lasted ``reconnect_max``. A
Login refused on a reconnect (the secret changed on the PBX) is logged as
``ami_auth_failed`` and tried again every ``reconnect_max``, never faster. Every change is
one log line, ``ami_connected`` / ``ami_reconnecting`` / ``ami_auth_failed``, and
:attr:`AsteriskAmi.state` / :attr:`AsteriskAmi.reason`.

Catching up. The calls in progress are kept in memory across reconnects. AMI keeps no
backlog, so after each Login the plugin asks ``CoreShowChannels`` for the channels that
exist now: a channel it knew before the request that the PBX no longer has hung up while
it was not listening; a call left without channels gets its final event then, ``ended``
(with ``duration`` counted to now) if it had been answered, else ``missed``, both with
``reason = "hangup_not_seen"`` unless a failed dial gave a better one. Events a new
session shows again (a proxy that replays, Asterisk re-sending) create nothing twice:
the tracker emits each state once per call and ignores the events of calls it finished,
and the intake is idempotent on provider, Linkedid and state. A call that began and
ended entirely while disconnected is not seen (AMI cannot tell; the CDR can).

Why not panoramisk (1.4, the asyncio AMI client in pyproject): its reconnect is a fixed
whole-second ``call_later`` outside any task, with no backoff or jitter, that also
reconnects at once after a refused Login (spinning against the PBX); it decodes each TCP
segment on its own with ``errors="ignore"``, dropping a Cyrillic caller name split across
segments; and it runs async event callbacks with ``ensure_future``, so their order, which
a call's state depends on, is not kept. The client here (:mod:`.connection`,
:mod:`.protocol`) is small, on ``asyncio.open_connection``; panoramisk is not imported.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from hub.context import Hub
from hub.hookspecs import hookimpl
from hub.intake.accept import IntakeClosed, UnstorableEvent
from hub.plugins import PluginAuthFailed
from hub.store.types import utcnow
from plugins.telephony.calls import CallEvent, accept_call
from plugins.telephony_ami.config import AmiConfig
from plugins.telephony_ami.connection import AmiConnection, AuthRefused, ConnectionLost
from plugins.telephony_ami.protocol import Message, ProtocolError
from plugins.telephony_ami.tracker import CallsInProgress

log = structlog.get_logger("plugins.telephony_ami")

__all__ = ["AmiConfig", "AsteriskAmi"]

STORE_RETRY_MAX = 30.0  # seconds between attempts to store a call event while the store fails


class AsteriskAmi:
    """Calls of an Asterisk PBX, followed over its manager interface."""

    Config = AmiConfig

    def __init__(self, config: AmiConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.calls = CallsInProgress(config)
        # starting | connected | reconnecting | auth_failed, and why (None when connected)
        self.state = "starting"
        self.reason: str | None = None
        self.sessions = 0  # logins that succeeded
        self._connection: AmiConnection | None = None
        self._lock = asyncio.Lock()  # one event (or catch-up) at a time changes the calls

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # -- hooks ----------------------------------------------------------------------------

    @hookimpl
    async def hub_startup(self) -> None:
        try:
            self._connection = await self._connect()
        except AuthRefused as error:
            self._set_state("auth_failed", str(error))
            raise PluginAuthFailed(
                f"Asterisk at {self.address} refused the login of {self.config.username!r} "
                f"({error}): check [plugins.telephony_ami] username and secret against "
                "manager.conf"
            ) from None
        except (OSError, TimeoutError, ProtocolError, ConnectionLost) as error:
            # The PBX may come up later: the background task keeps trying.
            self._set_state("reconnecting", _describe(error))

    @hookimpl
    def hub_background_tasks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return {"ami": self.follow}

    @hookimpl
    async def hub_shutdown(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # -- the session ----------------------------------------------------------------------

    async def follow(self) -> None:
        """Keep a session open and follow its events, reconnecting with backoff; forever."""
        failures = 0
        while True:
            connection, self._connection = self._connection, None
            began = time.monotonic()
            try:
                if connection is None:
                    connection = await self._connect()
                self._connection = connection
                await self._session(connection)
            except AuthRefused as error:
                delay = self.config.reconnect_max.total_seconds()
                self._set_state("auth_failed", str(error), retry_in=round(delay, 3))
            except (OSError, TimeoutError, ProtocolError, ConnectionLost) as error:
                if time.monotonic() - began >= self.config.reconnect_max.total_seconds():
                    failures = 0  # it was up for a good while: start the backoff again
                failures += 1
                delay = self._backoff(failures)
                self._set_state("reconnecting", _describe(error), retry_in=round(delay, 3))
            finally:
                if connection is not None:
                    connection.close()
                self._connection = None
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        low = self.config.reconnect_min.total_seconds()
        high = self.config.reconnect_max.total_seconds()
        delay = min(high, low * 2 ** (failures - 1))
        return random.uniform(delay / 2, delay)

    async def _connect(self) -> AmiConnection:
        timeout = self.config.connect_timeout.total_seconds()
        connection = await AmiConnection.open(self.config.host, self.config.port, timeout)
        try:
            await connection.login(
                self.config.username,
                self.config.secret.get_secret_value(),
                self.config.events,
                timeout,
            )
        except BaseException:
            connection.close()
            raise
        self.sessions += 1
        self._set_state("connected", None, banner=connection.banner)
        return connection

    async def _session(self, connection: AmiConnection) -> None:
        known = self.calls.known_channels()  # before anything this session says
        helpers = [
            asyncio.create_task(self._catch_up(connection, known), name="ami-catch-up"),
            asyncio.create_task(self._ping(connection), name="ami-ping"),
        ]
        try:
            await connection.run(self._on_event)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _on_event(self, message: Message) -> None:
        async with self._lock:
            try:
                events = self.calls.handle(message, utcnow())
            except Exception:
                # One odd event must not end the session; the calls it touched go on.
                log.exception("ami_event_not_understood", ami_event=message.event)
                return
            await self._store(events)

    async def _catch_up(self, connection: AmiConnection, known: set[str]) -> None:
        """Finish the calls whose channels hung up while we were not listening."""
        if not known:
            return
        try:
            response, items = await connection.action(
                {"Action": "CoreShowChannels"},
                complete_event="CoreShowChannelsComplete",
                timeout=self.config.ping_interval.total_seconds(),
            )
        except (TimeoutError, ConnectionLost, OSError) as error:
            log.warning("ami_catch_up_failed", reason=_describe(error))
            return
        if response.response.lower() != "success":
            log.warning(
                "ami_catch_up_refused",
                reason=response.get("Message") or response.response,
                hint="the manager user needs read = system or reporting for CoreShowChannels",
            )
            return
        alive = {item.get("Uniqueid") for item in items if item.get("Uniqueid")}
        async with self._lock:
            events = self.calls.reap(known, alive, utcnow())
            log.info(
                "ami_caught_up",
                channels_known=len(known),
                channels_alive=len(alive & known),
                calls_finished=len(events),
            )
            await self._store(events)

    async def _ping(self, connection: AmiConnection) -> None:
        interval = self.config.ping_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await connection.action({"Action": "Ping"}, timeout=interval)
            except TimeoutError:
                connection.close(f"no answer to Ping within {interval:g}s")
                return
            except (ConnectionLost, OSError):
                return

    # -- storing --------------------------------------------------------------------------

    async def _store(self, events: list[CallEvent]) -> None:
        for event in events:
            delay = 0.1
            while True:
                try:
                    accepted = await accept_call(self.hub.intake, event)
                except IntakeClosed:
                    log.warning(
                        "ami_call_not_stored",
                        call_id=event.call_id,
                        state=event.state,
                        reason="the hub is shutting down",
                    )
                    return
                except UnstorableEvent as error:
                    log.error(
                        "ami_call_not_stored",
                        call_id=event.call_id,
                        state=event.state,
                        reason=str(error),
                    )
                    break
                except Exception as error:
                    # The store is down: hold the events (and the PBX's stream) until it is back.
                    log.warning(
                        "ami_store_failed",
                        call_id=event.call_id,
                        state=event.state,
                        reason=_describe(error),
                        retry_in=delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(STORE_RETRY_MAX, delay * 2)
                    continue
                log.info(
                    "ami_call",
                    call_id=event.call_id,
                    state=event.state,
                    direction=event.direction,
                    extension=event.extension,
                    duplicate=accepted.duplicate,
                )
                break

    # -- state ----------------------------------------------------------------------------

    def _set_state(self, state: str, reason: str | None, **extra: Any) -> None:
        self.state, self.reason = state, reason
        fields = {"host": self.config.host, "port": self.config.port, **extra}
        if state == "connected":
            log.info("ami_connected", **fields)
        elif state == "auth_failed":
            log.error("ami_auth_failed", reason=reason, username=self.config.username, **fields)
        else:
            log.warning("ami_reconnecting", reason=reason, **fields)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return "timed out"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
