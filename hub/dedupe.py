"""Finding duplicate contacts already in the store (after an import, say), and learning
the match model from them.

Blocking: contacts are compared when they share a normalized phone or email
(one grouped query over the contact-point index), when their names share a
block key, a word's first five letters plus another word's initial, in Latin
letters (``Соколов Дмитрий`` and ``Dmitriy Sokolov`` meet under ``sokol|d``),
when they share a name block as intake reads them (:mod:`hub.domain.blocking`: the name
with the birth date, address, state number, company or city), or when they have the same
birth date, address, personal ИНН or СНИЛС (a record without a name, too). A phone, email
or key held by more than ``MAX_GROUP`` contacts (a call centre's number, a common name)
yields no pairs. Each pair is scored by the match model
(:mod:`hub.domain.weights`), its equal names weighed by their frequency in the
store (counted by one grouped query); pairs at or above ``matching.review`` go
to the review list: a scan never merges by itself.

Clusters: pairs at or above ``matching.join`` are linked into clusters,
strongest first, and two clusters are joined only if no record of one
disagrees strongly (below ``matching.review``) with a record of the other; so a
chain A~B~C where A and C are clearly different people is not proposed as one
merge, and the link that would have made it stays in review, marked.

Training (:func:`train`): u probabilities from random pairs of contacts and,
for equal phones, emails and names, from grouped counts in SQL; m
probabilities and the share of duplicates by EM over the candidate pairs, with
dismissed pairs as known non-matches: held at "two people" in EM, and counted as
two people sharing a phone or mailbox, which weakens that evidence for the next pair.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import Settings
from hub.deals import Actor, DealWriter
from hub.deals.changes import FlagDuplicate
from hub.domain.blocking import name_blocks
from hub.domain.matching import (
    BUILTIN,
    HOUSEHOLD,
    Candidate,
    Comparison,
    Incoming,
    Matcher,
    compare,
    details,
    explain,
    partial_weights,
    signed,
)
from hub.domain.normalize import Point
from hub.domain.similarity import name_tokens, parse_name, place_key
from hub.domain.weights import (
    DEFAULT_PRIOR,
    LEVELS,
    TERM_FREQUENCY,
    MatchModel,
    load_model,
    model_path,
)
from hub.store import Store
from hub.store.models import Contact, ContactExternalId, ContactPoint, DuplicateCandidate

MAX_GROUP = 50
CHUNK = 5000
DISAGREE = -4.5  # bits of evidence against that make two records of one cluster a conflict
MAX_CLUSTER = 30  # a cluster this big is not one person: its pairs stay in review
TF_MIN_CONTACTS = 1000  # below this, frequencies say more about chance than about names
TF_KEEP = 50_000  # values kept per field in a model file
RANDOM_PAIRS = 20_000
PSEUDO = 10.0  # weight of the defaults in the m and u estimates, in pairs
# Weight of the defaults in what is counted over all pairs of contacts (equal phones and
# emails, the prior): a small store keeps the defaults, a large one speaks for itself.
PSEUDO_ALL = 1e7

points = ContactPoint.__table__
contacts = Contact.__table__
duplicates = DuplicateCandidate.__table__
external_ids = ContactExternalId.__table__


def name_keys(name: str) -> set[str]:
    tokens = [t.rstrip(".") for t in name_tokens(name)]
    return {f"{a[:5]}|{b[0]}" for a, b in itertools.permutations(tokens, 2) if len(a) >= 3 and b}


def _address_key(address: str) -> str:
    return "a|" + place_key(address)


@dataclass(frozen=True, slots=True)
class Pair:
    a: int
    b: int
    score: float
    reasons: tuple[str, ...]
    external_a: str | None = None
    external_b: str | None = None
    cluster: int | None = None  # the cluster (its smallest contact id) proposed as one merge
    kept_apart: bool = False  # a strong pair not joined: its records' clusters disagree


@dataclass(slots=True)
class _Known:
    name: str | None
    company: str | None
    city: str | None
    external_id: str | None
    points: set[tuple[str, str]]
    details: dict[str, str] = field(default_factory=dict)
    ids: set[tuple[str, str]] = field(default_factory=set)  # (system, id) in source systems


@dataclass(slots=True)
class _Candidates:
    pairs: set[tuple[int, int]]
    known: dict[int, _Known]
    groups: dict[tuple[str, str], list[int]]
    by_points: set[tuple[int, int]] = field(default_factory=set)  # sharing a phone or email
    by_name: set[tuple[int, int]] = field(default_factory=set)  # sharing a name block


def _details(custom: dict | None) -> dict[str, str]:
    return details(custom)


async def _load(conn: AsyncConnection, ids: Sequence[int], known: dict[int, _Known]) -> None:
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        for cid, name, city, external_id, custom in await conn.execute(
            select(
                contacts.c.id,
                contacts.c.name,
                contacts.c.city,
                contacts.c.external_id,
                contacts.c.custom,
            ).where(contacts.c.id.in_(chunk))
        ):
            known[cid] = _Known(
                name,
                (custom or {}).get("company"),
                city,
                external_id,
                set(),
                _details(custom),
            )
        for cid, kind, normalized in await conn.execute(
            select(points.c.contact_id, points.c.kind, points.c.normalized).where(
                points.c.contact_id.in_(chunk)
            )
        ):
            known[cid].points.add((kind, normalized))
        for cid, system, value in await conn.execute(
            select(external_ids.c.contact_id, external_ids.c.system, external_ids.c.external_id)
            .where(external_ids.c.contact_id.in_(chunk))
            .where(external_ids.c.system != "")  # a bare id says nothing (see matching)
        ):
            known[cid].ids.add((system, value))


async def _candidates(conn: AsyncConnection) -> _Candidates:
    shared = (
        select(points.c.kind, points.c.normalized)
        .group_by(points.c.kind, points.c.normalized)
        .having(func.count(func.distinct(points.c.contact_id)) >= 2)
        .subquery()
    )
    rows = await conn.execute(
        select(points.c.kind, points.c.normalized, points.c.contact_id)
        .join(
            shared,
            (shared.c.kind == points.c.kind) & (shared.c.normalized == points.c.normalized),
        )
        .order_by(points.c.kind, points.c.normalized, points.c.contact_id)
    )
    groups: dict[tuple[str, str], list[int]] = {}
    for kind, normalized, contact_id in rows:
        holders = groups.setdefault((kind, normalized), [])
        if contact_id not in holders:
            holders.append(contact_id)
    by_points = {
        pair
        for holders in groups.values()
        if len(holders) <= MAX_GROUP
        for pair in itertools.combinations(sorted(holders), 2)
    }
    blocks: dict[str, list[int]] = {}
    others: dict[str, list[int]] = {}
    birth = contacts.c.custom["birth_date"].as_string()
    address = contacts.c.custom["address"].as_string()
    company = contacts.c.custom["company"].as_string()
    inn = contacts.c.custom["personal_tax_id"].as_string()
    snils = contacts.c.custom["snils"].as_string()
    for cid, name, born, lives, city, works, tax_id, insured in await conn.execute(
        select(contacts.c.id, contacts.c.name, birth, address, contacts.c.city, company, inn, snils)
    ):
        # A record without a name is still someone's birth date and address.
        for key in name_keys(name) if name else ():
            blocks.setdefault(key, []).append(cid)
        # The blocks intake finds a returning client by (hub/domain/blocking.py).
        for block in name_blocks(
            name,
            birth_date=born,
            company=works,
            city=city,
            address=lives,
            personal_tax_id=tax_id,
            snils=insured,
        ):
            blocks.setdefault("|".join(block), []).append(cid)
        if born:
            others.setdefault("b|" + born, []).append(cid)
        if lives:
            others.setdefault(_address_key(lives), []).append(cid)
        # One person's number: the same one on two records is worth comparing whatever
        # their names say (a maiden name, a typo in both words).
        if tax_id:
            others.setdefault("t|" + tax_id, []).append(cid)
        if insured:
            others.setdefault("s|" + insured, []).append(cid)

    def within(found: dict[str, list[int]]) -> set[tuple[int, int]]:
        return {
            pair
            for members in found.values()
            if 1 < len(members) <= MAX_GROUP
            for pair in itertools.combinations(sorted(set(members)), 2)
        }

    by_name = within(blocks)
    pairs = by_points | by_name | within(others)
    known: dict[int, _Known] = {}
    await _load(conn, sorted({i for pair in pairs for i in pair}), known)
    return _Candidates(pairs, known, groups, by_points, by_name)


async def frequencies(conn: AsyncConnection) -> tuple[dict[str, dict[str, float]], int]:
    """The share of each first name, surname, patronymic and city among the contacts
    that have one, counted by grouped queries (one row per distinct name, not per
    contact); and the number of contacts."""
    total = (await conn.execute(select(func.count()).select_from(contacts))).scalar() or 0
    counts: dict[str, Counter[str]] = {name: Counter() for name in TERM_FREQUENCY}
    for name, n in await conn.execute(
        select(contacts.c.name, func.count())
        .where(contacts.c.name.is_not(None))
        .group_by(contacts.c.name)
    ):
        parsed = parse_name(name)
        if parsed is None:
            continue
        for key, value in (
            ("first_name", parsed.first),
            ("last_name", parsed.last),
            ("patronymic", parsed.patronymic),
        ):
            if value:
                counts[key][value] += n
    for city, n in await conn.execute(
        select(contacts.c.city, func.count())
        .where(contacts.c.city.is_not(None))
        .group_by(contacts.c.city)
    ):
        key = place_key(city)
        if key:
            counts["city"][key] += n
    shares: dict[str, dict[str, float]] = {}
    for key, counter in counts.items():
        seen = sum(counter.values())
        if not seen:
            continue
        table = {value: n / seen for value, n in counter.most_common(TF_KEEP)}
        table[""] = 1 / seen  # a value not in the table: as rare as one contact
        shares[key] = table
    return shares, total


def _with_store_frequencies(
    model: MatchModel, shares: dict[str, dict[str, float]], total: int
) -> MatchModel:
    if total < TF_MIN_CONTACTS:
        return replace(model, frequencies={})
    return replace(model, frequencies=shares)


def _incoming(one: _Known, is_shared: Callable[[tuple[str, str]], str | None]) -> Incoming:
    sharing = {k: is_shared(k) for k in one.points}
    return Incoming(
        one.name,
        one.company,
        one.city,
        [Point(kind, norm, norm) for kind, norm in sorted(one.points)],
        {k for k, how in sharing.items() if how},
        household={k for k, how in sharing.items() if how == "household"},
        external_ids=one.ids,
        **one.details,
    )


def _candidate(cid: int, two: _Known) -> Candidate:
    return Candidate(
        cid, two.name, two.company, two.city, None, two.points, external_ids=two.ids, **two.details
    )


def _sharing(
    settings: Settings, groups: dict[tuple[str, str], list[int]], known: dict[int, _Known]
) -> Callable[[tuple[str, str]], str | None]:
    """Is a point one several people use: a generic mailbox, or held by three or more
    contacts with two or more first names (the four records of one person on one mobile
    are not an office line); "household" when they have at most ``HOUSEHOLD`` first
    names, "shared" when more (or a generic mailbox), None for a personal point."""
    generic = {m.lower() for m in settings.matching.generic_mailboxes}
    cache: dict[tuple[str, str], str | None] = {}

    def first_name(cid: int) -> str | None:
        name = known[cid].name if cid in known else None
        parsed = parse_name(name) if name else None
        return parsed.first if parsed else None

    def is_shared(key: tuple[str, str]) -> str | None:
        if key[0] == "email" and key[1].split("@", 1)[0] in generic:
            return "shared"
        if key not in cache:
            holders = groups.get(key, ())
            firsts = {first_name(cid) for cid in holders} - {None}
            if len(holders) <= 2 or len(firsts) <= 1:
                cache[key] = None
            else:
                cache[key] = "household" if len(firsts) <= HOUSEHOLD else "shared"
        return cache[key]

    return is_shared


async def scan(
    store: Store,
    settings: Settings,
    matchers: Sequence[Matcher] = (),
    model: MatchModel | None = None,
) -> tuple[list[Pair], int]:
    """Score every candidate pair of contacts; returns the pairs worth review (with the
    clusters proposed as merges) and the number of pairs compared."""
    matching = settings.matching
    base = model or load_model(model_path(settings))
    async with store.read() as conn:
        found = await _candidates(conn)
        shares, total = await frequencies(conn)
    model = _with_store_frequencies(base, shares, total)
    is_shared = _sharing(settings, found.groups, found.known)
    all_matchers = [*BUILTIN, *matchers]
    known = found.known

    leads: dict[int, Incoming] = {}
    candidates: dict[int, Candidate] = {}

    def parts(a: int, b: int) -> list[tuple[float, str]]:
        one = leads.get(a) or leads.setdefault(a, _incoming(known[a], is_shared))
        two = candidates.get(b) or candidates.setdefault(b, _candidate(b, known[b]))
        return partial_weights(one, two, all_matchers, model)

    def conflict(a: int, b: int) -> float | None:
        """The pair's probability when its records disagree strongly, else None."""
        found = parts(a, b)
        against = sum(bits for bits, _ in found if bits < 0)
        value = model.probability(sum(bits for bits, _ in found))
        return value if value < matching.review and against <= DISAGREE else None

    weights = {pair: parts(*pair) for pair in sorted(found.pairs)}
    scored = {
        pair: (model.probability(sum(bits for bits, _ in found)), ())
        for pair, found in weights.items()
    }
    clusters, apart = link(scored, matching.join, conflict)
    out: list[Pair] = []
    for (a, b), (value, _) in scored.items():
        if value < matching.review:
            continue
        result = explain(weights[(a, b)], model)
        value, reasons = result.value, result.reasons
        cluster = clusters.get(a) if clusters.get(a) == clusters.get(b) else None
        if (a, b) in apart:
            other, weakest = apart[(a, b)]
            reasons = (*reasons, f"kept apart: {other[0]} and {other[1]} differ ({weakest:.2f})")
        out.append(
            Pair(
                a,
                b,
                value,
                reasons,
                known[a].external_id,
                known[b].external_id,
                cluster=cluster,
                kept_apart=(a, b) in apart,
            )
        )
    return out, len(found.pairs)


