"""Property: however a stored number is written (spaces, dashes, dots, parentheses, 8 or +7
or no prefix), the caller card and the route find the same contact."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.deals.changes import CreateContact
from hub.domain.normalize import phone_point
from plugins.telephony import Telephony
from tests.conftest import make_hub
from tests.plugins.telephony.conftest import TESTS, telephony_settings

T = TypeVar("T")
STORED = "8 (912) 345-67-89"
NATIONAL = "9123456789"


@st.composite
def spellings(draw: st.DrawFn, national: str = NATIONAL) -> str:
    """``national`` as a person might type it: a prefix, groups cut anywhere, separators."""
    prefix = draw(st.sampled_from(["+7", "8", "", "+7 ", "8 ", "+ 7"]))
    cuts = sorted(draw(st.sets(st.integers(1, len(national) - 1), max_size=5)))
    groups = [national[a:b] for a, b in zip([0, *cuts], [*cuts, len(national)], strict=True)]
    if draw(st.booleans()):
        groups[0] = f"({groups[0]})"
    separator = st.sampled_from(["", " ", "-", " - ", "."])
    text = groups[0]
    for group in groups[1:]:
        text += draw(separator) + group
    padding = st.sampled_from(["", " ", "\t"])
    return draw(padding) + prefix + draw(st.sampled_from(["", " ", "-"])) + text + draw(padding)


class LoopThread:
    """A hub running on an event loop of its own, for a synchronous hypothesis test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def running(store_url: str) -> Iterator[tuple[LoopThread, Telephony, int]]:
    loop = LoopThread()
    hub = make_hub(
        telephony_settings(store_url), extra={"telephony": Telephony}, start_workers=False
    )

    async def start() -> int:
        await hub.start()
        contact = CreateContact(name="Иван Петров", points=[phone_point(STORED, "RU")])
        other = CreateContact(name="Не он", points=[phone_point("8 (912) 345-67-88", "RU")])
        await hub.deals.apply([contact, other], TESTS)
        assert contact.id is not None
        return contact.id

    try:
        contact_id = loop.run(start())
        yield loop, hub.plugins.records["telephony"].instance, contact_id
    finally:
        loop.run(hub.stop())
        loop.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spelling=spellings())
def test_any_formatting_of_a_stored_number_finds_the_same_contact(
    running: tuple[LoopThread, Telephony, int], spelling: str
):
    loop, plugin, contact_id = running
    e164 = plugin.normalize(spelling)
    assert e164 == "+79123456789", spelling
    card = loop.run(plugin.card(e164, None))
    assert card["known"] is True
    assert card["contact"]["id"] == contact_id
    assert card["other_contacts"] == []
