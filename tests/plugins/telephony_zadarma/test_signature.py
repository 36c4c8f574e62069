"""Zadarma's signature and call_start, checked against the corpus and on any values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.telephony_zadarma.notifications import (
    SIGNED,
    BadNotification,
    provider_time,
    signature,
    signed_string,
    verify,
)
from tests.plugins.telephony_zadarma.conftest import CORPUS, SECRET, sample

NAMES = sorted(p.stem for p in CORPUS.glob("*.http")) or ["(corpus absent)"]
MOSCOW = ZoneInfo("Europe/Moscow")
values = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@pytest.mark.parametrize("name", NAMES)
def test_the_corpus_signatures_are_what_the_documented_algorithm_gives(name: str) -> None:
    item = sample(name)
    text = signed_string(item.form["event"], item.form)
    assert text == item.facts["signed_string"]
    assert signature(SECRET, text) == item.headers["Signature"] == item.facts["signature_header"]
    assert not verify(SECRET, text, item.facts["wrong_signature_if_raw_digest_used"])


@given(event=st.sampled_from(sorted(SIGNED)), fields=st.lists(values, min_size=3, max_size=3))
def test_any_field_values_signed_as_zadarma_signs_them_verify(
    event: str, fields: list[str]
) -> None:
    form = dict(zip(SIGNED[event], fields, strict=False))
    text = signed_string(event, form)
    assert verify(SECRET, text, signature(SECRET, text))
    assert not verify(SECRET + "x", text, signature(SECRET, text))


@given(text=values.filter(bool), data=st.data())
def test_a_changed_character_of_what_was_signed_fails(text: str, data: st.DataObject) -> None:
    where = data.draw(st.integers(0, len(text) - 1))
    other = data.draw(st.characters(exclude_categories=("Cs",)).filter(lambda c: c != text[where]))
    changed = text[:where] + other + text[where + 1 :]
    assert not verify(SECRET, changed, signature(SECRET, text))


def test_a_notification_lacking_a_signed_field_cannot_be_checked() -> None:
    with pytest.raises(BadNotification, match="called_did"):
        signed_string("NOTIFY_START", {"caller_id": "79161234567", "call_start": "x"})


@given(
    st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2037, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    )
)
def test_call_start_on_the_moscow_clock_is_the_same_instant_in_utc(local: datetime) -> None:
    parsed = provider_time(local.strftime("%Y-%m-%d %H:%M:%S"), MOSCOW)
    assert parsed.tzinfo == UTC
    assert parsed == local.replace(tzinfo=UTC) - timedelta(hours=3)  # MSK is UTC+3 since 2014
    assert provider_time(str(int(parsed.timestamp())), MOSCOW) == parsed  # unix seconds too
