"""A webhook receiver that checks every delivery as the Standard Webhooks reference does."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from hub.notify import Message
from plugins.webhooks import Webhooks

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()


@dataclass
class Receiver:
    """Answers each delivery with the next of ``answers`` (then 204), verifying it with
    ``secret`` first: a delivery that fails verification is answered 401."""

    secret: str = SECRET
    answers: list[web.Response] = field(default_factory=list)
    delay: float = 0.0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    url: str = ""

    @property
    def webhook_ids(self) -> list[str]:
        return [d["headers"]["webhook-id"] for d in self.deliveries]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as error:
            self.rejected.append(str(error))
            return web.Response(status=401, text="bad signature")
        self.deliveries.append(
            {"headers": {k.lower(): v for k, v in headers.items()}, "body": body, "json": payload}
        )
        return self.answers.pop(0) if self.answers else web.Response(status=204)


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", found.handle)
    server = await aiohttp_server(app)
    found.url = str(server.make_url("/hooks"))
    return found


def endpoint(name: str = "crm", url: str = "http://127.0.0.1:9/hooks", **more: Any) -> dict:
    return {"name": name, "url": url, "secret": SECRET, **more}


def make_plugin(*endpoints: dict[str, Any], **settings: Any) -> Webhooks:
    """The plugin alone, for what needs no store: its notifier and its reactions."""
    config = Webhooks.Config.model_validate({"endpoints": list(endpoints), **settings})
    return Webhooks(config, hub=None)  # type: ignore[arg-type]


def message(
    key: str = "webhook:crm:1", address: str = "crm", data: dict[str, Any] | None = None
) -> Message:
    return Message(
        id=1,
        key=key,
        notifier="webhooks",
        address=address,
        subject="",
        text="",
        html="",
        link=None,
        event_type="deal.created",
        data=data
        if data is not None
        else {
            "type": "deal.created",
            "timestamp": "2026-11-25T16:55:04.123456Z",
            "data": {"id": 7, "subject": "deal", "title": "Поставка", "amount": "1500.50"},
        },
    )
