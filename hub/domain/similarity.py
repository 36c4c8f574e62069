"""Comparing what people type: names across word order, initials, diminutives and alphabets,
company names without legal forms and quotes.

``Дмитрий Соколов`` ~ ``Dmitriy Sokolov`` ~ ``Sokolov D.`` ~ ``Дима Соколов``;
``ООО «Ромашка»`` ~ ``Romashka LLC``. Transliteration is anyascii's; edit similarity rapidfuzz's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from anyascii import anyascii
from rapidfuzz import fuzz

DATA = Path(__file__).parent / "data"
_WORD = re.compile(r"[^\w]+", re.UNICODE)


def _pairs(name: str) -> dict[str, str]:
    pairs = {}
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            short, full = line.split()
            pairs[short] = full
    return pairs


def _words(name: str) -> set[str]:
    return {
        line.strip()
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }


DIMINUTIVES = _pairs("diminutives.txt")
LEGAL_FORMS = _words("legal_forms.txt")


def _latin(word: str) -> str:
    # Spelling variants of one transliteration: Dmitriy/Dmitrii, Yulia/Yuliya, Aleksey/Alexey.
    text = anyascii(word).lower()
    text = text.replace("x", "ks").replace("iy", "i").replace("yi", "i").replace("ii", "i")
    return text.replace("ya", "ia").replace("yu", "iu").replace("'", "").replace("j", "i")


INITIAL = "."  # marks a token that was an initial: "Ю." → "iu."


@lru_cache(maxsize=65536)
def name_tokens(name: str) -> tuple[str, ...]:
    """Lower-case Latin tokens of a person's name, diminutives expanded, sorted.

    An initial is told apart before transliteration (Ю becomes "iu", two letters)
    and keeps a trailing dot.
    """
    words = [w for w in _WORD.split(name.lower().replace("ё", "е")) if w]
    return tuple(
        sorted(_latin(w) + INITIAL if len(w) == 1 else _latin(DIMINUTIVES.get(w, w)) for w in words)
    )


def is_initial(token: str) -> bool:
    return token.endswith(INITIAL)


def _token_score(a: str, b: str) -> float:
    if is_initial(a) or is_initial(b):
        x, y = a.rstrip(INITIAL), b.rstrip(INITIAL)
        return 1.0 if x.startswith(y) or y.startswith(x) else 0.0
    return fuzz.ratio(a, b) / 100


def _aligned(a: str, b: str) -> tuple[list[tuple[float, bool]], int, int] | None:
    """Token pairs of two names, best first; each (score, both full words)."""
    ta, tb = name_tokens(a), name_tokens(b)
    if not ta or not tb:
        return None
    short, long_ = (ta, tb) if len(ta) <= len(tb) else (tb, ta)
    scores = sorted(
        ((_token_score(x, y), i, j) for i, x in enumerate(short) for j, y in enumerate(long_)),
        reverse=True,
    )
    used_i: set[int] = set()
    used_j: set[int] = set()
    pairs = []
    for score, i, j in scores:
        if i in used_i or j in used_j:
            continue
        used_i.add(i)
        used_j.add(j)
        pairs.append((score, not is_initial(short[i]) and not is_initial(long_[j])))
    return pairs, len(short), len(long_)


def name_similarity(a: str | None, b: str | None) -> float | None:
    """0..1 similarity of two person names; None when either is missing.

    Tokens are aligned greedily, best pairs first, so word order does not
    matter; an initial matches a word with its letter. A name of one word
    compared with a fuller one scores at most 0.9: "Иван" says little.
    """
    if not a or not b:
        return None
    aligned = _aligned(a, b)
    if aligned is None:
        return None
    pairs, n_short, n_long = aligned
    result = sum(score for score, _ in pairs) / n_short
    if n_short == 1 and n_long > 1:
        result *= 0.9
    if not any(full for _, full in pairs):  # initials only
        result *= 0.5
    return round(result, 3)


def full_names_agree(a: str | None, b: str | None) -> bool:
    """Both names have two or more whole words, and every word has its counterpart."""
    if not a or not b:
        return False
    ta, tb = name_tokens(a), name_tokens(b)
    if len(ta) < 2 or len(tb) < 2 or any(is_initial(t) for t in (*ta, *tb)):
        return False
    aligned = _aligned(a, b)
    return aligned is not None and all(score >= 0.9 for score, _ in aligned[0])


def names_conflict(a: str | None, b: str | None) -> bool:
    """Two names with a whole word that matches nothing in the other: Галина vs Иван Лебедев.

    Spouses on one home phone and colleagues on one office line share a surname or
    a number, not a first name; spelling variants, typos and diminutives score
    well above the 0.7 this needs.
    """
    if not a or not b:
        return False
    aligned = _aligned(a, b)
    return aligned is not None and any(full and score < 0.7 for score, full in aligned[0])


@lru_cache(maxsize=65536)
def company_key(name: str) -> str:
    """A company name without quotes, legal forms and case, in Latin letters."""
    words = [w for w in _WORD.split(name.lower().replace("ё", "е")) if w]
    kept = [w for w in words if w not in LEGAL_FORMS and _latin(w) not in LEGAL_FORMS]
    return " ".join(_latin(w) for w in kept)


def company_similarity(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    ka, kb = company_key(a), company_key(b)
    if not ka or not kb:
        return None
    return round(fuzz.token_sort_ratio(ka, kb) / 100, 3)


def _genders(name: str) -> dict[str, str]:
    pairs = {}
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            word, gender = line.split()
            pairs[_latin(word.replace("ё", "е"))] = gender
    return pairs


FIRST_NAMES = _genders("first_names.txt")
# Latin endings of Russian surnames and patronymics, longest first; "" is the stem's end.
_FEMALE_LAST = (("skaia", "ski"), ("tskaia", "tski"), ("ova", "ov"), ("eva", "ev"), ("ina", "in"))
_FEMALE_LAST += (("yna", "yn"),)
_MALE_LAST = ("ski", "ov", "ev", "in", "yn")
_PATRONYMIC = {"ovich": "m", "evich": "m", "ich": "m", "ovna": "f", "evna": "f", "ichna": "f"}


@dataclass(frozen=True, slots=True)
class PersonName:
    """A person's name taken apart: Latin, diminutives expanded; a surname by its stem
    (Васильева → ``vasilev``) with its gender kept apart."""

    first: str | None = None
    last: str | None = None
    last_gender: str | None = None
    patronymic: str | None = None
    first_initial: str | None = None
    patronymic_initial: str | None = None
    gender: str | None = None  # m | f, from the first name, patronymic or surname
    surname: str | None = None  # the surname as written, in Latin (a typo may hide its ending)


def _surname(word: str) -> tuple[str, str | None]:
    for ending, stem in _FEMALE_LAST:
        if word.endswith(ending) and len(word) > len(ending) + 1:
            return word[: -len(ending)] + stem, "f"
    if word.endswith(_MALE_LAST) and len(word) > 4:
        return word, "m"
    return word, None


def _patronymic(word: str) -> str | None:
    if len(word) < 6:
        return None
    for ending, gender in _PATRONYMIC.items():
        if word.endswith(ending):
            return gender
    return None


@lru_cache(maxsize=65536)
def parse_name(name: str) -> PersonName | None:
    """First name, surname and patronymic of a name in any order and alphabet.

    A known first name (after diminutives) is the first name, a word ending like a
    patronymic (-ович, -овна) the patronymic, initials go to the first name and then
    the patronymic; of the other words the first is the surname.
    """
    words = [w for w in _WORD.split(name.lower().replace("ё", "е")) if w and not w.isdigit()]
    if not words:
        return None
    first = patronymic = None
    initials: list[str] = []
    others: list[str] = []
    for word in words:
        latin = _latin(DIMINUTIVES.get(word, word))
        if len(word) == 1:
            initials.append(latin)
        elif first is None and latin in FIRST_NAMES:
            first = latin
        elif patronymic is None and _patronymic(latin):
            patronymic = latin
        else:
            others.append(latin)
    if first is None and len(others) >= 2:
        # An unknown first name: the word that looks like a surname is the surname.
        index = next((i for i, w in enumerate(others) if _surname(w)[1]), 1)
        first = others.pop(1 - index if index < 2 else 0)
    last = others[0] if others else None
    first_initial = patronymic_initial = None
    if initials:
        if first is None:
            first_initial = initials[0]
            initials = initials[1:]
        if initials and patronymic is None:
            patronymic_initial = initials[0]
    stem, last_gender = _surname(last) if last else (None, None)
    gender = FIRST_NAMES.get(first or "") or (_patronymic(patronymic) if patronymic else None)
    return PersonName(
        first=first,
        last=stem,
        last_gender=last_gender,
        patronymic=patronymic,
        first_initial=first_initial,
        patronymic_initial=patronymic_initial,
        gender=gender or last_gender,
        surname=last,
    )


@lru_cache(maxsize=16384)
def place_key(text: str) -> str:
    """A city or an address in Latin letters without punctuation: Самара = Samara."""
    words = [w for w in _WORD.split(text.lower().replace("ё", "е")) if w]
    return " ".join(_latin(w) for w in words)


_VOWELS = frozenset("aeiouy")


def skeleton(word: str) -> str:
    """The first letter and the consonants, doubles once: spelling variants of one
    transliteration meet (vasilev, vasiliev → vslv; aleksei, aleksey → alks)."""
    out = word[:1]
    for ch in word[1:]:
        if ch not in _VOWELS and ch.isalpha() and ch != out[-1]:
            out += ch
    return out


@lru_cache(maxsize=65536)
def person_key(name: str | None) -> str | None:
    """A person's name as a key: surname stem and first name skeletons, in any order and
    alphabet, diminutives expanded, the surname's gender left out (``Васильева Маша`` and
    ``Maria Vasilieva`` are ``vslv|mr``); the initial for a first name given as one
    (``Васильева М.``: ``vslv|m``). None without a surname and a first name or initial."""
    parsed = parse_name(name) if name else None
    if parsed is None or not parsed.last:
        return None
    if parsed.first:
        return f"{skeleton(parsed.last)}|{skeleton(parsed.first)}"[:120]
    if parsed.first_initial:
        return f"{skeleton(parsed.last)}|{parsed.first_initial[:1]}"[:120]
    return None


def swapped(name: PersonName) -> PersonName | None:
    """The name with first name and surname exchanged, for a name whose word order was a
    guess; None without both."""
    if not name.first or not name.surname:
        return None
    stem, gender = _surname(name.first)
    return replace(
        name,
        first=name.surname,
        last=stem,
        last_gender=gender,
        surname=name.first,
        gender=name.gender if name.first in FIRST_NAMES else gender,
    )
