"""Dedupe benchmark: how well and how fast the hub recognises a person it already knows.

    .venv/bin/python bench/dedupe.py [--people N] [--contacts N] [--seed S] [--misses N]
    .venv/bin/python bench/dedupe.py --quality-only     # the quality figures, a few minutes

1. *Quality.* A generator makes realistic CRM records: one to four records per
   person, with Russian and Latin names, every local phone format, typos, swapped
   name order, initials, diminutives, transliteration, gmail dots and tags, and
   the hard cases: colleagues on one office phone, generic mailboxes, spouses on
   one home phone. A second generator ("namesakes-couples-offline", not used to tune
   the matcher) adds namesakes at one company, couples on a home phone at one address
   and people known by name, birth date and address only. In both a person's later
   record keeps one of their own identifiers (a phone, a mailbox, or the birth date
   offline): a phone-only and an email-only record sharing only a common name and a
   city are no pair anyone could link.

   Each set is judged four ways, each printed with pairwise and cluster figures:

   - *hub import contacts* (the headline): the records are written to files and
     imported into an empty store through the hub's importer, with its per-row report
     (what ``hub import contacts FILE --report results.csv`` writes: row, external id,
     decision, contact id, ...); each record belongs to the contact its row went to.
     The importer refuses a row without phone or email in a file with such columns,
     so the records without (offline) are a second file, imported after the first;
     a row it rejects (no name, phone or email) is a contact of its own.
   - *import, then scan*: ``hub dedupe scan`` over the imported store; the contacts
     of each proposed cluster count as one.
   - *scan (a record a contact)*: ``hub dedupe scan`` over a store holding each record
     as its own contact, as a naive import leaves it.
   - *as leads (simulated)*: the records replayed in Python as intake places leads
     one by one (candidates through shared points and name blocks, the score against
     ``matching.join``), pairwise figures only.

   Then `hub dedupe train` learns a model from the naive store, and the scan and the
   replay run again with it.

   Pairwise: every two records of one predicted person are a predicted pair; precision
   is the share of predicted pairs that are one true person, recall the share of true
   pairs predicted, F1 their harmonic mean. A true pair the matcher never compared is a
   miss. Cluster: the records are partitioned into predicted people (singletons
   included: a record alone is a cluster of one); cluster precision is the share of
   predicted clusters that are exactly a true person's records, recall the share of
   true people whose records are exactly one predicted cluster, F1 their harmonic
   mean. One wrong merge or one record left out spoils a whole cluster, so these are
   stricter than the pairwise figures. ``--misses N`` prints the N commonest patterns
   of missed and wrong pairs (which fields both records have, what they share), with
   examples.
2. *Speed.* A SQLite store with ``--contacts`` contacts (default 1,000,000) is
   built, then single leads are matched against it through the real pipeline
   (index look-ups, candidate load, scoring), and p50/p99 are printed next to
   the cost of the same transaction doing nothing (the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.config import Settings  # noqa: E402
from hub.domain.blocking import (  # noqa: E402
    MAX_BLOCK,
    birth_key,
    detail_block,
    lookups,
    name_blocks,
)
from hub.domain.matching import BUILTIN, HOUSEHOLD, Candidate, Incoming, score  # noqa: E402
from hub.domain.normalize import InvalidPoint, canonical_email, normalize_email, normalize_phone  # noqa: E402
from hub.domain.similarity import DIMINUTIVES, person_key  # noqa: E402

MALE = [
    "Александр",
    "Дмитрий",
    "Сергей",
    "Андрей",
    "Алексей",
    "Иван",
    "Михаил",
    "Николай",
    "Евгений",
    "Павел",
    "Владимир",
    "Константин",
    "Роман",
    "Виктор",
    "Олег",
    "Юрий",
]
FEMALE = [
    "Елена",
    "Ольга",
    "Наталья",
    "Татьяна",
    "Ирина",
    "Мария",
    "Анна",
    "Екатерина",
    "Светлана",
    "Юлия",
    "Анастасия",
    "Марина",
    "Ксения",
    "Дарья",
    "Галина",
    "Вера",
]
LAST = [
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
    "Павлов",
    "Козлов",
    "Степанов",
    "Николаев",
    "Орлов",
    "Андреев",
    "Макаров",
    "Никитин",
    "Захаров",
    "Зайцев",
    "Соловьёв",
    "Борисов",
    "Яковлев",
    "Григорьев",
    "Романов",
    "Воробьёв",
]
DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru", "list.ru", "rambler.ru"]
COMPANIES = ["Ромашка", "Вектор", "СтройМаркет", "Техносила", "Уралснаб", "Северсталь-Сервис"]
CITIES = ["Москва", "Екатеринбург", "Вологда", "Казань", "Пермь", "Новосибирск"]
PHONE_STYLES = [
    "+7 {o} {a}-{b}-{c}",
    "8 ({o}) {a}-{b}-{c}",
    "{o}{a}{b}{c}",
    "8{o}{a}{b}{c}",
    "+7({o}){a}{b}{c}",
    "7 {o} {a} {b} {c}",
    "8-{o}-{a}-{b}-{c}",
]
LATIN = str.maketrans(
    {
        "а": "a",
        "б": "b",
        "в": "v",
        "г": "g",
        "д": "d",
        "е": "e",
        "ё": "e",
        "ж": "zh",
        "з": "z",
        "и": "i",
        "й": "y",
        "к": "k",
        "л": "l",
        "м": "m",
        "н": "n",
        "о": "o",
        "п": "p",
        "р": "r",
        "с": "s",
        "т": "t",
        "у": "u",
        "ф": "f",
        "х": "kh",
        "ц": "ts",
        "ч": "ch",
        "ш": "sh",
        "щ": "shch",
        "ъ": "",
        "ы": "y",
        "ь": "",
        "э": "e",
        "ю": "yu",
        "я": "ya",
    }
)
SHORT = {full: short for short, full in DIMINUTIVES.items()}


@dataclass
class Record:
    person: int
    name: str | None
    phones: list[str]
    emails: list[str]
    company: str | None
    city: str | None
    birth_date: str | None = None
    address: str | None = None


def translit(text: str) -> str:
    return " ".join(w.lower().translate(LATIN).capitalize() for w in text.split())


def fmt_phone(digits: str, rng: random.Random) -> str:
    style = rng.choice(PHONE_STYLES)
    return style.format(o=digits[:3], a=digits[3:6], b=digits[6:8], c=digits[8:])


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def vary_name(first: str, last: str, rng: random.Random) -> str | None:
    kind = rng.random()
    if kind < 0.05:
        return None
    if kind < 0.25:
        return f"{last} {first}"
    if kind < 0.35:
        return f"{last} {first[0]}."
    if kind < 0.50:
        return translit(f"{first} {last}")
    if kind < 0.58 and first.lower() in SHORT:
        return f"{SHORT[first.lower()].capitalize()} {last}"
    if kind < 0.66:
        return f"{first} {typo(last, rng)}"
    if kind < 0.72:
        return first
    return f"{first} {last}"


def generate(people: int, rng: random.Random) -> list[Record]:
    records: list[Record] = []
    offices = [
        ("".join(rng.choice("0123456789") for _ in range(7)), rng.choice(COMPANIES))
        for _ in range(max(1, people // 40))
    ]
    for person in range(people):
        female = rng.random() < 0.5
        first = rng.choice(FEMALE if female else MALE)
        last = rng.choice(LAST) + ("а" if female else "")
        mobile = rng.choice(["912", "903", "916", "926", "985", "950"]) + "".join(
            rng.choice("0123456789") for _ in range(7)
        )
        # A personal mailbox belongs to one person: namesakes get different addresses.
        login = translit(f"{first}.{last}").lower().replace(" ", "") + str(rng.randrange(10000))
        domain = rng.choice(DOMAINS)
        email = f"{login}@{domain}"
        office = rng.choice(offices) if rng.random() < 0.2 else None
        city = rng.choice(CITIES)
        spouse = rng.random() < 0.05 and records
        held: set[str] = set()  # the person's own identifiers on earlier copies
        for copy in range(rng.choice([1, 1, 2, 2, 3, 4])):
            phones, emails = [], []
            mine = set()
            if rng.random() < 0.85:
                phones.append(fmt_phone(mobile, rng))
                mine.add("mobile")
            if office and rng.random() < 0.5:
                phones.append(fmt_phone("343" + office[0], rng))
            if rng.random() < 0.6:
                address = email
                if domain == "gmail.com" and rng.random() < 0.3:
                    address = login.replace(".", "") + "+crm@gmail.com"
                emails.append(address.upper() if rng.random() < 0.1 else address)
                mine.add("email")
            if office and rng.random() < 0.3:
                emails.append(f"info@{translit(office[1]).lower()}.ru")
            if not phones and not emails:
                phones.append(fmt_phone(mobile, rng))
                mine.add("mobile")
            if copy and not mine & held:
                # A later record keeps one of the person's own identifiers: a phone-only
                # and an email-only record of a common name are no pair anyone could link.
                if "email" in held:
                    emails.insert(0, email)
                    mine.add("email")
                else:
                    phones.insert(0, fmt_phone(mobile, rng))
                    mine.add("mobile")
            held |= mine
            name = f"{first} {last}" if copy == 0 else vary_name(first, last, rng)
            records.append(
                Record(person, name, phones, emails, office[1] if office else None, city)
            )
        if spouse:  # a spouse on the same home phone: a different person
            other = records[-1]
            partner = rng.choice(MALE if female else FEMALE)
            partner_last = last[:-1] if female else last + "а"
            records.append(
                Record(
                    people + person,
                    f"{partner} {partner_last}",
                    list(other.phones[:1]),
                    [],
                    None,
                    city,
                )
            )
    return records


# The second configuration, not used to tune the matcher: other names (some the matcher's
# name list does not know), big companies with namesakes, couples on a home phone and at
# one address, and people known by name, birth date and address only.
HARD_MALE = [*MALE, "Ростислав", "Богдан", "Тимур", "Глеб", "Арсений", "Вадим", "Эдуард"]
HARD_FEMALE = [*FEMALE, "Арина", "Эльвира", "Лилия", "Алла", "Полина", "Зоя", "Снежана"]
ROOTS = [
    "Бел",
    "Чер",
    "Сид",
    "Карп",
    "Гусе",
    "Жук",
    "Лоск",
    "Мельник",
    "Пономар",
    "Тарас",
    "Ковал",
    "Шевел",
    "Гонча",
    "Рыб",
    "Медвед",
    "Кулик",
    "Сорок",
    "Щеглов",
    "Дроздов",
    "Быстр",
    "Тихон",
    "Ершов",
    "Клим",
    "Сав",
    "Дани",
    "Ларион",
    "Мирон",
    "Прохор",
    "Ефим",
    "Фомич",
    "Устин",
    "Харит",
    "Лукин",
    "Нестер",
    "Осип",
    "Рябин",
    "Тюрин",
]
ENDINGS = [("ов", "ова"), ("ев", "ева"), ("ин", "ина"), ("ский", "ская"), ("енко", "енко")]
STREETS = ["Ленина", "Мира", "Гагарина", "Советская", "Победы", "Садовая", "Lenina", "Mira"]
HARD_CITIES = [("Самара", "Samara"), ("Казань", "Kazan"), ("Пермь", "Perm"), ("Тула", "Tula")]


def patronymic(father: str, female: bool) -> str:
    stem = father[:-1] if father.endswith(("й", "ь")) else father
    if father.endswith("й"):
        return stem + ("евна" if female else "евич")
    return stem + ("овна" if female else "ович")


def _born(rng: random.Random) -> str:
    return f"{rng.randrange(1950, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"


def _house(city: str, rng: random.Random) -> str:
    street = rng.choice(STREETS)
    return f"{city}, ул. {street}, д. {rng.randrange(1, 120)}, кв. {rng.randrange(1, 200)}"


def generate_hard(people: int, rng: random.Random) -> list[Record]:
    records: list[Record] = []
    surnames = [
        (root + m, root + f) for root in ROOTS for m, f in ENDINGS if not root.endswith("ов")
    ] + [(root, root + "а") for root in ROOTS if root.endswith("ов")]
    companies = [
        (f"{rng.choice(COMPANIES)}-{i}", "".join(rng.choice("0123456789") for _ in range(7)))
        for i in range(max(2, people // 200))
    ]
    person = 0
    while person < people:
        female = rng.random() < 0.5
        male_last, female_last = rng.choice(surnames)
        city = rng.choice(HARD_CITIES)
        home = rng.choice(["846", "843", "342", "487"]) + "".join(
            rng.choice("0123456789") for _ in range(7)
        )
        house = _house(city[0], rng)
        company = rng.choice(companies) if rng.random() < 0.35 else None
        first = rng.choice(HARD_FEMALE if female else HARD_MALE)
        # (first, last, patronymic, birth date, address, home phone, company, role)
        group = [
            (
                first,
                female_last if female else male_last,
                patronymic(rng.choice(MALE), female),
                _born(rng),
                house,
                None,
                company,
            )
        ]
        if company and rng.random() < 0.15:  # a namesake colleague: another person
            group.append(
                (
                    first,
                    group[0][1],
                    patronymic(rng.choice(MALE), female),
                    _born(rng),
                    _house(rng.choice(HARD_CITIES)[0], rng),
                    None,
                    company,
                )
            )
        if rng.random() < 0.15:  # a couple: a home phone and an address, one surname
            group[0] = (*group[0][:5], home, company)
            other = not female
            group.append(
                (
                    rng.choice(HARD_FEMALE if other else HARD_MALE),
                    female_last if other else male_last,
                    patronymic(rng.choice(MALE), other),
                    _born(rng),
                    house,
                    home,
                    None,
                )
            )
        for index, (first_, last_, middle, born, address, home_, company_) in enumerate(group):
            offline = rng.random() < 0.2  # known by name, birth date and address only
            mobile = rng.choice(["912", "903", "916", "927", "937", "950"]) + "".join(
                rng.choice("0123456789") for _ in range(7)
            )
            login = translit(f"{first_[0]}.{last_}").lower().replace(" ", "") + str(
                rng.randrange(100, 10000)
            )
            email = f"{login}@{rng.choice(DOMAINS)}"
            held: set[str] = set()  # the person's own identifiers on earlier copies
            for copy in range(rng.choice([1, 2, 2, 3])):
                phones: list[str] = []
                emails: list[str] = []
                mine = set()
                if not offline:
                    if rng.random() < 0.7:
                        phones.append(fmt_phone(mobile, rng))
                        mine.add("mobile")
                    if home_ and rng.random() < 0.5:
                        phones.append(fmt_phone(home_, rng))
                    if company_ and rng.random() < 0.5:
                        phones.append(fmt_phone("846" + company_[1], rng))
                    if rng.random() < 0.5:
                        emails.append(email)
                        mine.add("email")
                    if company_ and rng.random() < 0.3:
                        emails.append(f"info@{translit(company_[0]).lower()}.ru")
                    if not phones and not emails:
                        phones.append(fmt_phone(mobile, rng))
                        mine.add("mobile")
                name = f"{last_} {first_} {middle}" if copy == 0 else vary_name(first_, last_, rng)
                if name and copy and rng.random() < 0.3:
                    name = f"{name} {middle}"
                city_ = city[1] if rng.random() < 0.3 else city[0]
                born_ = born if rng.random() < (0.9 if offline else 0.4) else None
                address_ = address if rng.random() < (0.9 if offline else 0.3) else None
                if born_:
                    mine.add("born")
                if copy and not mine & held:
                    # A later record keeps one of the person's own identifiers (a phone, a
                    # mailbox, the birth date): records sharing only a name, a city and an
                    # office line or a household's address are no pair anyone could link.
                    if "mobile" in held:
                        phones.insert(0, fmt_phone(mobile, rng))
                        mine.add("mobile")
                    elif "email" in held:
                        emails.insert(0, email)
                        mine.add("email")
                    else:
                        born_ = born
                        mine.add("born")
                held |= mine
                records.append(
                    Record(
                        person + index,
                        name,
                        phones,
                        emails,
                        company_[0] if company_ else None,
                        city_,
                        born_,
                        address_,
                    )
                )
        person += len(group)
    return records


def keys(record: Record, settings: Settings) -> set[tuple[str, str]]:
    found = set()
    for raw in record.phones:
        with contextlib.suppress(InvalidPoint):
            found.add(("phone", normalize_phone(raw, "RU")))
    for raw in record.emails:
        with contextlib.suppress(InvalidPoint):
            found.add(
                (
                    "email",
                    canonical_email(
                        normalize_email(raw),
                        frozenset(settings.matching.dotless_domains),
                        frozenset(settings.matching.plus_tag_domains),
                    ),
                )
            )
    return found


def quality(records: list[Record], settings: Settings, model=None) -> dict[str, float]:
    """Replay the records as leads, in order, the way the hub places them, and score the result.

    Each record either joins the best-scoring contact (at or above ``matching.join``),
    whose points it then extends, or becomes a new contact; candidates are the
    contacts holding one of its points, and a point on ``shared_after`` contacts or
    a generic mailbox is weak evidence, exactly as in the lead pipeline.
    """
    from hub.domain.normalize import Point

    m = settings.matching
    generic = {g.lower() for g in m.generic_mailboxes}
    contacts: list[dict] = []  # name, company, city, points, members
    holders: dict[tuple[str, str], list[int]] = {}
    blocked: dict[tuple[str, str], list[int]] = {}  # name blocks, as hub/leads.py reads them
    for index, record in enumerate(records):
        ks = keys(record, settings)
        candidates = {c for k in ks for c in holders.get(k, [])}
        blocks = name_blocks(
            record.name,
            birth_date=record.birth_date,
            company=record.company,
            city=record.city,
            address=record.address,
        )
        if (home := detail_block(record.birth_date, record.address)) is not None:
            blocks.add(home)  # a card without a surname, as intake finds it
        for block in blocks:
            if len(blocked.get(block, ())) <= MAX_BLOCK:
                candidates.update(blocked.get(block, ()))
        is_generic = {k for k in ks if k[0] == "email" and k[1].split("@")[0] in generic}
        shared = is_generic | {k for k in ks if len(holders.get(k, [])) >= m.shared_after}
        household = {k for k in shared - is_generic if len(holders.get(k, [])) <= HOUSEHOLD}
        lead = Incoming(
            record.name,
            record.company,
            record.city,
            [Point(kind, norm, norm) for kind, norm in ks],
            shared,
            household=household,
            birth_date=record.birth_date,
            address=record.address,
        )
        best, best_score = None, 0.0
        for c in sorted(candidates):
            contact = contacts[c]
            result = score(
                lead,
                Candidate(
                    c,
                    contact["name"],
                    contact["company"],
                    contact["city"],
                    None,
                    contact["points"],
                    birth_date=contact["birth_date"],
                    address=contact["address"],
                ),
                BUILTIN,
                model,
            )
            if result.value > best_score:
                best, best_score = c, result.value
        if best is None or best_score < m.join:
            best = len(contacts)
            for block in blocks:  # a new contact is known by its record's name blocks
                blocked.setdefault(block, []).append(best)
            contacts.append(
                {
                    "name": record.name,
                    "company": record.company,
                    "city": record.city,
                    "birth_date": record.birth_date,
                    "address": record.address,
                    "points": set(),
                    "members": [],
                }
            )
        contact = contacts[best]
        contact["members"].append(index)
        for k in ks:
            if k not in contact["points"]:
                contact["points"].add(k)
                holders.setdefault(k, []).append(best)

    truth = true_pairs(records)
    linked = {(a, b) for c in contacts for a, b in itertools.combinations(c["members"], 2)}
    tp, fp, fn, precision, recall, f1 = pairwise(linked, truth)
    unreachable = sum(
        1 for a, b in truth if not (keys(records[a], settings) & keys(records[b], settings))
    )
    return {
        "records": len(records),
        "true_pairs": len(truth),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "no_shared_point": unreachable,
        "contacts": len(contacts),
    }


def true_pairs(records: list[Record]) -> set[tuple[int, int]]:
    by_person: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_person.setdefault(r.person, []).append(i)
    return {(a, b) for ids in by_person.values() for a, b in itertools.combinations(ids, 2)}


def pairwise(linked: set, truth: set) -> tuple[int, int, int, float, float, float]:
    tp, fp, fn = len(linked & truth), len(linked - truth), len(truth - linked)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return tp, fp, fn, precision, recall, f1


def build_store(path: Path, contacts: int, rng: random.Random) -> list[str]:
    """A migrated SQLite store with ``contacts`` contacts, two points each; returns some phones."""
    from hub.store import Store

    async def migrate() -> None:
        store = Store(f"sqlite+aiosqlite:///{path}")
        await store.upgrade()
        await store.close()

    asyncio.run(migrate())
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    phones = []
    chunk = 50_000
    for start in range(0, contacts, chunk):
        rows, points = [], []
        for cid in range(start + 1, min(contacts, start + chunk) + 1):
            female = cid % 2
            first = rng.choice(FEMALE if female else MALE)
            name = f"{first} {rng.choice(LAST)}{'а' if female else ''}"
            rows.append((cid, name, person_key(name), CITIES[cid % len(CITIES)], "{}", now, now))
            phone = f"+79{cid:09d}"
            points.append((cid, "phone", phone, phone, now))
            points.append((cid, "email", f"c{cid}@mail.ru", f"c{cid}@mail.ru", now))
            if cid % 997 == 0:
                phones.append(phone)
        db.executemany(
            "INSERT INTO contacts (id, name, name_key, city, custom, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany(
            "INSERT INTO contact_points (contact_id, kind, value, normalized, "
            "created_at) VALUES (?, ?, ?, ?, ?)",
            points,
        )
        db.commit()
    db.close()
    return phones


async def latency(
    path: Path, phones: list[str], settings: Settings, n: int, named: bool = False
) -> tuple[list, list]:
    """Per lead: the point look-ups, (with ``named``, the lead also gives a city and a
    birth date) the name-block look-ups, candidate load, deals and scoring, as
    ``LeadPipeline._match_all`` does them."""
    from hub.deals import DealWriter
    from hub.domain.lead import Lead
    from hub.leads import LeadPipeline, _holding
    from hub.store import Store
    from hub.store.ops import sync_config

    store = Store(f"sqlite+aiosqlite:///{path}")
    async with store.write() as conn:
        catalog = await sync_config(conn, settings)

    async def reserve(conn, name, k):
        return 0

    pipeline = LeadPipeline(catalog, settings, reserve, DealWriter(store, lambda: catalog))
    matched, baseline = [], []
    for i in range(n):
        phone = phones[i % len(phones)]
        extra = {"city": CITIES[i % len(CITIES)], "custom": {"birth_date": "1980-05-17"}}
        lead = Lead(
            channel="bench",
            name="Иван Петров",
            phones=[phone[:2] + " " + phone[2:]],
            **(extra if named else {}),
        )
        plan = pipeline.plan(i, lead, datetime.now(UTC))
        async with store.writer.connect() as conn:
            started = time.perf_counter()
            trans = await conn.begin()
            keys = [(p.kind, p.normalized) for p in plan.points]
            spans = set(lookups(lead.name)) if plan.blocks else set()
            kinds = {block.split(" ", 1)[0] for _, block in plan.blocks}
            blocks = await pipeline._named(conn, spans, kinds)
            ids = {
                c
                for block in plan.blocks
                if len(blocks.get(block, ())) <= MAX_BLOCK
                for c in blocks.get(block, ())
            }
            contacts = await pipeline._contacts(conn, ids, keys=keys, deals=True)
            holders = _holding(contacts, keys)
            pipeline._match(plan, holders, contacts, {}, blocks, {})
            await trans.rollback()
            matched.append(time.perf_counter() - started)
            started = time.perf_counter()
            trans = await conn.begin()
            await trans.rollback()
            baseline.append(time.perf_counter() - started)
        assert plan.contact is not None
    await store.close()
    return matched, baseline


def import_records(path: Path, records: list[Record], settings: Settings) -> None:
    """A store holding every record as its own contact, as a naive import leaves it."""
    from hub.store import Store

    async def migrate() -> None:
        store = Store(f"sqlite+aiosqlite:///{path}")
        await store.upgrade()
        await store.close()

    asyncio.run(migrate())
    db = sqlite3.connect(path)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    rows, points = [], []
    for cid, record in enumerate(records, start=1):
        fields = {
            "company": record.company,
            "birth_date": record.birth_date,
            "address": record.address,
        }
        custom = json.dumps({k: v for k, v in fields.items() if v})
        born = birth_key(fields)
        rows.append(
            (cid, record.name, person_key(record.name), record.city, custom, born, f"EXT-{cid}",
             now, now)
        )  # fmt: skip
        for kind, normalized in keys(record, settings):
            points.append((cid, kind, normalized, normalized, now))
    db.executemany(
        "INSERT INTO contacts (id, name, name_key, city, custom, birth_date, external_id, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.executemany(
        "INSERT INTO contact_points (contact_id, kind, value, normalized, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        points,
    )
    db.commit()
    db.close()


IMPORT_COLUMNS = ("name", "phone", "email", "company", "city", "birth_date", "address")


def write_import_files(
    records: list[Record], folder: Path
) -> list[tuple[Path, list[int], tuple[str, ...]]]:
    """The records as files for ``hub import contacts``, each with the record behind each
    of its rows. The importer refuses a row without a phone or email in a file that has
    such columns, so the records without (known by name, birth date and address only) go
    to a second file without them, imported after the first: a paper card index after
    the CRM's export."""
    online = [i for i, r in enumerate(records) if r.phones or r.emails]
    offline = [i for i, r in enumerate(records) if not (r.phones or r.emails)]
    out: list[tuple[Path, list[int], tuple[str, ...]]] = []
    for label, rows, columns in (
        ("export", online, IMPORT_COLUMNS),
        ("cards", offline, ("name", "company", "city", "birth_date", "address")),
    ):
        if not rows:
            continue
        path = folder / f"{label}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(columns)
            for i in rows:
                r = records[i]
                cells = {
                    "name": r.name or "",
                    "phone": ", ".join(r.phones),
                    "email": ", ".join(r.emails),
                    "company": r.company or "",
                    "city": r.city or "",
                    "birth_date": r.birth_date or "",
                    "address": r.address or "",
                }
                writer.writerow([cells[c] for c in columns])
        out.append((path, rows, columns))
    return out


