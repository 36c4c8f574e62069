"""A person's state numbers, as a legacy contact base carries them: ИНН физлица and СНИЛС.

Both end in check digits, so a typo in a file is caught before it becomes a contact's
identifier (and evidence that two records are one person). Each normalizer returns the
bare digits or raises :class:`~hub.domain.normalize.InvalidPoint` saying what it expected.

- ИНН физического лица: 12 digits, the 11th and 12th check digits over the first 10 and
  11 (Приказ ФНС России от 29.06.2012 № ММВ-7-6/435@, the same weights as an
  organisation's 10-digit ИНН uses for its one). A 10-digit ИНН is an organisation's.
- СНИЛС: 11 digits, written ``112-233-445 95``; the last two are the check number: the
  sum of the first nine digits times 9, 8, ... 1, taken mod 101, with 100 written as
  ``00`` (Постановление Правления ПФР от 27.12.1999 № 70п). Numbers up to 001-001-998
  were issued before the check and carry none.
"""

from __future__ import annotations

from hub.domain.normalize import InvalidPoint, normalize_tax_id

SNILS_CHECKED_FROM = 1_001_998  # the first nine digits above this carry a check number


def _digits(raw: str) -> str:
    return "".join(ch for ch in raw if not ch.isspace() and ch not in "-–—.")


def normalize_personal_tax_id(raw: str) -> str:
    """``"500100732259"`` as it is; raises for anything but a person's 12-digit ИНН."""
    text = _digits(raw)
    if len(text) != 12 or not text.isdigit():
        raise InvalidPoint(f"not a personal ИНН (12 digits): {raw!r}")
    try:
        return normalize_tax_id(text)
    except InvalidPoint:
        raise InvalidPoint(f"not a personal ИНН (its check digits are wrong): {raw!r}") from None


def snils_check(first_nine: str) -> int:
    """The check number of a СНИЛС's first nine digits (00–99)."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(9, 0, -1), strict=True))
    return total % 101 % 100


def normalize_snils(raw: str) -> str:
    """``"112-233-445 95"`` → ``"11223344595"``; raises for a wrong length or check."""
    text = _digits(raw)
    if len(text) != 11 or not text.isdigit():
        raise InvalidPoint(f"not a СНИЛС (11 digits, as 112-233-445 95): {raw!r}")
    if int(text[:9]) > SNILS_CHECKED_FROM and snils_check(text[:9]) != int(text[9:]):
        raise InvalidPoint(f"not a СНИЛС (its check number is wrong): {raw!r}")
    return text


def format_snils(snils: str) -> str:
    """``"11223344595"`` → ``"112-233-445 95"``, as it is printed on the card."""
    return f"{snils[:3]}-{snils[3:6]}-{snils[6:9]} {snils[9:]}"
