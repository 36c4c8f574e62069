"""examples/form.html works against config.example.toml, as a new user would try it."""

from __future__ import annotations

from html.parser import HTMLParser

from hub.api import HUB_KEY
from hub.app import build_app
from hub.config import load_settings
from hub.context import Hub
from hub.plugins import PluginHost
from tests.conftest import ROOT, wait_for


class FormFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.action = attributes["action"] or ""
        if tag in ("input", "textarea") and attributes.get("name"):
            self.fields.append(attributes["name"] or "")


async def test_the_example_form_posted_by_a_browser_creates_a_deal(
    aiohttp_client, tmp_path, monkeypatch
):
    parser = FormFields()
    parser.feed((ROOT / "examples" / "form.html").read_text())
    assert parser.action.endswith("/forms/contact")
    values = {
        "name": "Мария Иванова",
        "phone": "+7 (916) 111-22-33",
        "email": "maria@mail.ru",
        "comment": "Нужен интернет-магазин",
        "news": "on",  # the ticked box: consent to email advertising
        "website": "",
        "utm_source": "yandex",
        "utm_medium": "cpc",
        "utm_campaign": "autumn",
    }
    assert set(parser.fields) == set(values)

    monkeypatch.setenv("HUB__STORE__URL", f"sqlite+aiosqlite:///{tmp_path}/hub.db")
    settings = load_settings(ROOT / "config.example.toml")
    hub = Hub(
        settings,
        plugins=PluginHost(settings),  # the installed plugins, as `hub run` finds them
    )
    client = await aiohttp_client(build_app(hub))
    # A page opened from disk posts with Origin "null"; a browser asks for HTML.
    response = await client.post(
        "/forms/contact",
        data=values,
        headers={"Origin": "null", "Accept": "text/html,application/xhtml+xml"},
    )
    assert response.status == 200
    assert "Спасибо" in await response.text()

    async def deal():
        async with hub.store.read() as conn:
            from sqlalchemy import select

            from hub.store.models import Deal

            return (await conn.execute(select(Deal.__table__))).mappings().first()

    created = await wait_for(deal)
    assert created["title"] == "Заявка с сайта: Мария Иванова"
    assert created["source"] == "Сайт"
    assert created["segment"] == "Розница"
    assert (created["utm_source"], created["utm_campaign"]) == ("yandex", "autumn")
    assert client.app[HUB_KEY] is hub

    async def consent():
        async with hub.store.read() as conn:
            from sqlalchemy import select

            from hub.store.models import Consent

            return (await conn.execute(select(Consent.__table__))).mappings().first()

    agreed = await wait_for(consent)
    assert (agreed["channel"], agreed["granted"]) == ("email", True)
    assert agreed["source"] == "webforms:Обратная связь"