def import_quality(path: Path, records: list[Record], settings: Settings) -> dict:
    """Import the records into an empty store through the hub's importer, as
    ``hub import contacts FILE --report results.csv`` does, and read from each file's
    per-row report which contact each record went to. A rejected row is a contact of its
    own (its true pairs are misses)."""
    from hub.deals import DealWriter
    from hub.importer import import_contacts
    from hub.leads import LeadPipeline
    from hub.store import Store
    from hub.store.ops import sync_config

    files = write_import_files(records, path.parent)

    async def go() -> tuple[dict[int, int], int, dict[str, int]]:
        store = Store(f"sqlite+aiosqlite:///{path}")
        try:
            await store.upgrade()
            async with store.write() as conn:
                catalog = await sync_config(conn, settings)

            async def reserve(conn, name, k):
                return 0

            pipeline = LeadPipeline(catalog, settings, reserve, DealWriter(store, lambda: catalog))
            contact_of: dict[int, int] = {}
            rejected = 0
            decisions: dict[str, int] = {}
            for file, rows, columns in files:
                result = await import_contacts(store, pipeline, file, {c: c for c in columns})
                report_path = file.with_suffix(".report.csv")
                result.write_csv(report_path)  # what --report writes; read back below
                with report_path.open(encoding="utf-8") as handle:
                    for line in csv.DictReader(handle):
                        record = rows[int(line["row"]) - 2]  # row 1 is the header
                        decisions[line["decision"]] = decisions.get(line["decision"], 0) + 1
                        if line["contact_id"]:
                            contact_of[record] = int(line["contact_id"])
                        else:
                            rejected += 1
            return contact_of, rejected, decisions
        finally:
            await store.close()

    started = time.perf_counter()
    contact_of, rejected, decisions = asyncio.run(go())
    groups: dict[int, set[int]] = {}
    for record, contact in contact_of.items():
        groups.setdefault(contact, set()).add(record)
    predicted = list(groups.values())
    predicted += [{i} for i in range(len(records)) if i not in contact_of]
    out = figures(predicted, records)
    out.update(rejected=rejected, decisions=decisions, seconds=time.perf_counter() - started)
    out["contact_of"] = contact_of
    return out


