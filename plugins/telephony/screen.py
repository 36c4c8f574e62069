"""The caller card on the manager's screen (``/card``): being written, see the lead's notes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hub.context import PluginView
    from plugins.telephony import Telephony
    from plugins.telephony.calls import CallEvent


class Screen:
    """Managers' open ``/card`` pages and what rings for them."""

    def __init__(self, hub: PluginView, telephony: Telephony) -> None:
        self.hub = hub
        self.telephony = telephony

    def routes(self) -> list[web.RouteDef]:
        return []

    async def ring(self, event: CallEvent) -> int:
        """Show the card of a ringing call on every screen it is for; how many it reached."""
        return 0

    async def close(self) -> None:
        """End every open event stream (at shutdown)."""
