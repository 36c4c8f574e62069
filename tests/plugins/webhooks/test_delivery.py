"""The ``webhooks`` notifier: what it posts, how a receiver verifies it, and how each answer
is taken (Standard Webhooks' "Delivery success and failure")."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError
from structlog.testing import capture_logs

from hub.notify import Notifier, Recipient, RetryLater, Sent, Undeliverable
from hub.retry_after import retry_after
from hub.store.types import utcnow
from plugins.webhooks.delivery import webhook_id
from tests.plugins.webhooks.conftest import (
    OTHER_SECRET,
    SECRET,
    endpoint,
    make_plugin,
    message,
)


async def test_send_posts_the_json_body_signed_so_the_reference_package_verifies_it(receiver):
    plugin = make_plugin(endpoint(url=receiver.url))
    sent_message = message()
    try:
        sent = await plugin.notifier.send(sent_message)
    finally:
        await plugin.notifier.close()

    assert isinstance(sent, Sent)
    assert receiver.rejected == []
    [delivery] = receiver.deliveries
    assert delivery["json"] == sent_message.data  # verified and parsed by standardwebhooks
    assert delivery["body"] == orjson.dumps(sent_message.data)  # minified, as signed
    headers = delivery["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "crm-hub"
    assert headers["webhook-id"] == webhook_id(sent_message.key) == sent.provider_id
    assert abs(int(headers["webhook-timestamp"]) - utcnow().timestamp()) < 5
    assert headers["webhook-signature"].startswith("v1,")


def test_the_notifier_meets_the_hub_s_notifier_contract():
    plugin = make_plugin(endpoint(), retry_for="4d", concurrency=3)
    notifier = plugin.notifier
    assert isinstance(notifier, Notifier)
    assert notifier.name == "webhooks"
    assert notifier.resend_interrupted is True  # the receiver drops a repeated webhook-id
    assert notifier.retry_for == timedelta(days=4)
    assert notifier.concurrency == 3


async def test_a_delivery_verified_with_another_secret_is_rejected(receiver):
    receiver.secret = OTHER_SECRET
    plugin = make_plugin(endpoint(url=receiver.url))
    try:
        with pytest.raises(RetryLater, match="401"):
            await plugin.notifier.send(message())
    finally:
        await plugin.notifier.close()
    assert receiver.deliveries == []
    assert receiver.rejected == ["No matching signature found"]


async def test_a_body_changed_in_transit_fails_verification(receiver):
    plugin = make_plugin(endpoint(url=receiver.url))
    try:
        await plugin.notifier.send(message())
    finally:
        await plugin.notifier.close()
    [delivery] = receiver.deliveries
    Webhook(SECRET).verify(delivery["body"], delivery["headers"])  # as it came: fine
    tampered = delivery["body"].replace(b"1500.50", b"9500.50")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, delivery["headers"])


async def test_the_same_key_gives_the_same_webhook_id_on_every_attempt(receiver):
    receiver.answers = [web.Response(status=500)]
    plugin = make_plugin(endpoint(url=receiver.url))
    try:
        with pytest.raises(RetryLater):
            await plugin.notifier.send(message(key="webhook:crm:41"))
        await plugin.notifier.send(message(key="webhook:crm:41"))
        await plugin.notifier.send(message(key="webhook:crm:42"))
    finally:
        await plugin.notifier.close()
    first, retry, other = receiver.webhook_ids
    assert first == retry
    assert other != first
    assert first.startswith("msg_") and "." not in first  # the spec forbids dots in the id
    assert webhook_id("webhook:crm:41") == first  # derived from the key alone: any process


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_a_server_error_is_retried_later(receiver, status):
    receiver.answers = [web.Response(status=status, text="down for maintenance")]
    plugin = make_plugin(endpoint(url=receiver.url))
    try:
        with pytest.raises(RetryLater) as retry:
            await plugin.notifier.send(message())
    finally:
        await plugin.notifier.close()
    assert retry.value.reason.startswith(str(status))
    assert "down for maintenance" in retry.value.reason  # what the receiver said is kept
    assert retry.value.after is None  # the sender's backoff decides
    assert plugin.status()[0]["state"] == "failing"


async def test_a_receiver_slower_than_the_timeout_is_retried_later(receiver):
    receiver.delay = 3
    plugin = make_plugin(endpoint(url=receiver.url), timeout="1s")
    try:
        with pytest.raises(RetryLater, match="no answer within 1s"):
            await plugin.notifier.send(message())
    finally:
        await plugin.notifier.close()


async def test_a_refused_connection_is_retried_later():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plugin = make_plugin(endpoint(url=f"http://127.0.0.1:{port}/hooks"))
    try:
        with pytest.raises(RetryLater, match="cannot connect"):
            await plugin.notifier.send(message())
    finally:
        await plugin.notifier.close()


async def test_429_with_retry_after_is_retried_after_the_delay_the_receiver_asked_for(receiver):
    receiver.answers = [web.Response(status=429, headers={"Retry-After": "120"})]
    plugin = make_plugin(endpoint(url=receiver.url))
    try:
        with pytest.raises(RetryLater) as retry:
            await plugin.notifier.send(message())
    finally:
        await plugin.notifier.close()
    assert retry.value.after == timedelta(seconds=120)


def test_retry_after_is_read_as_seconds_or_a_date_and_capped():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    longest = timedelta(days=3)
    assert retry_after("30", now, longest) == timedelta(seconds=30)
    assert retry_after("Wed, 25 Nov 2026 12:05:00 GMT", now, longest) == timedelta(minutes=5)
    assert retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now, longest) == timedelta(0)
    assert retry_after("99999999", now, longest) == longest
    assert retry_after("soon", now, longest) is None
    assert retry_after(None, now, longest) is None


async def test_410_gone_is_undeliverable_and_disables_the_endpoint(receiver):
    receiver.answers = [web.Response(status=410)]
    plugin = make_plugin(endpoint(url=receiver.url), endpoint("other", url=receiver.url))
    try:
        with capture_logs() as logs, pytest.raises(Undeliverable, match="410 Gone"):
            await plugin.notifier.send(message())
        with pytest.raises(Undeliverable, match="410 Gone"):
            await plugin.notifier.send(message(key="webhook:crm:2"))
        await plugin.notifier.send(message(key="webhook:other:1", address="other"))
    finally:
        await plugin.notifier.close()
    assert len(receiver.webhook_ids) == 2  # the second webhook to crm was never posted
    states = {s["name"]: s for s in plugin.status()}
    assert states["crm"]["state"] == "disabled"
    assert states["crm"]["reason"].startswith("410 Gone")
    assert states["other"]["state"] == "ok"
    assert [e["endpoint"] for e in logs if e["event"] == "webhook_endpoint_disabled"] == ["crm"]


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_4xx_answers_are_retried_later_not_given_up(receiver, status):
    receiver.answers = [web.Response(status=status)]
    plugin = make_plugin(endpoint(url=receiver.url))
    try:
        with pytest.raises(RetryLater, match=str(status)):
            await plugin.notifier.send(message())
        await plugin.notifier.send(message())  # the receiver fixed its side
    finally:
        await plugin.notifier.close()
    assert plugin.status()[0]["state"] == "ok"


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(receiver, aiohttp_server):
    app = web.Application()

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(receiver.url)

    app.router.add_post("/old", moved)
    server = await aiohttp_server(app)
    plugin = make_plugin(endpoint(url=str(server.make_url("/old"))))
    try:
        with pytest.raises(RetryLater, match="308"):
            await plugin.notifier.send(message())
    finally:
        await plugin.notifier.close()
    assert receiver.deliveries == []


async def test_an_endpoint_failing_for_disable_after_is_disabled_and_logged(receiver):
    receiver.answers = [web.Response(status=503)]
    plugin = make_plugin(endpoint(url=receiver.url), disable_after="5d")
    try:
        with pytest.raises(RetryLater):
            await plugin.notifier.send(message())
        # Five days later, still no success since that failure:
        plugin.health.endpoints["crm"].failing_since = utcnow() - timedelta(days=5, seconds=1)
        with capture_logs() as logs, pytest.raises(Undeliverable) as refused:
            await plugin.notifier.send(message(key="webhook:crm:2"))
    finally:
        await plugin.notifier.close()
    assert refused.value.reason == "endpoint disabled after 5 days of failures"
    assert len(receiver.webhook_ids) == 1  # nothing posted once disabled
    [logged] = [e for e in logs if e["event"] == "webhook_endpoint_disabled"]
    assert logged["endpoint"] == "crm"
    assert logged["last_error"].startswith("503")
    status = plugin.status()[0]
    assert status["state"] == "disabled"
    assert status["reason"] == "endpoint disabled after 5 days of failures"


async def test_a_success_ends_the_failing_streak(receiver):
    receiver.answers = [web.Response(status=500)]
    plugin = make_plugin(endpoint(url=receiver.url))
    try:
        with pytest.raises(RetryLater):
            await plugin.notifier.send(message())
        assert plugin.status()[0]["state"] == "failing"
        assert plugin.status()[0]["failing_since"] is not None
        await plugin.notifier.send(message())
    finally:
        await plugin.notifier.close()
    assert plugin.status()[0] == {
        "name": "crm",
        "url": receiver.url,
        "state": "ok",
        "failing_since": None,
        "last_error": None,
        "reason": None,
    }


async def test_a_notification_a_template_rendered_is_posted_as_a_webhook_too(receiver):
    plugin = make_plugin(endpoint(url=receiver.url))
    rendered = replace(
        message(data={}),
        subject="Сделка проиграна",
        text="Поставка: клиент выбрал конкурента",
        link="https://crm.example.ru/deals/7",
        created_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    )
    try:
        await plugin.notifier.send(rendered)
    finally:
        await plugin.notifier.close()
    assert receiver.deliveries[0]["json"] == {
        "type": "deal.created",
        "timestamp": "2026-11-25T12:00:00Z",
        "data": {
            "title": "Сделка проиграна",
            "text": "Поставка: клиент выбрал конкурента",
            "link": "https://crm.example.ru/deals/7",
        },
    }


async def test_a_webhook_for_an_endpoint_no_longer_configured_is_undeliverable():
    plugin = make_plugin(endpoint(), endpoint("paused", enabled=False))
    with pytest.raises(Undeliverable, match="no endpoint 'gone'"):
        await plugin.notifier.send(message(address="gone"))
    with pytest.raises(Undeliverable, match="enabled = false"):
        await plugin.notifier.send(message(address="paused"))
    assert {s["name"]: s["state"] for s in plugin.status()} == {"crm": "ok", "paused": "disabled"}


def test_address_names_a_configured_enabled_endpoint_or_nothing():
    notifier = make_plugin(endpoint(), endpoint("paused", enabled=False)).notifier
    assert notifier.address(Recipient(user_id=None, name="crm")) == "crm"
    assert notifier.address(Recipient(user_id=None, name="paused")) is None
    assert notifier.address(Recipient(user_id=None, name="unknown")) is None
    assert notifier.address(Recipient(user_id=4, email="anna@example.com")) is None


def test_status_shows_no_credential_of_an_endpoint_s_address():
    plugin = make_plugin(endpoint(url="https://erp:pw@hooks.example.com/in?token=abc"))
    assert plugin.status()[0]["url"] == "https://hooks.example.com/in"
