"""Who gets a new deal: the client's manager, a rule, or the next manager on duty."""

from __future__ import annotations

from typing import Any

import pytest

from hub.config import WEEKDAYS, ConfigError, load_settings
from tests.conftest import TEAM, make_settings
from tests.test_matching import lead, run_hub, submit

WHOLESALE = {"rules": [{"name": "опт — Дмитрию", "segment": "Опт", "to": ["dmitry@example.com"]}]}


def on_duty_every_day() -> list[dict[str, Any]]:
    """The team working all week, so a test about rules or limits passes on a Sunday too."""
    return [{**user, "working_days": list(WEEKDAYS)} for user in TEAM]


async def test_a_rule_sends_wholesale_leads_to_its_manager(store_url):
    hub = await run_hub(store_url, assignment=WHOLESALE, users=on_duty_every_day())
    try:
        results = [
            await submit(hub, lead(f"Клиент {i}", f"+7 912 400-00-0{i}", segment="Опт"))
            for i in range(3)
        ]
        retail = await submit(hub, lead("Розница", "+7 912 400-00-09", segment="Розница"))
        dmitry = results[0]["owner_id"]
        assert {r["owner_id"] for r in results} == {dmitry}
        assert {r["assigned_by"] for r in results} == {"rule:опт — Дмитрию"}
        assert retail["assigned_by"] == "round_robin"
    finally:
        await hub.stop()


async def test_a_manager_at_the_open_deal_limit_is_skipped(store_url):
    team = on_duty_every_day()
    team[0]["max_open_deals"] = 1  # anna
    hub = await run_hub(store_url, users=team)
    try:
        owners = [
            (await submit(hub, lead(f"Клиент {i}", f"+7 912 500-00-0{i}")))["owner_id"]
            for i in range(4)
        ]
        anna = 1
        assert owners.count(anna) == 1
    finally:
        await hub.stop()


async def test_nobody_on_duty_still_gets_the_lead_and_says_so(store_url):
    team: list[dict[str, Any]] = [dict(u) for u in TEAM]
    for user in team[:2]:
        user["working_days"] = []  # never on duty
    hub = await run_hub(store_url, users=team)
    try:
        result = await submit(hub, lead("Ночной клиент", "+7 912 600-00-01"))
        assert result["owner_id"] is not None
        assert result["assigned_by"] == "round_robin + fallback: nobody on duty with room"
    finally:
        await hub.stop()


def test_a_rule_naming_an_unknown_manager_stops_start_up(tmp_path):
    with pytest.raises(ValueError, match=r"nobody@example\.com not under"):
        make_settings(
            "sqlite+aiosqlite:///x.db",
            assignment={"rules": [{"name": "x", "to": ["nobody@example.com"]}]},
        )
    bad = tmp_path / "config.toml"
    bad.write_text('[[users]]\nemail = "a@b.ru"\nname = "A"\nworking_hours = "9-18"\n')
    with pytest.raises(ConfigError, match=r"users\.0\.working_hours"):
        load_settings(bad)