def figures(predicted: list[set[int]], records: list[Record]) -> dict:
    """Pairwise and cluster precision, recall and F1 of a partition of the records."""
    truth = true_pairs(records)
    linked = {p for members in predicted for p in itertools.combinations(sorted(members), 2)}
    tp, fp, fn, precision, recall, f1 = pairwise(linked, truth)
    exact = {frozenset(c) for c in true_clusters(records)}
    found = {frozenset(c) for c in predicted}
    hits = len(exact & found)
    c_precision = hits / len(found) if found else 1.0
    c_recall = hits / len(exact) if exact else 1.0
    c_f1 = 2 * c_precision * c_recall / (c_precision + c_recall) if hits else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "clusters": len(found),
        "true_clusters": len(exact),
        "exact": hits,
        "c_precision": c_precision,
        "c_recall": c_recall,
        "c_f1": c_f1,
        "missed": sorted(truth - linked),
        "wrong": sorted(linked - truth),
    }


def true_clusters(records: list[Record]) -> list[set[int]]:
    by_person: dict[int, set[int]] = {}
    for i, r in enumerate(records):
        by_person.setdefault(r.person, set()).add(i)
    return list(by_person.values())


def line(label: str, f: dict, extra: str = "") -> str:
    return (
        f"  {label:<26} pairs: precision {f['precision']:.4f}  recall {f['recall']:.4f}  "
        f"F1 {f['f1']:.4f}  (tp {f['tp']}, fp {f['fp']}, fn {f['fn']})\n"
        f"  {'':<26} clusters: precision {f['c_precision']:.4f}  recall {f['c_recall']:.4f}  "
        f"F1 {f['c_f1']:.4f}  ({f['exact']} of {f['true_clusters']} people exact, "
        f"{f['clusters']} predicted){extra}"
    )


