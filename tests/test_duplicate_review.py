"""A head of sales reviews a possible duplicate with both records side by side and the
partial weights that made its score."""

from __future__ import annotations

from typing import Any

from hub.api.common import HUB_KEY
from hub.api.review import weights
from tests.test_api import ANNA, HEAD
from tests.test_matching import lead, submit


async def flagged_pair(hub_client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    hub = hub_client.app[HUB_KEY]
    first = await submit(
        hub, lead("Ольга Лебедева", "+7 916 111-22-33", city="Самара", company="ООО Ромашка")
    )
    second = await submit(
        hub, lead("Константин Белов", "8 (916) 111-22-33", email="k.belov@mail.ru", city="Samara")
    )
    assert second["decision"] == "possible_duplicate"
    return first, second


async def test_a_pair_shows_both_records_field_by_field_and_the_weights_behind_its_score(
    hub_client,
):
    first, second = await flagged_pair(hub_client)
    listed = await (await hub_client.get("/api/v1/duplicates", headers=HEAD)).json()
    (pair,) = listed["items"]
    response = await hub_client.get(f"/api/v1/duplicates/{pair['id']}", headers=HEAD)
    assert response.status == 200, await response.text()
    review = await response.json()
    assert [c["id"] for c in review["contacts"]] == [second["contact_id"], first["contact_id"]]
    rows = {r["field"]: r for r in review["side_by_side"]}
    assert rows["name"]["a"] == "Константин Белов" and rows["name"]["b"] == "Ольга Лебедева"
    assert rows["name"]["verdict"] == "differs"
    assert rows["phones"]["verdict"] == "same"
    assert rows["phones"]["a"] == ["+79161112233"]
    assert rows["emails"]["verdict"] == "one_side"
    assert rows["company"] == {
        "field": "company",
        "label": "компания",
        "a": None,
        "b": "ООО Ромашка",
        "verdict": "one_side",
    }
    assert "birth_date" not in rows  # given on neither: not shown
    assert rows["city"]["verdict"] == "same"  # Samara is Самара, as the matcher reads it
    by_reason = {w["reason"]: w["bits"] for w in review["weights"]}
    assert by_reason["same phone"] > 0
    assert any(r.startswith("first name differs") and bits < 0 for r, bits in by_reason.items())
    assert sum(by_reason.values()) < by_reason["same phone"]  # the names speak against it
    assert review["score"] == pair["score"]


async def test_only_a_head_reviews_a_pair_and_an_unknown_pair_is_404(hub_client):
    await flagged_pair(hub_client)
    (pair,) = (await (await hub_client.get("/api/v1/duplicates", headers=HEAD)).json())["items"]
    assert (await hub_client.get(f"/api/v1/duplicates/{pair['id']}", headers=ANNA)).status == 403
    missing = await hub_client.get("/api/v1/duplicates/999", headers=HEAD)
    assert missing.status == 404
    assert "no duplicate pair 999" in (await missing.json())["detail"]


def test_weights_read_every_reason_the_matcher_words_with_its_sign():
    assert weights(["phone equal +9.1", "first name differs −4.0", "kept apart: 1 and 3"]) == [
        {"reason": "phone equal", "bits": 9.1},
        {"reason": "first name differs", "bits": -4.0},
        {"reason": "kept apart: 1 and 3", "bits": None},
    ]


def test_hub_dedupe_show_prints_both_records_the_weights_and_what_to_do(tmp_path):
    import asyncio

    from click.testing import CliRunner

    from hub.cli import main
    from hub.config import load_settings
    from hub.context import Hub
    from tests.conftest import ROOT

    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.example.toml").read_text())

    async def seed() -> None:
        hub = Hub(load_settings(config))
        await hub.start()
        try:
            await submit(hub, lead("Ольга Лебедева", "+7 916 111-22-33", city="Самара"))
            flagged = await submit(
                hub, lead("Константин Белов", "8 (916) 111-22-33", email="k.belov@mail.ru")
            )
            assert flagged["decision"] == "possible_duplicate"
        finally:
            await hub.stop()

    asyncio.run(seed())
    runner = CliRunner()
    shown = runner.invoke(main, ["--config", str(config), "dedupe", "show", "1"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("pair 1: contact 2 ~ contact 1, match probability 0.")
    name_row = next(line for line in lines if line.startswith("имя"))
    assert "Константин Белов" in name_row and "Ольга Лебедева" in name_row
    assert name_row.split()[-1] == "differs"
    phone_row = next(line for line in lines if line.startswith("телефоны"))
    assert phone_row.split()[-1] == "same"
    why = lines[lines.index("why:") + 1 :]
    assert any(line.split()[0].startswith("+") and "same phone" in line for line in why)
    assert any(line.split()[0].startswith("−") and "first name differs" in line for line in why)
    assert lines[-1] == "one person: hub contacts merge 1 2; two people: hub dedupe dismiss 1"
    missing = runner.invoke(main, ["--config", str(config), "dedupe", "show", "9"])
    assert missing.exit_code == 1 and "no duplicate pair 9" in missing.output
