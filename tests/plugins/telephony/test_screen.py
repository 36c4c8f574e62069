"""/card: a manager signs in with their token, keeps the page open, and sees who calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import ClientResponse
from pydantic import SecretStr
from sqlalchemy import select

from hub.app import build_app
from hub.config import ApiToken
from hub.store.models import Contact, Deal, Task
from plugins.telephony import Telephony
from plugins.telephony import screen as screen_module
from plugins.telephony.calls import CallEvent
from plugins.telephony.screen import COOKIE, MAX_STREAMS, SIGNED_IN
from tests.conftest import make_hub
from tests.plugins.telephony.conftest import (
    ANNA_TOKEN,
    DMITRY_TOKEN,
    HEAD_TOKEN,
    Phones,
    screen_settings,
    start_phones,
)


def ringing(caller: str, extension: str | None = None, call_id: str = "c-1") -> CallEvent:
    return CallEvent(
        provider="webhook",
        call_id=call_id,
        direction="in",
        state="ringing",
        caller=caller,
        called="+74951234567",
        extension=extension,
        occurred_at=datetime.now(UTC),
    )


def origin(phones: Phones) -> dict[str, str]:
    """What a browser sends with a POST from the hub's own page."""
    return {"Origin": str(phones.client.make_url("/").origin())}


async def sign_in(phones: Phones, token: str) -> dict[str, str]:
    """Sign in with ``token``; the session's Cookie header (the client's jar is left empty, so
    each test says whose session a request carries)."""
    response = await phones.client.post(
        "/card/sign-in", data={"token": token}, headers=origin(phones), allow_redirects=False
    )
    assert response.status == 303, await response.text()
    sid = response.cookies[COOKIE].value
    phones.client.session.cookie_jar.clear()
    return {"Cookie": f"{COOKIE}={sid}"}


async def open_stream(phones: Phones, session: dict[str, str]) -> ClientResponse:
    response = await phones.client.get("/card/events", headers=session)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert await next_event(response) == {"retry": "2000"}
    return response


async def next_event(stream: ClientResponse, within: float = 2.0) -> dict[str, str] | None:
    """The next event on ``stream`` (comments skipped); None when nothing comes in time or
    the stream ends."""
    event: dict[str, str] = {}

    async def read() -> dict[str, str] | None:
        while True:
            line = (await stream.content.readline()).decode()
            if not line:
                return None  # the stream ended
            line = line.rstrip("\n")
            if not line:
                if event:
                    return event
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            event[name] = f"{event[name]}\n{value}" if name in event else value

    try:
        return await asyncio.wait_for(read(), within)
    except TimeoutError:
        return None


async def anna_s_client(phones: Phones) -> int:
    contact_id = await phones.add_client(
        "Иван Петров", "8 (912) 345-67-89", company="ООО «Ромашка»", city="Пермь", segment="b2b"
    )
    await phones.add_deal(contact_id, "Плитка для офиса", stage="proposal", amount="125000")
    return contact_id


