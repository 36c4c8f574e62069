"""Is this lead someone we know? A Fellegi–Sunter score from field comparisons.

The lead and one candidate contact (found through the phone and email index or a name
block, :mod:`hub.domain.blocking`, never by scanning) are compared field by field
(:func:`compare`): each field lands on a level (equal, close, different, missing).
Each level has a match weight in bits from the match model
(:mod:`hub.domain.weights`); the weights plus the model's prior are the log2 odds
that the two are one person, turned into a probability. Disagreement weighs
against: a different personal mobile or mailbox, first name, patronymic, birth
date, gender, city, personal ИНН or СНИЛС, another id in the same source system.
Correlated evidence is weighed once: a shared office line or mailbox says nothing the
same company does not, a home phone in common nothing the same address does not, and a
home or office line in common does not outweigh two different own mobiles (a couple,
colleagues). The reasons are the partial weights, strongest first:
``same phone +22.6, last name equal +8.7, first name differs −4.9``.

A company adds its own matcher through the ``hub_matchers`` hook; its evidence
is mapped to a partial weight (:func:`evidence_bits`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from hub.domain.normalize import InvalidPoint, Point
from hub.domain.person_ids import normalize_personal_tax_id, normalize_snils
from hub.domain.similarity import (
    FIRST_NAMES,
    PersonName,
    company_similarity,
    parse_name,
    place_key,
    swapped,
)
from hub.domain.weights import DEFAULT, LEVELS, MatchModel

# Mailboxes several people read; the defaults of ``matching.generic_mailboxes``. Only used
# to tell a candidate's personal mailbox from a shared one.
GENERIC_MAILBOXES = frozenset(
    [
        "info",
        "sales",
        "office",
        "mail",
        "admin",
        "support",
        "hello",
        "contact",
        "contacts",
        "zakaz",
        "order",
        "orders",
        "buh",
        "secretary",
        "reception",
        "priem",
        "noreply",
    ]
)
HOUSEHOLD = 3  # contacts on one point, at most, for it to be a household's, not an office's
CLOSE = 85  # rapidfuzz fuzz.ratio (normalized Indel similarity, 0..100) for a typo


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a matcher found. ``weight`` is 0..1 for support (how sure this evidence
    alone makes the matcher), for a doubt the factor (<1) a score would be multiplied
    by; ``bits``, when set, is the partial match weight itself."""

    weight: float
    reason: str
    doubt: bool = False
    bits: float | None = None


@dataclass(slots=True)
class Incoming:
    """The lead as matchers see it."""

    name: str | None
    company: str | None
    city: str | None
    points: list[Point]
    shared: set[tuple[str, str]] = field(default_factory=set)  # points several people use
    tax_id: str | None = None
    birth_date: str | None = None  # ISO date
    address: str | None = None
    postcode: str | None = None
    # Of the shared points, those only a few people use (up to HOUSEHOLD contacts): a home
    # phone, a family mailbox. Among so few, the name tells who is who.
    household: set[tuple[str, str]] = field(default_factory=set)
    personal_tax_id: str | None = None  # 12 digits, checked (hub/domain/person_ids.py)
    snils: str | None = None  # 11 digits, checked
    # (system, id) in source systems: ("1c", "000123"); an id without a system has "".
    external_ids: set[tuple[str, str]] = field(default_factory=set)


@dataclass(slots=True)
class Candidate:
    """A known contact (or one created earlier in the same batch) sharing a point with the lead."""

    contact_id: int
    name: str | None
    company: str | None
    city: str | None
    owner_id: int | None
    points: set[tuple[str, str]] = field(default_factory=set)
    tax_id: str | None = None  # of the contact's company
    birth_date: str | None = None
    address: str | None = None
    postcode: str | None = None
    personal_tax_id: str | None = None
    snils: str | None = None
    external_ids: set[tuple[str, str]] = field(default_factory=set)


# The identifying fields a record keeps besides its name and points (a contact in its
# custom fields, a lead in ``custom``), and how a state number is written as compared.
DETAILS = ("birth_date", "address", "postcode")
STATE_NUMBERS: dict[str, Callable[[str], str]] = {
    "personal_tax_id": normalize_personal_tax_id,
    "snils": normalize_snils,
}


