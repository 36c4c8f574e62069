"""A real browser (headless Chromium) on a shop's page: a refused submission shows the Russian
error page naming the page's own fields, its back link returns to that page, and a corrected
submission becomes a deal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from hub.app import build_app
from hub.store.models import Deal
from tests.conftest import make_hub, make_settings, wait_for

SHOP = """<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Плитка</title></head>
<body><h1>Оставьте заявку</h1>
<form method="post" action="/forms/contact">
  <input name="fio" placeholder="Имя"> <input name="tel" placeholder="Телефон">
  <button type="submit">Отправить</button>
</form></body></html>"""


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def page_saying(driver: webdriver.Chrome, text: str) -> str:
    """The page's text once the browser shows ``text`` (a submit navigates away)."""

    def shown(d: webdriver.Chrome) -> str | bool:
        body = d.find_element(By.TAG_NAME, "body").text
        return body if text in body else False

    return WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
        shown
    )


def submit(driver: webdriver.Chrome, name: str, phone: str) -> None:
    driver.find_element(By.NAME, "fio").send_keys(name)
    driver.find_element(By.NAME, "tel").send_keys(phone)
    driver.find_element(By.TAG_NAME, "button").click()


async def test_a_browser_sees_the_refusal_in_russian_goes_back_and_sends_a_lead(
    aiohttp_client: Any, store_url: str, tmp_path: Path
):
    hub = make_hub(make_settings(store_url))  # the shop posts to the hub's own origin
    app = build_app(hub)

    async def shop(request: web.Request) -> web.Response:
        return web.Response(text=SHOP, content_type="text/html")

    app.router.add_get("/shop/plitka", shop)
    client = await aiohttp_client(app)
    page = str(client.make_url("/shop/plitka"))

    def refused_then_sent() -> dict[str, Any]:
        driver = browser()
        try:
            driver.get(page)
            submit(driver, "", "12")
            refused = {
                "text": page_saying(driver, "Заявка не отправлена"),
                "back": driver.find_element(By.LINK_TEXT, "← Вернуться к форме").get_attribute(
                    "href"
                ),
            }
            driver.save_screenshot(str(tmp_path / "refused.png"))
            driver.find_element(By.LINK_TEXT, "← Вернуться к форме").click()
            page_saying(driver, "Оставьте заявку")
            refused["returned_to"] = driver.current_url
            submit(driver, "Ирина Волкова", "+7 912 555-01-02")
            refused["after"] = page_saying(driver, "Спасибо")
            driver.save_screenshot(str(tmp_path / "sent.png"))
            return refused
        finally:
            driver.quit()

    seen = await asyncio.to_thread(refused_then_sent)
    assert "Заявка не отправлена" in seen["text"]
    assert "fio: обязательное поле" in seen["text"]  # the page's own field names
    assert "tel: неверный номер телефона" in seen["text"]
    assert seen["back"] == seen["returned_to"] == page
    assert (tmp_path / "refused.png").stat().st_size > 1000

    async def stored() -> list[str]:
        async with hub.store.read() as conn:
            return list((await conn.execute(select(Deal.title))).scalars())

    assert await wait_for(stored) == ["Заявка с сайта: Ирина Волкова"]
    assert "Спасибо, заявка принята" in seen["after"]
