"""Mango's sign and times, checked against the corpus and on any values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.telephony_mango.events import BadEvent, parse_time, sign, verify
from tests.plugins.telephony_mango.conftest import API_KEY, API_SALT, CORPUS, sample

NAMES = sorted(p.stem for p in CORPUS.glob("*.http")) or ["(corpus absent)"]
texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=200)


@pytest.mark.parametrize("name", NAMES)
def test_the_corpus_signs_are_sha256_of_key_json_salt(name: str) -> None:
    item = sample(name)
    assert sign(API_KEY, item.facts["json"], API_SALT) == item.facts["sign"]
    form = {"vpbx_api_key": API_KEY, "sign": item.facts["sign"], "json": item.facts["json"]}
    assert verify(API_KEY, API_SALT, form)


@given(json_text=texts)
def test_any_json_text_signed_as_the_vpbx_signs_it_verifies(json_text: str) -> None:
    form = {"vpbx_api_key": API_KEY, "sign": sign(API_KEY, json_text, API_SALT), "json": json_text}
    assert verify(API_KEY, API_SALT, form)
    assert verify(API_KEY, API_SALT, {**form, "sign": form["sign"].upper()})  # hex is hex
    assert not verify(API_KEY, API_SALT + "x", form)
    assert not verify(API_KEY + "x", API_SALT, {**form, "vpbx_api_key": API_KEY + "x"})


@given(json_text=texts, data=st.data())
def test_a_changed_character_of_the_json_fails(json_text: str, data: st.DataObject) -> None:
    where = data.draw(st.integers(0, len(json_text) - 1))
    other = data.draw(
        st.characters(exclude_categories=("Cs",)).filter(lambda c: c != json_text[where])
    )
    changed = json_text[:where] + other + json_text[where + 1 :]
    form = {"vpbx_api_key": API_KEY, "sign": sign(API_KEY, json_text, API_SALT), "json": changed}
    assert not verify(API_KEY, API_SALT, form)


@given(st.integers(0, 2**31 - 1))
def test_unix_seconds_as_number_or_text_are_that_instant_in_utc(seconds: int) -> None:
    expected = datetime.fromtimestamp(seconds, UTC)
    assert parse_time(seconds, "timestamp") == expected
    assert parse_time(str(seconds), "timestamp") == expected


def test_a_moscow_time_as_text_is_read_on_the_moscow_clock() -> None:
    assert parse_time("2024-03-15 10:21:05", "end_time") == datetime(
        2024, 3, 15, 7, 21, 5, tzinfo=UTC
    )
    with pytest.raises(BadEvent, match="end_time"):
        parse_time("yesterday", "end_time")
    with pytest.raises(BadEvent, match="timestamp"):
        parse_time(True, "timestamp")
