"""Name blocks: which known contacts a lead is compared with besides those sharing a phone
or an email.

A returning client with a new phone and a new mailbox is found by the name together with
one more thing known about them. The name is its key (:func:`name_key`): the surname's
consonant skeleton and the first name's, across alphabets, diminutives and the surname's
gender (``Васильева Маша`` and ``Maria Vasilieva`` are ``vslv|mr``), or the first name's
initial alone (``Васильева М.``: ``vslv|m``). A block is a name with

- the birth date, the address or a state number (the personal ИНН, the СНИЛС), where an
  initial is enough (``Ершов Т.``, born 2002-06-17, meets ``Ершов Тимур Алексеевич`` born
  that day);
- the company or the city, where both must give the first name in full: a surname and an
  initial at one big company say too little.

Intake reads the contacts of the lead's name keys through the ``contacts.name_key`` index
(:func:`lookups`) and keeps those sharing a block; the scan groups all contacts by block.
A block held by more than ``MAX_BLOCK`` contacts (a common name in a big city) finds
nobody: it says too little. A first name the name list does not know leaves the word
order a guess, so such a name has the blocks and look-ups of both orders.
"""

from __future__ import annotations

import re
from typing import Any

from hub.domain.similarity import (
    FIRST_NAMES,
    company_key,
    parse_name,
    person_key,
    place_key,
    skeleton,
    swapped,
)

MAX_BLOCK = 20
Block = tuple[str, str]  # (surname and first name or initial, "born 1980-01-02" | ...)
# The kinds of block, the first word of its second part: what intake reads per contact.
KINDS = frozenset({"born", "address", "inn", "snils", "company", "city"})


def name_key(name: str | None) -> str | None:
    """What ``contacts.name_key`` holds: ``surname|first name`` skeletons, or
    ``surname|initial``; None without a surname and a first name or initial."""
    return person_key(name)


def _orders(name: str | None) -> list[tuple[str, str, bool]]:
    """(surname skeleton, first-name skeleton or initial, whether the first is whole) for
    the name as parsed and, for a first name the list does not know, the other order."""
    parsed = parse_name(name) if name else None
    if parsed is None or not parsed.last:
        return []
    out = []
    if parsed.first:
        out.append((skeleton(parsed.last), skeleton(parsed.first), True))
        if parsed.first not in FIRST_NAMES and (other := swapped(parsed)) is not None:
            assert other.first and other.last
            out.append((skeleton(other.last), skeleton(other.first), True))
    elif parsed.first_initial:
        out.append((skeleton(parsed.last), parsed.first_initial[:1], False))
    return out


BIRTH_KEY = 32  # characters of ``contacts.birth_date``; a longer value is no date


def birth_key(custom: dict[str, Any] | None) -> str | None:
    """``contacts.birth_date``: the birth date a contact's custom fields hold, as the
    blocks read it, indexed so intake finds a card by birth date and address at once."""
    value = (custom or {}).get("birth_date")
    if not value:
        return None
    text = str(value).strip()
    return text if 0 < len(text) <= BIRTH_KEY else None


def detail_block(birth_date: str | None, address: str | None) -> Block | None:
    """The block of a record by its birth date and address together, whatever its name
    says: a card reading ``Анна`` or no name at all is still the person born that day who
    lives there. A couple shares the address, not the birth date. Found through the index
    of ``contacts.birth_date`` (:func:`birth_key`)."""
    if not birth_date or not address or not (found := _house(address)):
        return None
    return ("", f"born {birth_date.strip()} at {found}")


def _house(address: str) -> str:
    """An address as a block reads it: its house and flat numbers, which every way of
    writing it keeps ("г. Самара, ул. Ленинская, д. 147, кв. 12" and "Самара, Ленинская
    147-12" are "147 12"; a six-digit postcode is left out, as one writer gives it and
    another does not); the place's words where it has no numbers. Among the people born
    on one day, that is rarely two homes."""
    numbers = [n for n in re.findall(r"\d+", address) if len(n) < 6]
    return " ".join(numbers) if numbers else place_key(address)


def lookups(name: str | None) -> list[tuple[str, str]]:
    """Ranges of ``contacts.name_key`` (from, to, both included) holding the contacts that
    may share a block with this name: the same name, its initial, and for an initial every
    first name it begins."""
    out = []
    for last, first, whole in _orders(name):
        if whole:
            out.append((f"{last}|{first}", f"{last}|{first}"))
            out.append((f"{last}|{first[0]}", f"{last}|{first[0]}"))
        else:
            out.append((f"{last}|{first}", f"{last}|{first}\uffff"))
    return sorted(set(out))


def name_blocks(
    name: str | None,
    *,
    birth_date: str | None = None,
    company: str | None = None,
    city: str | None = None,
    address: str | None = None,
    personal_tax_id: str | None = None,
    snils: str | None = None,
) -> set[Block]:
    """The blocks of a person's record; none without a surname and a first name or initial."""
    out: set[Block] = set()
    ids = (personal_tax_id, snils)
    for last, first, whole in _orders(name):
        out |= _blocks(last, first, whole, birth_date, company, city, address, ids)
    return out


def key_blocks(
    key: str,
    *,
    birth_date: str | None = None,
    company: str | None = None,
    city: str | None = None,
    address: str | None = None,
    personal_tax_id: str | None = None,
    snils: str | None = None,
) -> set[Block]:
    """The blocks of a stored contact, from its ``name_key`` (the name is not parsed
    again: intake reads a few hundred of these per lead)."""
    last, _, first = key.partition("|")
    if not last or not first:
        return set()
    ids = (personal_tax_id, snils)
    return _blocks(last, first, len(first) > 1, birth_date, company, city, address, ids)


def _blocks(
    last: str,
    first: str,
    whole: bool,
    birth_date: str | None,
    company: str | None,
    city: str | None,
    address: str | None,
    ids: tuple[str | None, str | None] = (None, None),
) -> set[Block]:
    out: set[Block] = set()
    initial = f"{last}|{first[0]}"
    if birth_date:
        out.add((initial, f"born {birth_date.strip()}"))
    # A state number is one person's, so with it an initial is enough; with the name, so
    # the look-up stays on the name-key index (there is no index on a contact's numbers).
    tax_id, snils = ids
    if tax_id:
        out.add((initial, f"inn {tax_id.strip()}"))
    if snils:
        out.add((initial, f"snils {snils.strip()}"))
    if address and (found := place_key(address)):
        out.add((initial, f"address {found}"))
    if not whole:
        return out
    full = f"{last}|{first}"
    if company and (found := company_key(company)):
        out.add((full, f"company {found}"))
    if city and (found := place_key(city)):
        out.add((full, f"city {found}"))
    return out
