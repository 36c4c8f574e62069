"""A recipient's timezone from their city, where their phone number names none.

A Russian mobile number belongs to no region, so quiet hours in the recipient's own
time need the contact's city: ``data/city_zones.tsv`` gives the zone of Russia's
regional centres and largest cities (and the neighbours' capitals), matched across
alphabets and spellings ("г. Самара", "Samara", "САМАРА, Россия").
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from anyascii import anyascii

DATA = Path(__file__).with_name("data") / "city_zones.tsv"
_PREFIX = re.compile(r"^(г\.|г |город |gorod |city of )", re.IGNORECASE)


def city_key(city: str) -> str:
    """One spelling of a city: its Latin letters, lower case, without the "г." before it
    or the country after a comma."""
    city = _PREFIX.sub("", city.split(",")[0].strip()).strip()
    return re.sub(r"[^a-z0-9]", "", anyascii(city).lower())


@cache
def _zones() -> dict[str, str]:
    zones: dict[str, str] = {}
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        zone, cities = line.split("\t")
        for city in cities.split("|"):
            for spelling in city.split("/"):
                zones[city_key(spelling)] = zone
    return zones


@cache
def zone_of_city(city: str | None) -> ZoneInfo | None:
    if not city:
        return None
    found = _zones().get(city_key(city))
    return ZoneInfo(found) if found else None
