"""A recipient opens the unsubscribe link from a letter in a real browser (headless
Chromium): the page asks in Russian, one button unsubscribes, the page says it is done,
and the contact's consent is withdrawn with the campaign as its source."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from sqlalchemy import select

from hub.app import build_app
from hub.store.models import Consent
from tests.campaigns.conftest import GatewayPlugin, campaign_settings, contact
from tests.conftest import make_hub
from tests.plugins.webforms.test_browser import browser, page_saying


async def test_a_recipient_unsubscribes_in_a_browser_with_one_button(
    aiohttp_client: Any, sqlite_url: str, gateway: Any, tmp_path: Path
):
    hub = make_hub(campaign_settings(sqlite_url), {"testgateway": GatewayPlugin})
    client = await aiohttp_client(build_app(hub))
    petr = await contact(hub, "Пётр", phone="+79161234567", segment="Опт", sms=True)
    page = str(client.make_url(f"/unsubscribe/{hub.campaigns.unsubscribe_token(7, petr, 'sms')}"))

    def open_and_click() -> tuple[str, str]:
        driver = browser()
        try:
            driver.set_window_size(420, 700)  # a phone's screen
            driver.get(page)
            asked = page_saying(driver, "Отписка от рассылки")
            driver.save_screenshot(str(tmp_path / "unsubscribe-asked.png"))
            driver.find_element(By.TAG_NAME, "button").click()
            done = page_saying(driver, "Вы отписались")
            driver.save_screenshot(str(tmp_path / "unsubscribe-done.png"))
            return asked, done
        finally:
            driver.quit()

    asked, done = await asyncio.to_thread(open_and_click)
    assert "больше не получать от нас рекламные сообщения" in asked
    assert "Мы больше не будем присылать вам рекламные сообщения" in done
    async with hub.store.read() as conn:
        consent = (await conn.execute(select(Consent))).one()
    assert (consent.granted, consent.source) == (False, "unsubscribe:campaign:7")
