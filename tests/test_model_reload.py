"""A model `hub dedupe train` writes is used by the running hub without a restart."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.domain.weights import MatchModel
from tests.test_matching import lead, run_hub, submit


def vera(phone: str, email: str) -> dict[str, Any]:
    """Вера Сорокина of Пермь, with a phone and a mailbox of her own each time."""
    return lead("Сорокина Вера", phone, email, city="Пермь")


async def test_a_newly_trained_model_decides_the_next_lead_without_a_restart(store_url, tmp_path):
    path = tmp_path / "match-model.json"
    hub = await run_hub(store_url, matching={"model": str(path)})
    try:
        first = await submit(hub, vera("+7 912 301-00-01", "vera@mail.ru"))
        namesake = await submit(hub, vera("+7 912 301-00-02", "v.s@yandex.ru"))
        assert namesake["contact_id"] != first["contact_id"]  # the defaults: two people

        # A model learned on a store where everyone with one name is one person.
        trained = MatchModel.default()
        trained.prior = 60.0
        trained.version = 1
        trained.save(path)
        await asyncio.sleep(1.2)

        third = await submit(hub, vera("+7 912 301-00-03", "vs@inbox.ru"))
        assert third["contact_id"] in (first["contact_id"], namesake["contact_id"])
    finally:
        await hub.stop()
