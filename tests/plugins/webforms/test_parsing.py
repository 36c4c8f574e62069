"""The form-body parsers against the standard library, on any input."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugins.webforms.parsing import BadSubmission, parse_urlencoded

# Characters that matter to the format, hex digits, Cyrillic and one non-BMP character.
_BODY = st.text("ab=&+%;2AcFfz09 ИвнёЙ\U0001f600", max_size=60)


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
