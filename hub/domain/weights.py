"""The match model: Fellegi–Sunter m and u probabilities per field and comparison level.

Two records are compared field by field; each field lands on one level (equal, close,
different, missing). A level's match weight is ``log2(m / u)``: ``m`` is how often the
level occurs when the two records are one person, ``u`` how often it occurs for two
random contacts. The weights of all fields plus the prior (the log2 odds that two random
contacts are one person) give the log2 odds of a match. A missing field weighs nothing.

Equal values are weighed by how common the value is (term frequency): two "Павлова"
say less than two "Шкуропатова". ``hub dedupe train`` estimates u and the frequencies
from the store and m by EM over its candidate pairs, and writes a versioned JSON file;
without one the defaults below are used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

FORMAT = 1  # the model file's format version

# field → level → (label for reasons, m, u). The labels read as reasons: "same phone +22.6".
LEVELS: dict[str, dict[str, tuple[str, float, float]]] = {
    "phone": {
        "equal": ("same phone", 0.85, 1e-7),
        "landline": ("same landline", 0.25, 1e-5),
        # A point held by a few contacts: u is the chance two random contacts are in one
        # household (or the few records of one person), far below an office line's.
        "household": ("shared home phone", 0.04, 2e-6),
        "shared": ("shared phone", 0.06, 0.004),
        "mobile_differs": ("different mobile", 0.03, 0.9),
        "differs": ("different phone", 0.06, 0.096),
    },
    "email": {
        "equal": ("same email", 0.85, 1e-7),
        "household": ("shared family email", 0.02, 1e-6),
        "shared": ("shared email", 0.05, 0.002),
        "differs": ("different personal email", 0.15, 0.998),
    },
    "first_name": {
        "equal": ("first name equal", 0.85, 0.03),
        "close": ("first name close", 0.04, 0.005),
        "initial": ("first name initial agrees", 0.08, 0.07),
        "differs": ("first name differs", 0.015, 0.445),
        "gender_differs": ("first name differs, other gender", 0.005, 0.45),
    },
    "last_name": {
        "equal": ("last name equal", 0.85, 0.002),
        "close": ("last name close", 0.06, 0.002),
        "gender_differs": ("last name of the other gender", 0.001, 0.002),
        "differs": ("last name differs", 0.05, 0.994),
    },
    "patronymic": {
        "equal": ("patronymic equal", 0.9, 0.02),
        "initial": ("patronymic initial agrees", 0.06, 0.05),
        "differs": ("different patronymic", 0.04, 0.93),
    },
    # Only where the first names do not both settle it (initials, a surname alone).
    "gender": {
        "equal": ("same gender", 0.97, 0.5),
        "differs": ("different gender", 0.01, 0.5),
    },
    "company": {
        "tax_equal": ("same tax id", 0.25, 0.005),
        "tax_differs": ("different tax id", 0.03, 0.3),
        "equal": ("same company", 0.3, 0.01),
        "differs": ("different company", 0.1, 0.5),
    },
    "city": {
        "equal": ("same city", 0.8, 0.1),
        "differs": ("different city", 0.1, 0.85),
    },
    "birth_date": {
        "equal": ("same birth date", 0.9, 1e-4),
        "close": ("birth date close", 0.03, 0.001),
        "differs": ("different birth date", 0.05, 0.9989),
    },
    "address": {
        "equal": ("same address", 0.7, 2e-4),
        "close": ("address close", 0.1, 5e-4),
        "differs": ("different address", 0.15, 0.9993),
    },
    "postcode": {
        "equal": ("same postcode", 0.85, 0.01),
        "differs": ("different postcode", 0.08, 0.99),
    },
    # A person's state numbers (hub/domain/person_ids.py), kept only when their check digits
    # hold: one person has one ИНН and one СНИЛС for life, so two valid different numbers are
    # two people. m of "differs" is a typo (say 1 in 100 numbers typed) that the check digits
    # miss (about 1 in 100 of them): 1e-4, stronger against than a name, patronymic and city
    # together are for. u of "equal": two people given one number, about never.
    "personal_tax_id": {
        "equal": ("same personal ИНН", 0.98, 1e-8),
        "differs": ("different personal ИНН", 1e-4, 0.9999),
    },
    "snils": {
        "equal": ("same СНИЛС", 0.98, 1e-8),
        "differs": ("different СНИЛС", 1e-4, 0.9999),
    },
    # An id in a source system (``1c:000123``), compared only within one system: another
    # system's id says nothing. A system holds a person once, mostly; a legacy base holds
    # some people twice, so a different id of the same system is evidence against, not proof.
    "external_id": {
        "equal": ("same external id", 0.9, 1e-7),
        "differs": ("different external id, same system", 0.1, 0.9999),
    },
}
# Fields whose equal level is weighed by the frequency of the value.
TERM_FREQUENCY = ("first_name", "last_name", "patronymic", "city")
DEFAULT_PRIOR = -16.0  # log2 odds that two random contacts are one person
MIN_U = 1e-9


@dataclass(slots=True)
class MatchModel:
    prior: float = DEFAULT_PRIOR
    # field → level → [m, u]
    levels: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # field → value → share of contacts with the field that have this value
    frequencies: dict[str, dict[str, float]] = field(default_factory=dict)
    version: int = 0  # 0: the built-in defaults; each training adds one
    trained_at: str | None = None
    contacts: int = 0
    pairs: int = 0
    iterations: int = 0
    # (field, level) → bits, for levels not weighed by a value's frequency
    cache: dict[tuple[str, str], float] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def default(cls) -> MatchModel:
        return cls(
            levels={
                name: {level: [m, u] for level, (_, m, u) in levels.items()}
                for name, levels in LEVELS.items()
            }
        )

    def m_u(self, name: str, level: str) -> tuple[float, float]:
        found = self.levels.get(name, {}).get(level)
        if found is None:
            _, m, u = LEVELS[name][level]
            return m, u
        return found[0], found[1]

    def weight(self, name: str, level: str, value: str | None = None) -> tuple[float, str]:
        """The level's match weight in bits, and a note on the value's frequency
        ("rare", "common") when it was weighed by it."""
        if level != "equal" or value is None or name not in self.frequencies:
            bits = self.cache.get((name, level))
            if bits is None:
                m, u = self.m_u(name, level)
                bits = self.cache[(name, level)] = math.log2(max(m, MIN_U) / max(u, MIN_U))
            return bits, ""
        m, u = self.m_u(name, level)
        table = self.frequencies[name]
        share = table.get(value, table.get("", u))
        note = "rare" if share < u / 2 else "common" if share > 2 * u else ""
        return math.log2(max(m, MIN_U) / max(share, MIN_U)), note

    def probability(self, bits: float) -> float:
        return 1.0 / (1.0 + 2.0 ** -(self.prior + bits))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "trained_at": self.trained_at,
            "contacts": self.contacts,
            "pairs": self.pairs,
            "iterations": self.iterations,
            "prior": self.prior,
            "levels": self.levels,
            "frequencies": self.frequencies,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MatchModel:
        if data.get("format") != FORMAT:
            raise ValueError(f"match model format {data.get('format')!r}, expected {FORMAT}")
        model = cls.default()
        for name, levels in data.get("levels", {}).items():
            if name in LEVELS:
                for level, pair in levels.items():
                    if level in LEVELS[name]:
                        model.levels[name][level] = [float(pair[0]), float(pair[1])]
        model.prior = float(data.get("prior", DEFAULT_PRIOR))
        model.frequencies = {k: dict(v) for k, v in data.get("frequencies", {}).items()}
        model.version = int(data.get("version", 0))
        model.trained_at = data.get("trained_at")
        model.contacts = int(data.get("contacts", 0))
        model.pairs = int(data.get("pairs", 0))
        model.iterations = int(data.get("iterations", 0))
        return model

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1), "utf-8")
        tmp.replace(path)

    def table(self) -> list[list[str]]:
        """One row per field and level: m, u and the weight, as `hub dedupe model` shows."""
        rows = []
        for name, levels in LEVELS.items():
            for level, (label, _, _) in levels.items():
                m, u = self.m_u(name, level)
                bits = math.log2(max(m, MIN_U) / max(u, MIN_U))
                tf = f"{len(self.frequencies.get(name, {}))} values" if level == "equal" else ""
                if name not in TERM_FREQUENCY or not self.frequencies.get(name):
                    tf = ""
                rows.append([name, level, label, f"{m:.4g}", f"{u:.3g}", f"{bits:+.1f}", tf])
        return rows


DEFAULT = MatchModel.default()


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> MatchModel:
    return MatchModel.from_json(json.loads(Path(path).read_text("utf-8")))


def load_model(path: Path | None) -> MatchModel:
    """The trained model at ``path``, or the defaults when there is none yet."""
    if path is None or not path.exists():
        return DEFAULT
    return _load(str(path), path.stat().st_mtime)


def model_path(settings: Any) -> Path | None:
    """Where ``matching.model`` points, relative to the config file's folder; None for a
    relative path in settings read from no file (tests, the bench): the defaults apply."""
    path = Path(settings.matching.model)
    if path.is_absolute():
        return path
    if settings.config_path is None:
        return None
    return settings.config_path.parent / path
