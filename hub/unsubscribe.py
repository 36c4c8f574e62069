"""The unsubscribe link of campaign mail: a page with one button, and RFC 8058's one-click.

``GET /unsubscribe/{token}`` shows a page with a button (a link scanner that opens
every link in a letter must not unsubscribe anyone); ``POST`` to the same address
records the opt-out: the button, or a mail client's one-click request
(``List-Unsubscribe=One-Click`` in the body, RFC 8058), with no login. The token names
the campaign, the contact and the channel, signed with the hub's key
(:meth:`hub.campaigns.desk.CampaignDesk.unsubscribe_token`). Repeating it is harmless.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.api.common import HUB_KEY

log = structlog.get_logger("hub.campaigns")

_pages = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates" / "pages"),
    autoescape=select_autoescape(["html"]),
)

routes = web.RouteTableDef()


def _page(*, valid: bool, done: bool, channel: str | None, status: int = 200) -> web.Response:
    html = _pages.get_template("unsubscribe.html").render(valid=valid, done=done, channel=channel)
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@routes.get("/unsubscribe/{token}")
async def unsubscribe_page(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    found = hub.campaigns.read_token(request.match_info["token"])
    if found is None:
        return _page(valid=False, done=False, channel=None, status=404)
    return _page(valid=True, done=False, channel=found[2])


@routes.post("/unsubscribe/{token}")
async def unsubscribe(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    token = request.match_info["token"]
    found = hub.campaigns.read_token(token)
    if found is None:
        return _page(valid=False, done=False, channel=None, status=404)
    await hub.campaigns.unsubscribe(token)
    log.info("unsubscribed", campaign_id=found[0], contact_id=found[1], channel=found[2])
    return _page(valid=True, done=True, channel=found[2])
