"""The form-body parsers against the standard library, on any input."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.webforms.parsing import (
    BadSubmission,
    keepable,
    parse_body,
    parse_urlencoded,
    storable,
)

# Characters that matter to the format, hex digits, Cyrillic and one non-BMP character.
_BODY = st.text("ab=&+%;2AcFfz09 ИвнёЙ\U0001f600", max_size=60)
# Any text at all, lone surrogates and NUL included.
_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
_CHARSET_NAMES = st.one_of(
    st.sampled_from(
        [
            *("utf-8", "cp1251", "utf-7", "utf-16", "base64", "hex", "zlib", "rot13"),
            *("undefined", "punycode", "idna", "unicode_escape", "raw_unicode_escape"),
            *("bogus", "utf\x008"),
        ]
    ),
    _ANY_TEXT,
)


def _reference(body: bytes, charset: str) -> dict[str, list[str]] | None:
    """What parse_qsl makes of the body; None when it cannot decode it."""
    try:
        text = body.decode(charset)
        pairs = parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict")
    except UnicodeDecodeError:
        return None
    fields: dict[str, list[str]] = {}
    for key, value in pairs:
        fields.setdefault(key, []).append(value)
    return fields


@pytest.mark.parametrize("charset", ["utf-8", "cp1251"])
@given(text=_BODY)
def test_urlencoded_bodies_read_as_parse_qsl_reads_them(charset, text):
    body = text.encode("utf-8", "surrogatepass")
    expected = _reference(body, charset)
    if expected is None:
        with pytest.raises(BadSubmission):
            parse_urlencoded(body, charset)
    else:
        assert parse_urlencoded(body, charset) == expected


@pytest.mark.parametrize("charset", ["utf-8", "cp1251"])
@given(
    fields=st.dictionaries(
        st.text("fioтелemail_", min_size=1, max_size=8),
        st.text("Иван Петров +7(912)345-67-89 a@b.ru &=%ёЁ", max_size=30),
        max_size=6,
    )
)
def test_what_a_browser_encodes_is_read_back(charset, fields):
    body = urlencode(fields, encoding=charset).encode("ascii")
    assert parse_urlencoded(body, charset) == {k: [v] for k, v in fields.items()}


def _read(content_type: str, params: dict[str, str], body: bytes) -> Any:
    try:
        return parse_body(content_type, params, body)[0]
    except BadSubmission as error:
        return error


@given(
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "application/json", "multipart/form-data"]
    ),
    charset=_CHARSET_NAMES,
    boundary=st.one_of(st.just("XyZ"), _ANY_TEXT),
    body=st.one_of(
        st.binary(max_size=80),
        st.just(b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n+2AA-\r\n--XyZ--'),
    ),
)
def test_any_body_in_any_declared_charset_is_read_or_refused_as_a_bad_submission(
    content_type, charset, boundary, body
):
    read = _read(content_type, {"charset": charset, "boundary": boundary}, body)
    if isinstance(read, BadSubmission):
        assert read.status in (400, 415)
    else:
        assert all(isinstance(v, str) for values in read.values() for v in values)


def _without_nul(text: str) -> str:
    return text.replace("\x00", "")


@given(st.dictionaries(_ANY_TEXT, st.lists(_ANY_TEXT, max_size=3), max_size=5))
def test_keepable_drops_nul_and_names_each_field_no_store_can_keep(fields):
    kept, refused = keepable(fields)
    unkeepable = {
        name
        for name, values in fields.items()
        if not all(storable(_without_nul(text)) for text in (name, *values))
    }
    assert len(refused) == len(unkeepable)
    assert all(map(storable, refused))
    assert all(storable(k) and all(map(storable, v)) for k, v in kept.items())
    for name, values in fields.items():
        if name not in unkeepable:
            assert all(_without_nul(v) in kept[_without_nul(name)] for v in values)