def link(
    scored: dict[tuple[int, int], tuple[float, tuple[str, ...]]],
    join: float,
    conflict: Callable[[int, int], float | None],
) -> tuple[dict[int, int], dict[tuple[int, int], tuple[tuple[int, int], float]]]:
    """Clusters of the pairs at or above ``join``, strongest link first; two clusters are
    joined only if no record of one and record of the other are in ``conflict`` (they
    disagree strongly: the probability, else None). Not knowing is no conflict: a record
    with a phone only and one with an email only may be one person through a third.

    Returns each clustered contact's cluster (its smallest id; only clusters of two or
    more), and the strong pairs kept apart, each with the pair that disagreed and its score.
    """
    cache: dict[tuple[int, int], float | None] = {}

    def against(a: int, b: int) -> float | None:
        key = (a, b) if a < b else (b, a)
        if key not in cache:
            cache[key] = conflict(*key)
        return cache[key]

    members: dict[int, list[int]] = {}
    root: dict[int, int] = {}
    apart: dict[tuple[int, int], tuple[tuple[int, int], float]] = {}
    strong = sorted(
        ((v, pair) for pair, (v, _) in scored.items() if v >= join), key=lambda t: -t[0]
    )
    for _, (a, b) in strong:
        ra, rb = root.setdefault(a, a), root.setdefault(b, b)
        if ra == rb:
            continue
        one, two = members.setdefault(ra, [ra]), members.setdefault(rb, [rb])
        if len(one) + len(two) > MAX_CLUSTER:
            apart[(a, b)] = ((a, b), scored[(a, b)][0])
            continue
        clash = next(
            (
                (found, (min(x, y), max(x, y)))
                for x in one
                for y in two
                if (found := against(x, y)) is not None
            ),
            None,
        )
        if clash is not None:
            apart[(a, b)] = (clash[1], clash[0])
            continue
        keep, gone = (ra, rb) if len(one) >= len(two) else (rb, ra)
        members[keep] = one + two if keep == ra else two + one
        for contact in members.pop(gone):
            root[contact] = keep
    clusters: dict[int, int] = {}
    for group in members.values():
        if len(group) > 1:
            for contact in group:
                clusters[contact] = min(group)
    return clusters, apart