async def test_sign_in_sets_an_http_only_strict_cookie_that_is_not_the_token(screens: Phones):
    page = await screens.client.get("/card")
    assert page.status == 200
    assert 'name="token"' in await page.text()

    response = await screens.client.post(
        "/card/sign-in",
        data={"token": ANNA_TOKEN},
        headers=origin(screens),
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/card"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/card" in cookie
    assert "Secure" not in cookie  # plain http here; set over https
    assert ANNA_TOKEN not in cookie
    assert len(response.cookies[COOKIE].value) >= 40

    screens.client.session.cookie_jar.clear()
    sid = response.cookies[COOKIE].value
    signed_in = await screens.client.get("/card", headers={"Cookie": f"{COOKIE}={sid}"})
    assert signed_in.status == 200
    text = await signed_in.text()
    assert "Анна Смирнова, доб. 101" in text
    assert "EventSource" in text
    assert ANNA_TOKEN not in text


async def test_a_wrong_token_is_refused_in_russian_with_401_and_no_cookie(screens: Phones):
    response = await screens.client.post(
        "/card/sign-in", data={"token": "not-a-token-0123456789"}, headers=origin(screens)
    )
    assert response.status == 401
    assert "Неверный токен" in await response.text()
    assert COOKIE not in response.cookies


async def test_a_post_from_another_site_is_refused(screens: Phones):
    for headers in (
        {},
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Origin": str(screens.client.make_url("/").origin())},
    ):
        response = await screens.client.post(
            "/card/sign-in", data={"token": ANNA_TOKEN}, headers=headers, allow_redirects=False
        )
        assert response.status == 403, headers
        assert COOKIE not in response.cookies
    same = await screens.client.post(
        "/card/sign-in",
        data={"token": ANNA_TOKEN},
        headers={"Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert same.status == 303


async def test_events_without_a_session_answer_401(screens: Phones):
    assert (await screens.client.get("/card/events")).status == 401
    stale = await screens.client.get("/card/events", headers={"Cookie": f"{COOKIE}=made-up"})
    assert stale.status == 401


async def test_a_ring_for_anna_s_client_reaches_anna_and_not_dmitry(screens: Phones):
    await anna_s_client(screens)
    anna = await open_stream(screens, await sign_in(screens, ANNA_TOKEN))
    dmitry = await open_stream(screens, await sign_in(screens, DMITRY_TOKEN))
    head = await open_stream(screens, await sign_in(screens, HEAD_TOKEN))

    # the extension ringing is nobody's: the card goes to the client's owner alone
    assert await screens.plugin.screen.ring(ringing("+7 912 345 67 89", extension="555")) == 1

    card = await next_event(anna)
    assert card is not None and card["event"] == "card"
    html = card["data"]
    for shown in ("+79123456789", "Иван Петров", "ООО «Ромашка»", "b2b · Пермь"):
        assert shown in html
    assert "Анна Смирнова, доб. 101" in html
    assert "Плитка для офиса" in html and "Направить КП" in html
    assert "125\u00a0000\u00a0₽" in html
    assert 'href="/api/v1/deals/' in html
    assert 'class="light ' in html
    assert await next_event(dmitry, within=0.3) is None
    assert await next_event(head, within=0.3) is None  # a head token without a user


async def test_a_ring_of_anna_s_extension_shows_an_unknown_number_as_a_new_client(
    screens: Phones,
):
    anna = await open_stream(screens, await sign_in(screens, ANNA_TOKEN))
    dmitry = await open_stream(screens, await sign_in(screens, DMITRY_TOKEN))
    assert await screens.plugin.screen.ring(ringing("8 912 000-11-22", extension="101")) == 1
    card = await next_event(anna)
    assert card is not None
    assert "Новый клиент" in card["data"]
    assert 'action="/card/new-client"' in card["data"]
    assert 'value="+79120001122"' in card["data"]
    assert await next_event(dmitry, within=0.3) is None


async def test_a_withheld_number_shows_number_hidden(screens: Phones):
    anna = await open_stream(screens, await sign_in(screens, ANNA_TOKEN))
    assert await screens.plugin.screen.ring(ringing("anonymous", extension="101")) == 1
    card = await next_event(anna)
    assert card is not None and "Номер скрыт" in card["data"]


async def test_the_new_client_button_creates_a_contact_and_deal_owned_by_the_user(
    screens: Phones,
):
    anna = await sign_in(screens, ANNA_TOKEN)
    response = await screens.client.post(
        "/card/new-client",
        data={"phone": "+79120001122"},
        headers={**anna, **origin(screens)},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location.startswith("/card?phone=%2B79120001122")

    shown = await screens.client.get(location, headers=anna)
    text = await shown.text()
    assert "Клиент и сделка созданы" in text
    assert "Новый клиент" not in text
    assert 'href="/api/v1/deals/' in text  # the new deal, on the new client's card

    anna_id = screens.user("anna@example.com")
    async with screens.hub.store.read() as conn:
        contacts = (await conn.execute(select(Contact.id, Contact.owner_id))).all()
        deals = (
            await conn.execute(
                select(Deal.contact_id, Deal.owner_id, Deal.source, Deal.stage_id, Deal.title)
            )
        ).all()
    assert [c.owner_id for c in contacts] == [anna_id]
    assert [(d.contact_id, d.owner_id, d.source) for d in deals] == [
        (contacts[0].id, anna_id, "Входящий звонок")
    ]
    assert deals[0].stage_id == screens.stage("new")
    assert deals[0].title == "+79120001122"
    async with screens.hub.store.read() as conn:
        tasks = (await conn.execute(select(Task.deal_id, Task.owner_id, Task.due_at))).all()
    assert len(tasks) == 1, "no deal without a task: the new deal gets the pipeline's first one"
    assert tasks[0].owner_id == anna_id and tasks[0].deal_id is not None
    assert tasks[0].due_at > datetime.now(UTC)

    again = await screens.client.post(
        "/card/new-client",
        data={"phone": "8 912 000-11-22"},
        headers={**anna, **origin(screens)},
        allow_redirects=False,
    )
    assert again.headers["Location"].endswith("&note=exists")  # nothing twice
    repeated = await screens.client.get(again.headers["Location"], headers=anna)
    assert "Клиент с этим номером уже есть" in await repeated.text()
    async with screens.hub.store.read() as conn:
        assert len((await conn.execute(select(Deal.id))).all()) == 1


async def test_sign_out_ends_the_session_and_its_streams(screens: Phones):
    anna = await sign_in(screens, ANNA_TOKEN)
    stream = await open_stream(screens, anna)
    response = await screens.client.post(
        "/card/sign-out", headers={**anna, **origin(screens)}, allow_redirects=False
    )
    assert response.status == 303
    assert response.cookies[COOKIE].value == ""
    assert await next_event(stream) is None  # ended, not waiting for a keep-alive
    assert stream.content.at_eof()
    assert (await screens.client.get("/card/events", headers=anna)).status == 401
    assert 'name="token"' in await (await screens.client.get("/card", headers=anna)).text()


async def test_a_session_opens_at_most_five_streams_and_close_ends_them(screens: Phones):
    anna = await sign_in(screens, ANNA_TOKEN)
    streams = [await open_stream(screens, anna) for _ in range(MAX_STREAMS)]
    assert (await screens.client.get("/card/events", headers=anna)).status == 429
    await screens.plugin.screen.close()
    for stream in streams:
        assert await next_event(stream, within=1.0) is None
        assert stream.content.at_eof()


async def test_repeated_wrong_tokens_from_one_address_are_throttled(screens: Phones):
    for _ in range(10):
        response = await screens.client.post(
            "/card/sign-in", data={"token": "guess-0123456789abcdef"}, headers=origin(screens)
        )
        assert response.status == 401
    throttled = await screens.client.post(
        "/card/sign-in", data={"token": ANNA_TOKEN}, headers=origin(screens)
    )
    assert throttled.status == 429
    assert "Подождите минуту" in await throttled.text()


async def test_a_token_changed_in_the_settings_ends_its_sessions(screens: Phones):
    anna = await sign_in(screens, ANNA_TOKEN)
    stream = await open_stream(screens, anna)
    tokens = screens.hub.settings.api.tokens
    tokens["anna"] = tokens["anna"].model_copy(update={"role": "head"})
    assert (await screens.client.get("/card/events", headers=anna)).status == 401
    assert await next_event(stream) is None
    assert stream.content.at_eof()


# -- who sees what, and how -------------------------------------------------------------------

OLGA_TOKEN = "olga-token-0123456789"


@pytest.fixture
async def team_screens(aiohttp_client: Callable[..., Any], store_url: str) -> Phones:
    """Anna works from Yekaterinburg (the hub keeps Moscow time); Olga, a head, has extension
    200 and a token of her own."""
    settings = screen_settings(store_url)
    settings.users = [
        u.model_copy(update={"timezone": "Asia/Yekaterinburg"})
        if u.email == "anna@example.com"
        else u.model_copy(update={"extension": "200"})
        if u.email == "olga@example.com"
        else u
        for u in settings.users
    ]
    settings.api.tokens["olga"] = ApiToken(
        token=SecretStr(OLGA_TOKEN), role="head", user="olga@example.com"
    )
    hub = make_hub(settings, extra={"telephony": Telephony})
    return await start_phones(await aiohttp_client(build_app(hub)))


async def test_a_head_sees_a_ring_only_on_their_own_extension_and_then_the_whole_card(
    team_screens: Phones,
):
    await anna_s_client(team_screens)
    olga = await open_stream(team_screens, await sign_in(team_screens, OLGA_TOKEN))
    screen = team_screens.plugin.screen

    assert await screen.ring(ringing("+79123456789", extension="555")) == 0  # anna's client
    assert await next_event(olga, within=0.3) is None
    assert await screen.ring(ringing("+79123456789", extension="200", call_id="c-2")) == 1
    card = await next_event(olga)
    assert card is not None and "Плитка для офиса" in card["data"]  # a head sees every deal


async def test_times_on_the_card_are_in_the_manager_s_timezone(team_screens: Phones):
    contact_id = await anna_s_client(team_screens)
    at = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)  # 09:00 in Moscow, 11:00 in Yekaterinburg
    await team_screens.add_activity(contact_id, "Обсудили образцы", at)
    anna = await open_stream(team_screens, await sign_in(team_screens, ANNA_TOKEN))
    event = ringing("+79123456789").model_copy(update={"occurred_at": at})
    assert await team_screens.plugin.screen.ring(event) == 1
    card = await next_event(anna)
    assert card is not None
    assert "07.12.2026 11:00 — Звонок" in card["data"]
    assert "09:00" not in card["data"]


async def test_what_a_client_is_called_is_escaped_on_the_card(screens: Phones):
    await screens.add_client('<script>alert("x")</script>', "+7 912 345-67-89")
    anna = await open_stream(screens, await sign_in(screens, ANNA_TOKEN))
    assert await screens.plugin.screen.ring(ringing("+79123456789")) == 1
    card = await next_event(anna)
    assert card is not None
    assert "<script>" not in card["data"]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in card["data"]


async def test_the_cookie_is_secure_behind_a_proxy_that_says_https(screens: Phones):
    response = await screens.client.post(
        "/card/sign-in",
        data={"token": ANNA_TOKEN},
        headers={**origin(screens), "X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert "Secure" in response.headers["Set-Cookie"]


async def test_a_session_ends_when_its_life_is_over(
    screens: Phones, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(screen_module, "SESSION_LIFE", 0.3)
    anna = await sign_in(screens, ANNA_TOKEN)
    assert (await screens.client.head("/card", headers=anna)).headers[SIGNED_IN] == "1"
    await asyncio.sleep(0.4)
    assert (await screens.client.get("/card/events", headers=anna)).status == 401
    assert (await screens.client.head("/card", headers=anna)).headers[SIGNED_IN] == "0"


# -- sessions across restarts and processes ---------------------------------------------------


async def another_hub(aiohttp_client: Callable[..., Any], store_url: str) -> Phones:
    """A second hub process on the same settings and store: a restart, or its neighbour."""
    hub = make_hub(screen_settings(store_url), extra={"telephony": Telephony})
    return await start_phones(await aiohttp_client(build_app(hub)))


async def test_a_manager_stays_signed_in_when_the_hub_restarts_or_another_process_answers(
    screens: Phones, aiohttp_client: Callable[..., Any], store_url: str
):
    anna = await sign_in(screens, ANNA_TOKEN)
    restarted = await another_hub(aiohttp_client, store_url)
    page = await restarted.client.get("/card", headers=anna)
    assert "Анна Смирнова, доб. 101" in await page.text()
    stream = await open_stream(restarted, anna)
    await anna_s_client(restarted)
    assert await restarted.plugin.screen.ring(ringing("+79123456789")) == 1
    card = await next_event(stream)
    assert card is not None and "Иван Петров" in card["data"]


async def test_a_signed_out_cookie_stays_refused_after_a_restart(
    screens: Phones, aiohttp_client: Callable[..., Any], store_url: str
):
    anna = await sign_in(screens, ANNA_TOKEN)
    signed_out = await screens.client.post(
        "/card/sign-out", headers={**anna, **origin(screens)}, allow_redirects=False
    )
    assert signed_out.status == 303
    restarted = await another_hub(aiohttp_client, store_url)
    assert (await restarted.client.get("/card/events", headers=anna)).status == 401
    assert (await restarted.client.head("/card", headers=anna)).headers[SIGNED_IN] == "0"
    dmitry = await sign_in(restarted, DMITRY_TOKEN)  # others stay signed in
    assert (await restarted.client.head("/card", headers=dmitry)).headers[SIGNED_IN] == "1"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: [p[0], "ZG1pdHJ5", *p[2:]], id="another token's name"),
        pytest.param(lambda p: [p[0], p[1], str(int(p[2]) + 3_600_000), *p[3:]], id="longer life"),
        pytest.param(lambda p: [*p[:3], "x" + p[3][1:], p[4]], id="another id"),
        pytest.param(lambda p: [*p[:4], p[4][:-2] + "AA"], id="another seal"),
        pytest.param(lambda p: p[:4], id="no seal"),
    ],
)
async def test_a_cookie_altered_in_any_part_signs_nobody_in(
    screens: Phones, tamper: Callable[[list[str]], list[str]]
):
    anna = await sign_in(screens, ANNA_TOKEN)
    value = anna["Cookie"].partition("=")[2]
    forged = ".".join(tamper(value.split(".")))
    assert forged != value
    headers = {"Cookie": f"{COOKIE}={forged}"}
    assert (await screens.client.get("/card/events", headers=headers)).status == 401
    assert (await screens.client.head("/card", headers=headers)).headers[SIGNED_IN] == "0"
