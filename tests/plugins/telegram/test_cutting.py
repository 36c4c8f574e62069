"""A message longer than Telegram takes is cut, never broken."""

from __future__ import annotations

import html

from hypothesis import event, given, settings
from hypothesis import strategies as st

from plugins.telegram import Telegram
from plugins.telegram.markup import cut
from tests.plugins.telegram.conftest import message
from tests.plugins.telegram.fakebot import FakeTelegram, parse_html, utf16


async def test_a_long_message_is_cut_at_4096_without_breaking_html(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    row = '<b>Сделка</b> <a href="https://crm.example.ru/deals/1">«Рога &amp; копыта»</a>, '
    card = "<blockquote>" + row * 200 + "</blockquote>"
    assert len(card) > 4096

    (notifier,) = plugin.hub_notifiers()
    await notifier.send(message(blocks={"telegram": card}))

    text = telegram.sent()[0]["text"]
    assert len(text) <= 4096
    assert text.endswith("…</a></blockquote>")  # cut between two words of a link's text
    shown = telegram.messages[0]["text"]  # the fake server parsed it as Telegram would
    assert shown.endswith("«Рога…")
    assert parse_html(card).startswith(shown.removesuffix("…"))


async def test_a_long_plain_text_is_cut_without_breaking_an_entity(
    plugin: Telegram, telegram: FakeTelegram
) -> None:
    (notifier,) = plugin.hub_notifiers()
    await notifier.send(message("<&>" * 3000, link=None))

    text = telegram.sent()[0]["text"]
    assert len(text) <= 4096
    assert text.endswith("&gt;…")  # whole entities only; the fake server parsed the rest


def test_a_message_that_fits_is_sent_as_it_is() -> None:
    card = "<b>Новая сделка</b>\n" + "я" * 4000
    assert cut(card) == card


def test_emoji_count_twice_as_telegram_counts_them() -> None:
    text = "👍" * 2100  # 4200 UTF-16 code units

    result = cut(text)

    assert utf16(result) <= 4096
    assert result == "👍" * 2047 + "…"


def test_a_custom_emoji_is_kept_whole_or_left_out() -> None:
    emoji = '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>'
    text = "я" * 4080 + emoji

    assert cut(text) == "я" * 4080 + "…"


def test_the_cut_falls_between_words_when_a_space_is_near() -> None:
    text = ("слово " * 800).strip()

    result = cut(text)

    assert result.endswith("слово…")
    assert utf16(result) <= 4096


# Telegram HTML built from the tags its docs list, around text of any script.
TEXT = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), include_characters="\n"), max_size=60
).map(lambda text: html.escape(text, quote=False))
TAGS = st.sampled_from(
    [
        ("b", ""),
        ("i", ""),
        ("u", ""),
        ("s", ""),
        ("code", ""),
        ("pre", ""),
        ("tg-spoiler", ""),
        ("blockquote", " expandable"),
        ("span", ' class="tg-spoiler"'),
        ("a", ' href="https://crm.example.ru/deals/1?a=1&amp;b=&quot;2&quot;"'),
        ("tg-emoji", ' emoji-id="5368324170671202286"'),
    ]
)


def _element(tag: tuple[str, str], children: list[str]) -> str:
    name, attributes = tag
    return f"<{name}{attributes}>{''.join(children)}</{name}>"


MARKUP = st.recursive(
    TEXT, lambda inner: st.builds(_element, TAGS, st.lists(inner, max_size=4)), max_leaves=30
)


@settings(max_examples=200, deadline=None)
@given(st.lists(MARKUP, min_size=1, max_size=6), st.integers(1, 400))
def test_a_cut_message_always_fits_and_parses_as_balanced_html(
    parts: list[str], repeat: int
) -> None:
    part = "".join(parts)
    # Around the limit, on either side of it: repeated, not longer than needed.
    markup = part * min(repeat, 9000 // max(1, len(part)) + 1)
    event("cut" if utf16(markup) > 4096 else "fits")
    shown = parse_html(markup)

    result = cut(markup)

    assert utf16(result) <= 4096
    kept = parse_html(result)  # raises on a broken tag or entity
    if utf16(markup) <= 4096:
        assert result == markup
    else:
        assert kept.endswith("…")
        assert shown.startswith(kept.removesuffix("…"))


@settings(max_examples=300, deadline=None)
@given(MARKUP, st.integers(1, 200))
def test_any_limit_is_kept_however_deep_the_tags(markup: str, limit: int) -> None:
    result = cut(markup, limit)

    assert utf16(result) <= limit
    kept = parse_html(result)
    assert parse_html(markup).startswith(kept.removesuffix("…"))
