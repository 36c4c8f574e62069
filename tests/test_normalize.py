"""Phones and emails normalized so the same person matches however they typed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.normalize import (
    InvalidPoint,
    _parse_phone,
    _plain_ru,
    normalize_email,
    normalize_phone,
)


@pytest.mark.parametrize(
    "raw",
    [
        "8 912 345-67-89",
        "+7 (912) 3456789",
        "9123456789",
        "8(912)345-67-89",
        "+79123456789",
        "7 912 345 67 89",
        " 8-912-345-67-89 ",
    ],
)
def test_russian_mobile_in_every_local_format_is_one_number(raw):
    assert normalize_phone(raw, "RU") == "+79123456789"


def test_an_extension_is_kept_so_it_does_not_match_the_main_line():
    assert normalize_phone("+7 495 123-45-67 доб. 123", "RU") == "+74951234567;ext=123"
    assert normalize_phone("+7 495 123-45-67", "RU") == "+74951234567"


@pytest.mark.parametrize("raw", ["101", "12", "abc", "", "+", "8 800"])
def test_short_internal_numbers_and_junk_are_not_phones(raw):
    with pytest.raises(InvalidPoint):
        normalize_phone(raw, "RU")


@st.composite
def formatted_mobile(draw):
    digits = draw(st.text("0123456789", min_size=7, max_size=7))
    operator = draw(st.sampled_from(["912", "903", "916", "926", "985"]))
    national = operator + digits
    style = draw(
        st.sampled_from(
            [
                "+7 {o} {a}-{b}-{c}",
                "8 ({o}) {a}-{b}-{c}",
                "{o}{a}{b}{c}",
                "+7({o}){a}{b}{c}",
                "8{o}{a}{b}{c}",
                "7 {o} {a} {b} {c}",
            ]
        )
    )
    text = style.format(o=operator, a=digits[:3], b=digits[3:5], c=digits[5:])
    return text, "+7" + national


@given(formatted_mobile())
def test_any_formatting_of_a_mobile_normalizes_to_its_e164(case):
    text, e164 = case
    assert normalize_phone(text, "RU") == e164


@given(st.text(max_size=30))
def test_phone_normalization_never_crashes_and_is_idempotent(text):
    try:
        once = normalize_phone(text, "RU")
    except InvalidPoint:
        return
    assert once.startswith("+")
    assert normalize_phone(once.split(";")[0], "RU") == once.split(";")[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Ivan@Example.com", "ivan@example.com"), ("  SALES@Romashka.RU ", "sales@romashka.ru")],
)
def test_emails_are_lower_cased(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["ivan", "ivan@", "@example.com", "ivan@@example.com", "a b@c.d"])
def test_malformed_emails_are_refused(raw):
    with pytest.raises(InvalidPoint):
        normalize_email(raw)


@given(st.emails())
def test_any_valid_email_normalizes_idempotently(email):
    try:
        once = normalize_email(email)
    except InvalidPoint:
        return  # hypothesis emails include forms email-validator rejects (e.g. special TLDs)
    assert normalize_email(once) == once
    assert once == once.lower()


_LOCAL_CHARS = "abcXYZ09.!#$%&'*+/=?^_`{|}~-\" @\\(),:;<>[]йё"
_DOMAIN_LABELS = st.one_of(
    st.sampled_from(
        [
            "mail",
            "MAIL",
            "yandex",
            "xn--80ak6aa92e",
            "a-b",
            "-ab",
            "ab-",
            "a_b",
            "1",
            "x" * 63,
            "x" * 64,
            "почта",
            "",
        ]
    ),
    st.text("abz09-_", min_size=1, max_size=8),
)
_TLDS = st.sampled_from(
    ["ru", "com", "RU", "test", "local", "localhost", "onion", "123", "рф", "xn--p1ai", ""]
)


@given(
    st.text(_LOCAL_CHARS, max_size=70),
    st.lists(_DOMAIN_LABELS, max_size=3),
    _TLDS,
)
def test_the_fast_email_check_agrees_with_email_validator(local, labels, tld):
    """normalize_email's shortcut for plain addresses answers exactly as email-validator does."""
    from hub.domain.normalize import _validate_email

    domain = ".".join([*labels, tld]) if tld else ".".join(labels)
    address = f"{local}@{domain}"
    try:
        expected = _validate_email(address, address.strip())
    except InvalidPoint:
        expected = None
    try:
        got = normalize_email(address)
    except InvalidPoint:
        got = None
    assert got == expected


@st.composite
def typed_russian_number(draw):
    """A number as people type it into a form: a prefix, ten digits, grouping anywhere."""
    prefix = draw(
        st.sampled_from(["", "+7", "8", "7", "+7 ", "8 ", "(8)", "(+7)", "+ 7", "+8", "810", "+"])
    )
    first = draw(st.sampled_from("3489" * 3 + "0125678"))  # mostly a Russian area code
    size = draw(st.sampled_from([9, 9, 9, 9, 8, 10]))  # mostly ten digits in all
    digits = first + draw(st.text("0123456789", min_size=size, max_size=size))
    grouping = st.sampled_from(["", "", "", "", "", " ", "-", "(", ")", " - ", ") "])
    text = prefix + "".join(draw(grouping) + digit for digit in digits) + draw(grouping)
    odd = draw(st.sampled_from(["", "", "", ".", "/", "x", "#", "+"]))  # now and then
    at = draw(st.integers(0, len(text)))
    return (text[:at] + odd + text[at:]).strip()


@given(typed_russian_number())
def test_the_plain_russian_shortcut_reads_numbers_as_phonenumbers_does(text):
    shortcut = _plain_ru(text)
    if shortcut is None:
        return  # the full parse reads it
    assert shortcut == _parse_phone(text, text, "RU")


@pytest.mark.parametrize(
    ("raw", "shortcut"),
    [
        ("8 (912) 345-67-89", "+79123456789"),
        ("+7 912 345 67 89", "+79123456789"),
        ("9123456789", "+79123456789"),
        ("8 800 555-35-35", "+78005553535"),
        ("(495) 123-45-67", "+74951234567"),
        ("8 10 49 30 1234567", None),  # dialling Germany from Russia: the full parse
        ("+7 495 123-45-67 доб. 123", None),  # an extension: the full parse
        ("8.912.345.67.89", None),
    ],
)
def test_the_usual_shapes_take_the_shortcut_and_the_rest_the_full_parse(raw, shortcut):
    assert _plain_ru(raw) == shortcut
    assert normalize_phone(raw, "RU").startswith(shortcut or "+")
