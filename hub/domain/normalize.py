"""Normalizing contact points: phones to E.164, emails to lower case."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email


@dataclass(frozen=True, slots=True)
class Point:
    """A contact point as entered and as matched."""

    kind: str  # "phone" | "email"
    value: str
    normalized: str


class InvalidPoint(ValueError):
    """A value that is not a phone number or an email address."""


@lru_cache(maxsize=65536)
def normalize_phone(raw: str, region: str = "RU") -> str:
    """Return the E.164 form of ``raw`` (``";ext=N"`` appended when it has an extension).

    ``8 (912) 345-67-89``, ``+7 912 3456789`` and ``9123456789`` are one number in
    region RU. Raises :class:`InvalidPoint` for a value that cannot be a phone
    number there (too short, letters, an internal extension alone).
    """
    text = raw.strip()
    if not text or len(text) > 64:
        raise InvalidPoint(f"not a phone number: {raw!r}")
    if region == "RU" and (plain := _plain_ru(text)):
        return plain
    return _parse_phone(raw, text, region)


def _parse_phone(raw: str, text: str, region: str) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as error:
        raise InvalidPoint(f"not a phone number: {raw!r}") from error
    if not phonenumbers.is_possible_number(number):
        raise InvalidPoint(f"not a phone number: {raw!r}")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if number.extension:
        return f"{e164};ext={number.extension}"
    return e164


# The shapes nearly every Russian number typed into a form takes: +7 or 8 and ten
# digits, or ten digits alone, grouped by spaces, hyphens and parentheses.
_GROUPING = str.maketrans("", "", " -()")


def _plain_ru(text: str) -> str | None:
    """``+7`` and the ten digits of a plainly written Russian number, else None.

    phonenumbers reads these shapes the same way, at a tenth of the cost (its
    parse was a third of a web-form request's CPU). The national number must
    start with 3, 4, 8 or 9 (3, 4 or 9 without a prefix, where 8 could begin
    "8 10", dialling abroad). Anything else (another shape, an extension,
    other characters) takes the full parse. tests/test_normalize.py holds the
    two to the same answers.
    """
    digits = text.translate(_GROUPING)
    if digits.startswith("+7"):
        national, first = digits[2:], "3489"
    elif len(digits) == 11 and digits[0] == "8":
        national, first = digits[1:], "3489"
    else:
        national, first = digits, "349"
    if len(national) == 10 and national.isascii() and national.isdigit() and national[0] in first:
        return "+7" + national
    return None


# A plain ASCII local part (RFC 5322 dot-atom): what nearly every address has.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@lru_cache(maxsize=65536)
def normalize_email(raw: str) -> str:
    """Return the lower-cased address; raises :class:`InvalidPoint` for a malformed one.

    email-validator decides. Most of its time goes on the domain, and leads come
    from a few hundred domains (gmail.com, mail.ru, yandex.ru, the company's own),
    so a plain ASCII local part is checked here and the domain's verdict is
    remembered; anything else takes the full check. tests/test_normalize.py
    holds the two paths to the same answers.
    """
    text = raw.strip()
    if not text or len(text) > 320:
        raise InvalidPoint(f"not an email address: {raw!r}")
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and _PLAIN_LOCAL.fullmatch(local):
        normal_domain = _email_domain(domain.lower())
        if normal_domain is not None:
            address = f"{local}@{normal_domain}"
            if len(address) <= 254:
                return address.lower()
    return _validate_email(raw, text)


def _validate_email(raw: str, text: str) -> str:
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidPoint(f"not an email address: {raw!r}: {error}") from error
    return result.normalized.lower()


@lru_cache(maxsize=4096)
def _email_domain(domain: str) -> str | None:
    """The domain as email-validator normalizes it, or None when it refuses it."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def phone_point(raw: str, region: str) -> Point:
    return Point("phone", raw.strip(), normalize_phone(raw, region))


def email_point(raw: str) -> Point:
    return Point("email", raw.strip(), normalize_email(raw))


def canonical_email(
    normalized: str, dotless: frozenset[str] = frozenset(), plus_tags: frozenset[str] = frozenset()
) -> str:
    """The mailbox an address delivers to: ``i.van+shop@gmail.com`` is ``ivan@gmail.com``."""
    local, _, domain = normalized.rpartition("@")
    if domain in plus_tags:
        local = local.split("+", 1)[0]
    if domain in dotless:
        local = local.replace(".", "")
    return f"{local}@{domain}"


_INN10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def _inn_digit(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def normalize_tax_id(raw: str, region: str = "RU") -> str:
    """A tax id as digits. In Russia an ИНН: 10 digits (an organisation) or 12 (a person or
    sole trader) with valid check digits; elsewhere letters and digits, upper-cased."""
    text = "".join(ch for ch in raw if ch.isalnum()).upper()
    if region != "RU":
        if not 5 <= len(text) <= 20:
            raise InvalidPoint(f"not a tax id: {raw!r}")
        return text
    if not text.isdigit():
        raise InvalidPoint(f"not an ИНН: {raw!r}")
    if len(text) == 10 and _inn_digit(text, _INN10) == int(text[9]):
        return text
    if (
        len(text) == 12
        and _inn_digit(text, _INN11) == int(text[10])
        and _inn_digit(text, _INN12) == int(text[11])
    ):
        return text
    raise InvalidPoint(f"not an ИНН (10 or 12 digits with valid check digits): {raw!r}")