def scan_figures(path: Path, settings: Settings) -> tuple[float, float, int, int]:
    """Wall time of a scan and the process's peak resident memory (tracemalloc, used
    before, slowed the scan itself several times over)."""
    import resource

    from hub.dedupe import scan
    from hub.store import Store

    async def go() -> tuple[int, int]:
        store = Store(f"sqlite+aiosqlite:///{path}")
        try:
            pairs, compared = await scan(store, settings)
            return len(pairs), compared
        finally:
            await store.close()

    started = time.perf_counter()
    found, compared = asyncio.run(go())
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return elapsed, peak / 1e6, found, compared


def scan_quality(
    path: Path,
    records: list[Record],
    settings: Settings,
    model=None,
    contact_of: dict[int, int] | None = None,
) -> dict:
    """``hub dedupe scan`` over a store: the records of the contacts of each proposed
    cluster count as one person. ``contact_of`` is each record's contact (an import's
    report); without it the store holds each record as its own contact."""
    from hub.dedupe import scan
    from hub.store import Store

    async def go():
        store = Store(f"sqlite+aiosqlite:///{path}")
        try:
            return await scan(store, settings, model=model)
        finally:
            await store.close()

    started = time.perf_counter()
    pairs, compared = asyncio.run(go())
    if contact_of is None:
        contact_of = {i: i + 1 for i in range(len(records))}
    cluster_of: dict[int, int] = {}
    for p in pairs:
        if p.cluster is not None:
            cluster_of[p.a] = cluster_of[p.b] = p.cluster
    groups: dict[tuple[str, int], set[int]] = {}
    for record in range(len(records)):
        contact = contact_of.get(record)
        if contact is None:  # a rejected row
            key = ("row", record)
        elif contact in cluster_of:
            key = ("cluster", cluster_of[contact])
        else:
            key = ("contact", contact)
        groups.setdefault(key, set()).add(record)
    out = figures(list(groups.values()), records)
    out.update(
        compared=compared,
        proposed=len(set(cluster_of.values())),
        kept_apart=sum(1 for p in pairs if p.kept_apart),
        seconds=time.perf_counter() - started,
    )
    return out


