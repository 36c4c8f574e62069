"""Is this lead someone we know? Evidence from pluggable matchers, combined into a score.

A matcher looks at the incoming lead and one candidate contact (found through
the phone and email index, never by scanning) and returns evidence: a weight
and a reason a person can read. Positive weights combine as independent
signals (``1 - Π(1 - w)``); a *doubt* (a different name on the same phone)
multiplies the result down. A company adds its own matcher through the
``hub_matchers`` hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from hub.domain.normalize import Point
from hub.domain.similarity import (
    company_similarity,
    full_names_agree,
    name_similarity,
    names_conflict,
)


@dataclass(frozen=True, slots=True)
class Evidence:
    weight: float  # 0..1 for support; for a doubt, the factor (<1) the score is multiplied by
    reason: str
    doubt: bool = False


@dataclass(slots=True)
class Incoming:
    """The lead as matchers see it."""

    name: str | None
    company: str | None
    city: str | None
    points: list[Point]
    shared: set[tuple[str, str]] = field(default_factory=set)  # points many people use
    tax_id: str | None = None


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


class Matcher(Protocol):
    name: str

    def evidence(self, lead: Incoming, candidate: Candidate) -> list[Evidence]: ...


@dataclass(frozen=True, slots=True)
class Score:
    value: float
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.value:.2f}: " + " + ".join(self.reasons)


class PointMatcher:
    """The same phone or email: strong, unless many people use it (an office line, info@)."""

    name = "points"

    def evidence(self, lead: Incoming, candidate: Candidate) -> list[Evidence]:
        found = []
        for point in lead.points:
            key = (point.kind, point.normalized)
            if key not in candidate.points:
                continue
            if key in lead.shared:
                found.append(Evidence(0.2, f"shared {point.kind} {point.normalized}"))
            else:
                found.append(Evidence(0.92, f"same {point.kind}"))
        return found


class NameMatcher:
    """The same name across alphabets, order and initials supports; a different one casts doubt."""

    name = "name"

    def evidence(self, lead: Incoming, candidate: Candidate) -> list[Evidence]:
        score = name_similarity(lead.name, candidate.name)
        if score is None:
            return []
        if score < 0.5 or names_conflict(lead.name, candidate.name):
            return [Evidence(0.75, f"different name {score:.2f}", doubt=True)]
        if score >= 0.85:
            return [Evidence(0.5 * score, f"name {score:.2f}")]
        return []


class CompanyMatcher:
    """The same company supports; the same full name at the same company is strong.

    Namesakes in one company are rare, and this is what recognises a person who
    wrote once from their own address and once from the office's shared one.
    """

    name = "company"

    def evidence(self, lead: Incoming, candidate: Candidate) -> list[Evidence]:
        if lead.tax_id and candidate.tax_id:
            if lead.tax_id != candidate.tax_id:
                return [Evidence(0.8, "different tax id", doubt=True)]
            same = True
            label = "same tax id"
        else:
            score = company_similarity(lead.company, candidate.company)
            same = score is not None and score >= 0.9
            label = "same company"
        if not same:
            return []
        if full_names_agree(lead.name, candidate.name):
            reason = (
                "same full name, same tax id"
                if label == "same tax id"
                else "same full name at the same company"
            )
            return [Evidence(0.8, reason)]
        return [Evidence(0.4 if label == "same tax id" else 0.3, label)]


class CityMatcher:
    name = "city"

    def evidence(self, lead: Incoming, candidate: Candidate) -> list[Evidence]:
        if (
            lead.city
            and candidate.city
            and lead.city.strip().lower() == candidate.city.strip().lower()
        ):
            return [Evidence(0.1, "same city")]
        return []


BUILTIN: list[Matcher] = [PointMatcher(), NameMatcher(), CompanyMatcher(), CityMatcher()]


def score(lead: Incoming, candidate: Candidate, matchers: list[Matcher]) -> Score:
    keep = 1.0
    factor = 1.0
    reasons: list[str] = []
    for matcher in matchers:
        for item in matcher.evidence(lead, candidate):
            reasons.append(item.reason)
            if item.doubt:
                factor *= item.weight
            else:
                keep *= 1.0 - min(max(item.weight, 0.0), 1.0)
    return Score(round((1.0 - keep) * factor, 3), tuple(reasons))
