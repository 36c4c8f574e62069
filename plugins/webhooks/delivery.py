"""Delivering one webhook: signed as Standard Webhooks says, posted, and its answer judged.

- ``webhook-id``: the same on every attempt of a notification (from its idempotency key),
  so a receiver drops repeats; that is why an interrupted send is simply sent again.
- ``webhook-timestamp``: this attempt's time, in seconds.
- ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body`` with
  the endpoint's secret (the bytes its ``whsec_`` base64 stands for).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import timedelta
from typing import Any

import aiohttp
from yarl import URL

from hub.notify import Message, Recipient, RetryLater, Sent, Undeliverable
from hub.retry_after import retry_after
from hub.store.types import utcnow
from plugins.webhooks.config import Endpoint, WebhooksConfig, secret_bytes
from plugins.webhooks.health import GONE, NOTIFIER, REFUSED, Health
from plugins.webhooks.subscriptions import encode, jsonable

USER_AGENT = "crm-hub"
EXCERPT = 200  # characters of a refusing receiver's answer kept as the reason


def webhook_id(key: str) -> str:
    """``msg_`` and 32 characters derived from the notification's key: stable, no dots."""
    digest = hashlib.sha256(key.encode()).digest()[:20]
    return "msg_" + base64.b32encode(digest).decode().lower()


def signature(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(signed.digest()).decode()


class WebhookNotifier:
    """The ``webhooks`` notifier: delivers outbox rows to the configured endpoints."""

    name = NOTIFIER
    # The receiver drops a repeated webhook-id, so a send cut off by a crash is sent again.
    resend_interrupted = True

    def __init__(self, config: WebhooksConfig, health: Health) -> None:
        self.config = config
        self.retry_for = config.retry_for
        self.concurrency = config.concurrency
        self.health = health
        self.endpoints: dict[str, Endpoint] = {e.name: e for e in config.endpoints}
        self._keys = {e.name: secret_bytes(e.secret.get_secret_value()) for e in config.endpoints}
        self._timeout = aiohttp.ClientTimeout(total=config.timeout.total_seconds())
        self._session: aiohttp.ClientSession | None = None

    def address(self, recipient: Recipient) -> str | None:
        endpoint = self.endpoints.get(recipient.name or "")
        return endpoint.name if endpoint is not None and endpoint.enabled else None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT},
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self.concurrency),
            )
        return self._session

    async def send(self, message: Message) -> Sent:
        endpoint = self.endpoints.get(message.address)
        if endpoint is None:
            raise Undeliverable(f"no endpoint {message.address!r} in [plugins.webhooks]")
        if not endpoint.enabled:
            raise Undeliverable(f"{REFUSED}{endpoint.name!r} has enabled = false")
        refused = self.health.refusal(endpoint.name, utcnow())
        if refused is not None:
            raise Undeliverable(refused)
        msg_id = webhook_id(message.key)
        body = encode(message.data or _rendered(message))
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self._keys[endpoint.name], msg_id, timestamp, body),
        }
        status: int | None = None
        after: timedelta | None = None
        try:
            # Redirects are not followed: the spec counts a 3xx as a failure (fix the URL).
            async with self._client().post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    self.health.succeeded(endpoint.name)
                    return Sent(provider_id=msg_id)
                status = response.status
                reason = await _reason(response)
                after = retry_after(response.headers.get("Retry-After"), utcnow(), self.retry_for)
        except TimeoutError:
            reason = f"no answer within {self.config.timeout.total_seconds():g}s"
        except aiohttp.ClientError as error:
            reason = f"cannot connect: {type(error).__name__}: {error}"[:EXCERPT]
        if status == 410:
            # The receiver wants no more webhooks from us: the spec says disable the endpoint.
            reason = f"{GONE}: the endpoint asked for no more webhooks ({reason})"
            self.health.failed(endpoint.name, reason, utcnow())
            self.health.disable(endpoint.name, reason)
            raise Undeliverable(reason)
        # Every other answer, 4xx included, is retried. The spec counts anything but 2xx as
        # a failure to retry on a schedule spanning days, and names 410 alone as "stop": a
        # 404, 401 or 400 from a webhook receiver is nearly always its own deploy or config
        # mistake (a renamed route, a rotated secret), fixed within hours, and the events
        # sent meanwhile must not be lost. An endpoint that never recovers is disabled by
        # disable_after, and each row gives up after retry_for.
        self.health.failed(endpoint.name, reason, utcnow())
        raise RetryLater(reason, after=after)

    def status(self) -> list[dict[str, Any]]:
        """Each endpoint's state for ``hub notifications endpoints``."""
        out = []
        for endpoint in self.config.endpoints:
            state = self.health.status(endpoint.name)
            if not endpoint.enabled:
                state = {**state, "state": "disabled", "reason": "enabled = false in the config"}
            out.append({"name": endpoint.name, "url": _shown(endpoint.url), **state})
        return out


def _shown(url: str) -> str:
    """The address without what may be a credential in it (user, password, query)."""
    return str(URL(url).with_user(None).with_query(None))


def _rendered(message: Message) -> dict[str, Any]:
    """The body of a notification a template rendered (a rule's "via webhooks")."""
    return jsonable(
        {
            "type": message.event_type or "notification",
            "timestamp": message.created_at or utcnow(),
            "data": {"title": message.subject, "text": message.text, "link": message.link},
        }
    )


async def _reason(response: aiohttp.ClientResponse) -> str:
    """The status and the start of what the receiver said, for the outbox's last_error."""
    reason = f"{response.status} {response.reason or ''}".strip()
    try:
        raw = await response.content.read(EXCERPT * 4)
    except (aiohttp.ClientError, TimeoutError):
        return reason
    said = " ".join(raw.decode("utf-8", "replace").split())[:EXCERPT]
    return f"{reason}: {said}" if said else reason