def details(custom: Mapping[str, Any] | None) -> dict[str, str]:
    """The identifying fields of ``custom`` as the matcher compares them. A state number
    is kept as digits and only when its check digits hold: a mistyped СНИЛС on a form is
    no evidence, and would be evidence against the right person."""
    if not custom:
        return {}
    out = {key: str(custom[key]) for key in DETAILS if custom.get(key)}
    for key, normalize in STATE_NUMBERS.items():
        if custom.get(key):
            with contextlib.suppress(InvalidPoint):
                out[key] = normalize(str(custom[key]))
    return out


class Matcher(Protocol):
    name: str

    def evidence(self, lead: Incoming, candidate: Candidate) -> list[Evidence]: ...


@dataclass(frozen=True, slots=True)
class Score:
    value: float  # the match probability
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.value:.2f}: " + ", ".join(self.reasons)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Where one field of two records landed; ``value`` is the agreeing value, whose
    frequency in the store weighs an equal level."""

    field: str
    level: str
    value: str | None = None


# Matchers that always run besides the model's comparisons; none are built in any more,
# the list stays for callers that add plugin matchers to it.
BUILTIN: list[Matcher] = []


POINTS = ("phone", "email")


def _mobile(number: str) -> bool:
    return number.startswith("+79")  # Russian mobiles; other numbers count as landlines


def _points(lead: Incoming, candidate: Candidate) -> list[Comparison]:
    out = []
    for kind in ("phone", "email"):
        mine = {p.normalized for p in lead.points if p.kind == kind}
        theirs = {n for k, n in candidate.points if k == kind}
        if not mine or not theirs:
            continue
        common = mine & theirs
        personal = {n for n in common if (kind, n) not in lead.shared}
        # Their own mobiles or mailboxes, where both have one the other lacks, say whether
        # they are one person; a home or office line in common says where they live or
        # work: a couple on one home phone, colleagues on one office line.
        if kind == "phone":
            own = {n for n in mine - common if _mobile(n) and (kind, n) not in lead.shared}
            differ = bool(own) and any(_mobile(n) for n in theirs - common)
            if any(_mobile(n) for n in personal):
                out.append(Comparison(kind, "equal"))
            elif personal and not differ:
                # A landline is a home's or a desk's: family and colleagues answer it too.
                out.append(Comparison(kind, "landline"))
            elif differ:
                out.append(Comparison(kind, "mobile_differs"))
            elif common:
                out.append(_shared(lead, kind, common))
            else:
                out.append(Comparison(kind, "differs"))
        else:
            own = {n for n in mine - common if (kind, n) not in lead.shared}
            other = {n for n in theirs - common if n.split("@", 1)[0] not in GENERIC_MAILBOXES}
            if personal:
                out.append(Comparison(kind, "equal"))
            elif own and other:
                out.append(Comparison(kind, "differs"))
            elif common:
                out.append(_shared(lead, kind, common))
    return out


def _shared(lead: Incoming, kind: str, common: set[str]) -> Comparison:
    few = sorted(n for n in common if (kind, n) in lead.household)
    if few:
        return Comparison(kind, "household", few[0])
    return Comparison(kind, "shared", min(common))


def _close(a: str, b: str) -> bool:
    """A typo: a high edit similarity, or in a word of five letters or more one letter
    added, dropped, changed or two swapped (Indel counts a swap as two edits, too many
    for a short surname)."""
    shortest = min(len(a), len(b))
    if shortest < 4:
        return False
    return fuzz.ratio(a, b) >= CLOSE or (shortest >= 5 and OSA.distance(a, b, score_cutoff=1) <= 1)


def _first(a: PersonName, b: PersonName) -> Comparison | None:
    if a.first and b.first:
        if a.first == b.first:
            return Comparison("first_name", "equal", a.first)
        if _close(a.first, b.first):
            return Comparison("first_name", "close")
        ga, gb = FIRST_NAMES.get(a.first), FIRST_NAMES.get(b.first)
        if ga and gb and ga != gb:  # Иван and Мария: not a nickname, not a typo
            return Comparison("first_name", "gender_differs")
        return Comparison("first_name", "differs")
    x = a.first or a.first_initial
    y = b.first or b.first_initial
    if x and y:
        agrees = x.startswith(y) or y.startswith(x)
        return Comparison("first_name", "initial" if agrees else "differs")
    return None


def _last(a: PersonName, b: PersonName) -> Comparison | None:
    if not a.last or not b.last:
        return None
    if a.last == b.last:
        if a.last_gender and b.last_gender and a.last_gender != b.last_gender:
            return Comparison("last_name", "gender_differs")
        return Comparison("last_name", "equal", a.last)
    # A typo in the ending hides the surname's stem (Нестерниа): the words as written, too.
    close = _close(a.last, b.last) or bool(a.surname and b.surname and _close(a.surname, b.surname))
    return Comparison("last_name", "close" if close else "differs")


def _patronymic(a: PersonName, b: PersonName) -> Comparison | None:
    if a.patronymic and b.patronymic:
        if a.patronymic == b.patronymic or _close(a.patronymic, b.patronymic):
            return Comparison("patronymic", "equal", a.patronymic)
        return Comparison("patronymic", "differs")
    x = a.patronymic or a.patronymic_initial
    y = b.patronymic or b.patronymic_initial
    if x and y:
        agrees = x.startswith(y) or y.startswith(x)
        return Comparison("patronymic", "initial" if agrees else "differs")
    return None


def _agreement(found: list[Comparison | None]) -> int:
    return sum(1 for c in found if c is not None and c.level in ("equal", "close"))


def _names(a: PersonName, b: PersonName) -> list[Comparison]:
    first, last = _first(a, b), _last(a, b)
    if (a.first not in FIRST_NAMES or b.first not in FIRST_NAMES) and _agreement([first, last]) < 2:
        # A first name the list does not know leaves the word order a guess (Снежана
        # Прохоренко, Прохоренко Снежана): the other order, if it agrees better.
        other = swapped(b)
        if other is not None:
            turned = _first(a, other), _last(a, other)
            if _agreement(list(turned)) > _agreement([first, last]):
                b = other
                first, last = turned
    out = [c for c in (first, last, _patronymic(a, b)) if c is not None]
    if not (a.first and b.first) and a.gender and b.gender:
        out.append(Comparison("gender", "equal" if a.gender == b.gender else "differs"))
    return out


def _company(lead: Incoming, candidate: Candidate) -> Comparison | None:
    # No extra weight for the same full name at one company: namesakes work together in
    # big companies, and only a personal phone, mailbox, birth date or patronymic tells
    # them apart.
    if lead.tax_id and candidate.tax_id:
        same = lead.tax_id == candidate.tax_id
        return Comparison("company", "tax_equal" if same else "tax_differs")
    similarity = company_similarity(lead.company, candidate.company)
    if similarity is None:
        return None
    return Comparison("company", "equal" if similarity >= 0.9 else "differs")


def _dates(a: str, b: str) -> str:
    if a == b:
        return "equal"
    if len(a) == len(b) == 10 and a[:4] == b[:4]:
        swapped = a[5:7] == b[8:10] and a[8:10] == b[5:7]
        one_digit = sum(x != y for x, y in zip(a, b, strict=True)) == 1
        if swapped or one_digit:
            return "close"
    return "differs"


def _digits(text: str) -> list[str]:
    return "".join(c if c.isdigit() else " " for c in text).split()


def _address(a: str, b: str) -> str:
    ka, kb = place_key(a), place_key(b)
    if _digits(ka) != _digits(kb):  # another house or flat: neighbours, not one person
        return "differs"
    similarity = fuzz.token_set_ratio(ka, kb)
    if similarity >= 90:
        return "equal"
    return "close" if similarity >= 75 else "differs"


def _external(mine: set[tuple[str, str]], theirs: set[tuple[str, str]]) -> Comparison | None:
    """Ids of one named system: the same id, or only other ids of it. An id without a
    system (a legacy column) or of a system the other record has no id in says nothing."""
    systems = {s for s, _ in mine if s} & {s for s, _ in theirs if s}
    if not systems:
        return None
    if mine & theirs:
        return Comparison("external_id", "equal")
    return Comparison("external_id", "differs")


def compare(lead: Incoming, candidate: Candidate) -> list[Comparison]:
    """The comparison vector of a lead and a candidate; a field missing on either side
    is left out (it weighs nothing)."""
    out = _points(lead, candidate)
    a = parse_name(lead.name) if lead.name else None
    b = parse_name(candidate.name) if candidate.name else None
    if a is not None and b is not None:
        out += _names(a, b)
    company = _company(lead, candidate)
    if company is not None:
        out.append(company)
        if company.level in ("equal", "tax_equal"):
            # Colleagues share the office line and mailbox: with the company known to be
            # the same, they say nothing more (the two are not independent evidence).
            out = [c for c in out if c.level not in ("shared", "household")]
    if lead.city and candidate.city:
        x, y = place_key(lead.city), place_key(candidate.city)
        if x == y or _close(x, y):
            out.append(Comparison("city", "equal", x))
        elif x and y:
            out.append(Comparison("city", "differs"))
    if lead.birth_date and candidate.birth_date:
        out.append(Comparison("birth_date", _dates(lead.birth_date, candidate.birth_date)))
    if lead.address and candidate.address:
        where = Comparison("address", _address(lead.address, candidate.address))
        # A home's phone or mailbox in common and one address say one thing, that the two
        # live together (a couple, parent and child): weighed once, as the phone or mailbox.
        home = any(c.level in ("landline", "household") for c in out if c.field in POINTS)
        if not (home and where.level in ("equal", "close")):
            out.append(where)
    if lead.postcode and candidate.postcode:
        same = lead.postcode.strip() == candidate.postcode.strip()
        out.append(Comparison("postcode", "equal" if same else "differs"))
    for name in ("personal_tax_id", "snils"):
        mine, theirs = getattr(lead, name), getattr(candidate, name)
        if mine and theirs:
            out.append(Comparison(name, "equal" if mine == theirs else "differs"))
    external = _external(lead.external_ids, candidate.external_ids)
    if external is not None:
        out.append(external)
    return out


def signed(bits: float) -> str:
    return f"+{bits:.1f}" if bits >= 0 else f"−{-bits:.1f}"


def _odds_bits(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log2(p / (1 - p))


JOIN_REFERENCE = 0.9  # where a doubt's factor is read as a change of odds


def evidence_bits(item: Evidence, model: MatchModel) -> float:
    """A plugin matcher's evidence as a partial weight.

    Support ``w`` means "on this evidence alone, a match with probability ``w``", so its
    weight is the log odds of ``w`` less the prior; a doubt's factor ``f`` is the change
    of odds that multiplying a score of 0.9 by ``f`` would make.
    """
    if item.bits is not None:
        return item.bits
    if item.doubt:
        factor = min(max(item.weight, 0.0), 1.0)
        return _odds_bits(JOIN_REFERENCE * factor) - _odds_bits(JOIN_REFERENCE)
    return max(_odds_bits(item.weight) - model.prior, 0.0)


def weigh(comparisons: list[Comparison], model: MatchModel) -> list[tuple[float, str]]:
    out = []
    for c in comparisons:
        bits, note = model.weight(c.field, c.level, c.value)
        label = LEVELS[c.field][c.level][0]
        if c.level in ("shared", "household") and c.value:
            label = f"{label} {c.value}"
        out.append((bits, f"{label} ({note})" if note else label))
    return out


def partial_weights(
    lead: Incoming,
    candidate: Candidate,
    matchers: list[Matcher] | tuple[Matcher, ...] = (),
    model: MatchModel | None = None,
) -> list[tuple[float, str]]:
    """Each comparison's and each plugin evidence's weight in bits, with its reason."""
    model = model or DEFAULT
    parts = weigh(compare(lead, candidate), model)
    for matcher in matchers:
        for item in matcher.evidence(lead, candidate):
            parts.append((evidence_bits(item, model), item.reason))
    return parts


def explain(parts: list[tuple[float, str]], model: MatchModel | None = None) -> Score:
    """The score of these partial weights: the probability, the reasons strongest first."""
    model = model or DEFAULT
    parts = sorted(parts, key=lambda part: -part[0])
    total = sum(bits for bits, _ in parts)
    reasons = tuple(f"{reason} {signed(bits)}" for bits, reason in parts)
    return Score(round(model.probability(total), 4), reasons)


def score(
    lead: Incoming,
    candidate: Candidate,
    matchers: list[Matcher] | tuple[Matcher, ...] = (),
    model: MatchModel | None = None,
) -> Score:
    """The match probability of ``lead`` and ``candidate``, with the partial weights."""
    return explain(partial_weights(lead, candidate, matchers, model), model)