def train_model(path: Path, settings: Settings):
    from hub.dedupe import train
    from hub.domain.weights import DEFAULT
    from hub.store import Store

    async def go():
        store = Store(f"sqlite+aiosqlite:///{path}")
        try:
            return await train(store, settings, base=DEFAULT)
        finally:
            await store.close()

    return asyncio.run(go())


def report(
    label: str, records: list[Record], settings: Settings, tmp: Path, seed: int, misses: int
) -> None:
    """The figures for one generated set: imported through the hub's importer (the
    headline), the import then scanned, a store of one contact per record scanned, the
    as-leads replay; then with the model `hub dedupe train` learns from that store."""
    truth = true_pairs(records)
    print(
        f"# {label}: {len(records)} records (seed {seed}), {len(truth)} true pairs, "
        f"{len(true_clusters(records))} people, join >= {settings.matching.join}"
    )
    folder = tmp / label
    folder.mkdir()
    imported = import_quality(folder / "imported.db", records, settings)
    done = ", ".join(f"{n} {d}" for d, n in sorted(imported["decisions"].items()))
    gone = imported["contact_of"]
    refused = sum(1 for a, b in imported["missed"] if a not in gone or b not in gone)
    print(
        line(
            "hub import contacts",
            imported,
            f"; rows {done}; {refused} missed pairs have a rejected row; "
            f"{imported['seconds']:.1f} s",
        )
    )
    after = scan_quality(
        folder / "imported.db", records, settings, contact_of=imported["contact_of"]
    )
    print(
        line(
            "import, then scan",
            after,
            f"; {after['proposed']} clusters proposed over the imported contacts",
        )
    )
    path = folder / "naive.db"
    import_records(path, records, settings)
    scanned = scan_quality(path, records, settings)
    print(
        line(
            "scan (a record a contact)",
            scanned,
            f"; {scanned['compared']} pairs compared, {scanned['kept_apart']} strong pairs "
            f"kept apart; {scanned['seconds']:.1f} s",
        )
    )
    q = quality(records, settings)
    print(
        f"  {'as leads (simulated)':<26} pairs: precision {q['precision']:.4f}  "
        f"recall {q['recall']:.4f}  F1 {q['f1']:.4f}  (tp {q['tp']}, fp {q['fp']}, "
        f"fn {q['fn']}; {q['no_shared_point']} true pairs share no phone or email)"
    )
    if misses:
        show_misses("import", imported, records, misses)
        show_misses("scan", scanned, records, misses)
    trained = train_model(path, settings)
    model = trained.model
    print(
        f"  trained on the scanned store in {trained.seconds:.1f} s ({trained.pairs} candidate "
        f"pairs, {trained.share:.1%} one person, prior {model.prior:.1f} bits):"
    )
    print(line("scan, trained model", scan_quality(path, records, settings, model)))
    q = quality(records, settings, model)
    print(
        f"  {'as leads, trained model':<26} pairs: precision {q['precision']:.4f}  "
        f"recall {q['recall']:.4f}  F1 {q['f1']:.4f}  (tp {q['tp']}, fp {q['fp']}, fn {q['fn']})"
    )


