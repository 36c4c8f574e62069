"""A real browser (headless Chromium) on /card: anna signs in with her token, a call rings at
the generic webhook, and her client's card appears within a second; no token in the URL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from hub.app import build_app
from hub.store.models import Deal
from plugins.telephony import Telephony
from tests.conftest import make_hub
from tests.plugins.telephony.conftest import ANNA_TOKEN, screen_settings, start_phones
from tests.plugins.telephony.test_calls import SECRET, signed
from tests.plugins.webforms.test_browser import browser

NAVIGATING = (StaleElementReferenceException, WebDriverException)  # an element of the page left


def page_saying(driver: webdriver.Chrome, text: str) -> str:
    """The page's text once the browser shows ``text`` (a submit navigates away)."""

    def shown(d: webdriver.Chrome) -> str | bool:
        body = d.find_element(By.TAG_NAME, "body").text
        return body if text in body else False

    return WebDriverWait(driver, 10, ignored_exceptions=NAVIGATING).until(shown)


def card_saying(driver: webdriver.Chrome, text: str, within: float) -> float:
    """When (``time.monotonic()``) the first card on the page shows ``text``."""

    def shown(d: webdriver.Chrome) -> float | bool:
        cards = d.find_elements(By.CSS_SELECTOR, "#cards article.card")
        return time.monotonic() if cards and text in cards[0].text else False

    return WebDriverWait(driver, within, poll_frequency=0.02, ignored_exceptions=NAVIGATING).until(
        shown
    )


async def test_anna_s_screen_shows_her_client_within_a_second_of_the_ring(
    aiohttp_client: Callable[..., Any], store_url: str, tmp_path: Path
):
    hub = make_hub(
        screen_settings(store_url, webhook_secret=SECRET), extra={"telephony": Telephony}
    )
    phones = await start_phones(await aiohttp_client(build_app(hub)))
    contact_id = await phones.add_client(
        "Иван Петров", "8 (912) 345-67-89", company="ООО «Ромашка»", city="Пермь", segment="b2b"
    )
    deal_id = await phones.add_deal(
        contact_id, "Плитка для офиса", stage="proposal", amount="125000"
    )
    await phones.add_activity(contact_id, "Обсудили образцы", datetime.now(UTC), deal_id=deal_id)
    page = str(phones.client.make_url("/card"))
    driver = await asyncio.to_thread(browser)
    try:

        def sign_in() -> str:
            driver.set_window_size(420, 900)  # a phone's width
            driver.get(page)
            page_saying(driver, "Войдите своим токеном")
            driver.find_element(By.NAME, "token").send_keys(ANNA_TOKEN)
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            page_saying(driver, "На связи")  # the event stream is open
            return driver.current_url

        url = await asyncio.to_thread(sign_in)
        assert url == page  # 303 back to /card: no token in the URL
        assert ANNA_TOKEN not in url
        cookie = driver.get_cookie("hub_card")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert ANNA_TOKEN not in cookie["value"]

        event = {
            "call_id": "browser-1",
            "direction": "in",
            "state": "ringing",
            "caller": "+7 912 345-67-89",
            "called": "+74951234567",
            "extension": "555",
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        body = orjson.dumps(event)
        waiting = asyncio.create_task(
            asyncio.to_thread(card_saying, driver, "Иван Петров", within=5.0)
        )
        posted = time.monotonic()
        response = await phones.client.post("/telephony/events", data=body, headers=signed(body))
        assert response.status == 200, await response.text()
        appeared = await waiting
        assert appeared - posted < 1.0, f"the card took {appeared - posted:.2f} s"

        def look() -> str:
            driver.save_screenshot(str(tmp_path / "card.png"))
            return driver.find_element(By.CSS_SELECTOR, "#cards article.card").text

        text = await asyncio.to_thread(look)

        # an unknown number at anna's extension: the button makes the client, in the browser
        unknown = {**event, "call_id": "browser-2", "caller": "8 912 000-11-22", "extension": "101"}
        body = orjson.dumps(unknown)
        response = await phones.client.post("/telephony/events", data=body, headers=signed(body))
        assert response.status == 200, await response.text()

        def new_client() -> dict[str, str]:
            driver.set_window_size(1280, 900)  # a laptop
            card_saying(driver, "Новый клиент", within=5.0)
            driver.save_screenshot(str(tmp_path / "new.png"))
            driver.find_element(By.CSS_SELECTOR, "#cards article.card form button").click()
            after = page_saying(driver, "Клиент и сделка созданы")
            driver.save_screenshot(str(tmp_path / "created.png"))
            return {"text": after, "url": driver.current_url}

        created = await asyncio.to_thread(new_client)

        def sign_out() -> str:
            driver.find_element(By.XPATH, "//button[text()='Выйти']").click()
            text = page_saying(driver, "Войдите своим токеном")
            driver.save_screenshot(str(tmp_path / "sign-in.png"))
            return text

        await asyncio.to_thread(sign_out)
    finally:
        await asyncio.to_thread(driver.quit)
    for shown in ("+79123456789", "ООО «Ромашка»", "Плитка для офиса", "Направить КП"):
        assert shown in text
    assert "Анна Смирнова, доб. 101" in text
    assert "Обсудили образцы" in text
    assert (tmp_path / "card.png").stat().st_size > 1000
    assert "Новый клиент" not in created["text"]
    assert created["url"].startswith(page + "?phone=%2B79120001122")
    assert ANNA_TOKEN not in created["url"]
    async with hub.store.read() as conn:
        owners = (
            await conn.execute(select(Deal.owner_id).where(Deal.title == "+79120001122"))
        ).scalars()
        assert list(owners) == [phones.user("anna@example.com")]
