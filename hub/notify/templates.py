"""Notification texts from Jinja2 templates in files, rendered in a sandbox.

A template ``NAME.j2`` (built-in ones in ``hub/templates/notifications/``, a
company's own in ``[notifications] templates_dir`` taking precedence) defines
blocks: ``subject`` (one line), ``text`` (plain text), ``html`` (an email's HTML
part) and any a notifier knows (``telegram``: Telegram's HTML subset). The
context is what the rule queued with the notification (``deal``, ``event``,
``link``, ``recipient``, ``timezone``...). Templates are written by the people
who run the hub, so they run sandboxed: no attribute access to Python internals.
"""

from __future__ import annotations

import html
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import ChainableUndefined, ChoiceLoader, FileSystemLoader, PackageLoader
from jinja2.sandbox import SandboxedEnvironment

# Blocks whose output is not HTML: autoescaping is undone after rendering.
PLAIN_BLOCKS = frozenset({"subject", "text"})


class TemplateMissing(LookupError):
    pass


class Templates:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[Any] = []
        if override_dir is not None:
            loaders.append(FileSystemLoader(override_dir))
        loaders.append(PackageLoader("hub", "templates/notifications"))
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            # A missing value (a deal without an amount, ``deal.company.name`` with no
            # company) prints as nothing: templates use ``or``/``default`` for fallbacks.
            undefined=ChainableUndefined,
        )
        self.env.filters["money"] = money
        self.env.filters["local"] = local_time

    def render(self, name: str, context: dict[str, Any]) -> dict[str, str]:
        """Every block of template ``name`` rendered with ``context``: block name → text."""
        try:
            template = self.env.get_template(f"{name}.j2")
        except Exception as error:  # TemplateNotFound, or a syntax error in a company's file
            raise TemplateMissing(f"notification template {name!r}: {error}") from error
        out: dict[str, str] = {}
        for block, render in template.blocks.items():
            text = "".join(render(template.new_context(dict(context)))).strip()
            out[block] = html.unescape(text) if block in PLAIN_BLOCKS else text
        if "subject" in out:
            out["subject"] = " ".join(out["subject"].split())
        return out

    def check(self, name: str) -> None:
        """Raise :class:`TemplateMissing` unless ``name`` exists and compiles."""
        try:
            self.env.get_template(f"{name}.j2")
        except Exception as error:
            raise TemplateMissing(f"notification template {name!r}: {error}") from error


def money(value: Any, currency: str | None = "RUB") -> str:
    """1250000 → "1 250 000 ₽" (thin spaces between thousands, as Russian text writes it)."""
    if value in (None, ""):
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    whole = f"{amount:,.0f}" if amount == amount.to_integral() else f"{amount:,.2f}"
    whole = whole.replace(",", "\u202f").replace(".", ",")
    sign = {"RUB": "₽", "USD": "$", "EUR": "€"}.get(currency or "", currency or "")
    return f"{whole} {sign}".strip()


def local_time(value: Any, zone: str | None = None, fmt: str = "%d.%m.%Y %H:%M") -> str:
    """An ISO time shown in ``zone`` (the recipient's timezone)."""
    if not value:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if zone:
        moment = moment.astimezone(ZoneInfo(zone))
    return moment.strftime(fmt)