def pattern(one: Record, two: Record, settings: Settings) -> str:
    """What two records have in common, as a short key: which fields both have, and
    whether they share a phone or email."""
    both = [
        field
        for field in ("name", "company", "city", "birth_date", "address")
        if getattr(one, field) and getattr(two, field)
    ]
    shared = keys(one, settings) & keys(two, settings)
    where = "shared " + "+".join(sorted({k for k, _ in shared})) if shared else "no shared point"
    return f"{where}; both have {', '.join(both) or 'nothing'}"


def show_misses(label: str, found: dict, records: list[Record], n: int) -> None:
    """The missed and the wrong pairs by pattern, with a few examples of each."""
    settings = Settings()
    for kind in ("missed", "wrong"):
        by: dict[str, list[tuple[int, int]]] = {}
        for a, b in found[kind]:
            by.setdefault(pattern(records[a], records[b], settings), []).append((a, b))
        print(f"  {label}: {len(found[kind])} {kind} pairs")
        for key, pairs in sorted(by.items(), key=lambda item: -len(item[1]))[:n]:
            print(f"    {len(pairs):5d}  {key}")
            for a, b in pairs[:2]:
                for i in (a, b):
                    r = records[i]
                    print(
                        f"           {i}: {r.name!r} {r.phones} {r.emails} {r.company!r} "
                        f"{r.city!r} {r.birth_date} {r.address!r}"
                    )


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scan-contacts", type=int, default=100_000)
    parser.add_argument(
        "--quality-only", action="store_true", help="Only the quality figures, no speed runs."
    )
    parser.add_argument("--speed-only", action="store_true", help="Only the speed runs.")
    parser.add_argument(
        "--misses",
        type=int,
        default=0,
        help="Print the N commonest patterns of missed and wrong pairs, with examples.",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    settings = Settings()

    if args.speed_only:
        run_speed(args, rng, settings)
        return
    with tempfile.TemporaryDirectory(prefix="hub-dedupe-quality-") as tmp:
        generated = generate(args.people, rng)
        report("generated", generated, settings, Path(tmp), args.seed, args.misses)
        hard = generate_hard(args.people, random.Random(args.seed + 1))
        report("namesakes-couples-offline", hard, settings, Path(tmp), args.seed + 1, args.misses)
    if args.quality_only:
        return
    run_speed(args, rng, settings)


def run_speed(args: argparse.Namespace, rng: random.Random, settings: Settings) -> None:
    with tempfile.TemporaryDirectory(prefix="hub-dedupe-") as tmp:
        scan_records = []
        people = 0
        while len(scan_records) < args.scan_contacts:
            people += 1000
            scan_records = generate(people, random.Random(args.seed))
        scan_records = scan_records[: args.scan_contacts]
        import_records(Path(tmp) / "scan.db", scan_records, settings)
        elapsed, peak, found, compared = scan_figures(Path(tmp) / "scan.db", settings)
        print(
            f"hub dedupe scan over {len(scan_records)} contacts: {elapsed:.1f} s wall, "
            f"peak process memory {peak:.0f} MB; {compared} pairs compared, {found} for review"
        )
        started = time.perf_counter()
        trained = train_model(Path(tmp) / "scan.db", settings)
        print(
            f"hub dedupe train over {len(scan_records)} contacts: "
            f"{time.perf_counter() - started:.1f} s wall ({trained.pairs} candidate pairs)"
        )

        path = Path(tmp) / "big.db"
        started = time.perf_counter()
        phones = build_store(path, args.contacts, rng)
        print(
            f"# store with {args.contacts} contacts built in {time.perf_counter() - started:.0f} s"
        )
        for named in (False, True):
            matched, baseline = asyncio.run(latency(path, phones, settings, args.lookups, named))
            what = "name, phone, city and birth date" if named else "name and phone"
            print(
                f"match one lead ({what}) against {args.contacts} contacts: "
                f"p50 {pct(matched, 50):.2f} ms  p99 {pct(matched, 99):.2f} ms   (empty "
                f"transaction baseline p50 {pct(baseline, 50):.2f} ms, "
                f"p99 {pct(baseline, 99):.2f} ms)"
            )


if __name__ == "__main__":
    main()