async def save_for_review(writer: DealWriter, pairs: Sequence[Pair], actor: Actor) -> int:
    """Add pairs to the review list (a pair already there is left as it is); returns how
    many were new."""
    if not pairs:
        return 0
    changes = [
        FlagDuplicate(contact=p.b, other=p.a, score=p.score, reasons=list(p.reasons), origin="scan")
        for p in pairs
    ]
    applied = await writer.apply(changes, actor)
    return len(applied.events)


def write_csv(pairs: Sequence[Pair], path: Path) -> None:
    """One row per pair: ``id_a,id_b,score,reasons,cluster``; external ids where the import
    gave them; the cluster is the one the pair is proposed to merge into, if any."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_a", "id_b", "score", "reasons", "cluster"])
        for p in pairs:
            writer.writerow(
                [
                    p.external_a or p.a,
                    p.external_b or p.b,
                    f"{p.score:.3f}",
                    ", ".join(p.reasons),
                    "" if p.cluster is None else p.cluster,
                ]
            )


# -- training -------------------------------------------------------------------------


Pattern = tuple[tuple[str, str], ...]


def _pattern(comparisons: Iterable[Comparison]) -> Pattern:
    return tuple(sorted((c.field, c.level) for c in comparisons))


async def _random_pairs(conn: AsyncConnection, n: int, seed: int) -> list[tuple[int, int]]:
    ids = [cid for (cid,) in await conn.execute(select(contacts.c.id))]
    if len(ids) < 2:
        return []
    rng = random.Random(seed)
    out = set()
    for _ in range(min(n, len(ids) * (len(ids) - 1) // 2) * 2):
        a, b = rng.sample(ids, 2)
        out.add((min(a, b), max(a, b)))
        if len(out) >= n:
            break
    return sorted(out)


@dataclass(slots=True)
class Training:
    model: MatchModel
    pairs: int
    random_pairs: int
    dismissed: int
    share: float  # of the candidate pairs, estimated to be one person
    seconds: float
    kept: list[str] = field(default_factory=list)  # fields whose m stayed the default


async def train(
    store: Store,
    settings: Settings,
    base: MatchModel | None = None,
    iterations: int = 50,
    seed: int = 13,
) -> Training:
    """Estimate a match model from the store: u from random pairs and grouped counts,
    term frequencies from grouped counts, m and the prior by EM over the candidate pairs."""
    import time

    started = time.perf_counter()
    base = base or load_model(model_path(settings))
    async with store.read() as conn:
        found = await _candidates(conn)
        shares, total = await frequencies(conn)
        sample = await _random_pairs(conn, RANDOM_PAIRS, seed)
        extra = sorted({i for pair in sample for i in pair} - set(found.known))
        await _load(conn, extra, found.known)
        dismissed = {
            (min(a, b), max(a, b))
            for a, b in await conn.execute(
                select(duplicates.c.contact_id, duplicates.c.other_id).where(
                    duplicates.c.status == "dismissed"
                )
            )
        }
    is_shared = _sharing(settings, found.groups, found.known)
    known = found.known

    leads: dict[int, Incoming] = {}
    candidates: dict[int, Candidate] = {}

    def pattern(a: int, b: int) -> Pattern:
        one = leads.get(a) or leads.setdefault(a, _incoming(known[a], is_shared))
        two = candidates.get(b) or candidates.setdefault(b, _candidate(b, known[b]))
        return _pattern(compare(one, two))

    # u: how often each level occurs for two random contacts.
    u_counts: dict[str, Counter[str]] = {name: Counter() for name in LEVELS}
    for a, b in sample:
        for name, level in pattern(a, b):
            u_counts[name][level] += 1
    n_random = len(sample)
    all_pairs = total * (total - 1) / 2 if total > 1 else 1.0
    model = MatchModel.default()
    model.frequencies = shares if total >= TF_MIN_CONTACTS else {}
    for name, levels in LEVELS.items():
        for level, (_, _, u_default) in levels.items():
            # Conditional on both records having the field: a missing field weighs nothing.
            seen = sum(u_counts[name].values())
            u = (u_counts[name][level] + PSEUDO * u_default) / (seen + PSEUDO)
            if name in ("phone", "email") and level in ("equal", "landline", "shared", "household"):
                u = u_default  # below, from the pairs sharing one
            elif name in model.frequencies and level == "equal":
                u = sum(s * s for v, s in model.frequencies[name].items() if v)
            model.levels[name][level][1] = max(u, 1e-12)

    # m: EM over the candidate pairs, once per blocking rule, leaving out the fields the
    # rule made agree (as Splink does): pairs sharing a personal phone or email teach the
    # names' m, pairs found by a name block teach the phones' and emails'. Pairs sharing
    # only an office line or a home phone are left out of the first: mostly colleagues
    # and couples, EM would take "works or lives together" for "one person" and learn
    # that a different first name is what one person's records look like.
    patterns = {pair: pattern(*pair) for pair in found.pairs}
    personal = {
        pair
        for pair in found.by_points
        if ("phone", "equal") in patterns[pair] or ("email", "equal") in patterns[pair]
    }
    sessions = {
        "points": (personal, {"phone", "email"}),
        "names": (found.by_name, {"first_name", "last_name", "patronymic", "gender"}),
    }
    learned: dict[str, dict[str, Counter[str]]] = {}
    done = 0
    for session, (pairs, blocked) in sessions.items():
        counts: Counter[Pattern] = Counter(
            tuple(c for c in patterns[pair] if c[0] not in blocked)
            for pair in pairs
            if pair not in dismissed
        )
        # A pair a person dismissed is two people for certain: it enters EM with its
        # weight held at 0, so it lowers the share of duplicates among such pairs.
        apart_for_sure: Counter[Pattern] = Counter(
            tuple(c for c in patterns[pair] if c[0] not in blocked)
            for pair in pairs
            if pair in dismissed
        )
        m_counts, posterior, steps = _em(model, counts, iterations, apart_for_sure)
        learned[session] = m_counts
        done = max(done, steps)
        if session == "points":
            # u of an equal phone or email: the pairs sharing one that are two people.
            apart: Counter[tuple[str, str]] = Counter()
            for pair in pairs:
                full = patterns[pair]
                w = posterior.get(tuple(c for c in full if c[0] not in blocked), 0.5)
                if pair in dismissed:
                    # Two people sharing this phone or mailbox: what makes "the same
                    # phone" weaker evidence on the next pair like it.
                    w = 0.0
                for name, level in full:
                    if name in ("phone", "email") and level in (
                        "equal",
                        "landline",
                        "shared",
                        "household",
                    ):
                        apart[(name, level)] += 1 - w
            for (name, level), n in apart.items():
                u_default = LEVELS[name][level][2]
                u = (n + PSEUDO_ALL * u_default) / (all_pairs + PSEUDO_ALL)
                model.levels[name][level][1] = max(u, 1e-12)
    kept: list[str] = []
    for name, levels in LEVELS.items():
        merged: Counter[str] = Counter()
        for session, (_, blocked) in sessions.items():
            if name not in blocked:
                merged.update(learned[session][name])
        seen = sum(merged.values())
        m = {
            level: (merged[level] + PSEUDO * m_default) / (seen + PSEUDO)
            for level, (_, m_default, _) in levels.items()
        }
        # EM may settle on the wrong class (namesakes taken for one person): an agreement
        # that is not evidence for, or a disagreement that is not evidence against, means
        # it did not separate the two here; the field keeps its default m.
        u = {level: model.levels[name][level][1] for level in levels}
        if "equal" in m and "differs" in m and seen >= PSEUDO:
            sane = m["equal"] > u["equal"] and m["differs"] < u["differs"]
        else:
            sane = seen >= PSEUDO
        if not sane:
            kept.append(name)
            continue
        for level, value in m.items():
            model.levels[name][level][0] = value
    # The prior: the share of all pairs of contacts that are one person, with the final
    # m and u, every pair outside the candidates counted as two people.
    union: Counter[Pattern] = Counter(
        patterns[pair] for pair in found.pairs if pair not in dismissed
    )
    bits = {key: _bits(model, key) for key in union}
    prior = DEFAULT_PRIOR
    for _ in range(30):
        expected = sum(n * _sigmoid(prior + bits[key]) for key, n in union.items())
        odds = (expected + PSEUDO_ALL * 2.0**DEFAULT_PRIOR) / (all_pairs + PSEUDO_ALL)
        prior = math.log2(odds / (1 - min(odds, 0.5)))
    model.prior = prior
    n_pairs = len(found.pairs)
    expected = sum(n * _sigmoid(prior + bits[key]) for key, n in union.items())
    share = expected / max(sum(union.values()), 1)
    model.version = base.version + 1
    model.trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    model.contacts = total
    model.pairs = n_pairs
    model.iterations = done
    return Training(
        model, n_pairs, n_random, len(dismissed), share, time.perf_counter() - started, kept
    )


def _bits(model: MatchModel, key: Pattern) -> float:
    return sum(math.log2(model.levels[f][lv][0] / model.levels[f][lv][1]) for f, lv in key)


def _sigmoid(bits: float) -> float:
    return 1.0 / (1.0 + 2.0 ** -max(min(bits, 1000.0), -1000.0))


def _em(
    model: MatchModel,
    counts: Counter[Pattern],
    iterations: int,
    apart: Counter[Pattern] | None = None,
) -> tuple[dict[str, Counter[str]], dict[Pattern, float], int]:
    """m by EM over one session's patterns, u fixed; returns the weighted level counts
    of the matches, each pattern's match probability, and the iterations run. ``apart``
    are known non-matches (dismissed pairs): counted in the total, never as a match."""
    m = {name: {lv: mu[0] for lv, mu in levels.items()} for name, levels in model.levels.items()}
    u = {name: {lv: mu[1] for lv, mu in levels.items()} for name, levels in model.levels.items()}
    share = 0.5
    total = max(sum(counts.values()) + sum((apart or Counter()).values()), 1)
    m_counts: dict[str, Counter[str]] = {name: Counter() for name in LEVELS}
    step = 0
    while step < iterations:
        step += 1
        m_counts = {name: Counter() for name in LEVELS}
        matched = 0.0
        for key, n in counts.items():
            bits = sum(math.log2(m[f][lv] / u[f][lv]) for f, lv in key)
            w = _sigmoid(math.log2(share / (1 - share)) + bits)
            matched += w * n
            for f, lv in key:
                m_counts[f][lv] += w * n
        new_share = min(max(matched / total, 1e-6), 1 - 1e-6)
        change = abs(new_share - share)
        share = new_share
        for name, levels in LEVELS.items():
            seen = sum(m_counts[name].values())
            for level, (_, m_default, _) in levels.items():
                value = (m_counts[name][level] + PSEUDO * m_default) / (seen + PSEUDO)
                change = max(change, abs(value - m[name][level]))
                m[name][level] = value
        if change < 1e-5:
            break
    odds = math.log2(share / (1 - share))
    posterior = {
        key: _sigmoid(odds + sum(math.log2(m[f][lv] / u[f][lv]) for f, lv in key)) for key in counts
    }
    return m_counts, posterior, step


def describe_model(model: MatchModel) -> list[str]:
    """The model's header lines, as `hub dedupe model` prints them above the table."""
    where = (
        f"version {model.version}, trained {model.trained_at} on {model.contacts} contacts "
        f"and {model.pairs} candidate pairs ({model.iterations} EM iterations)"
        if model.version
        else "version 0: the built-in defaults (run `hub dedupe train`)"
    )
    return [where, f"prior {signed(model.prior)} bits (two random contacts are one person)"]
