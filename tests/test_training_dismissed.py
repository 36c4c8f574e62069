"""Pairs a head of sales dismissed teach `hub dedupe train` that what they share is weaker
evidence: the next pair like them scores lower."""

from __future__ import annotations

from hub.dedupe import train
from hub.store.models import DuplicateCandidate
from hub.store.types import utcnow
from tests.conftest import seed_contacts
from tests.test_matching import run_hub

FIRSTS = ["Иван", "Мария", "Олег", "Анна", "Павел", "Ольга", "Роман", "Вера"]


async def test_dismissed_pairs_sharing_a_phone_make_a_shared_phone_weaker_evidence(store_url):
    hub = await run_hub(store_url)
    try:
        now = utcnow()
        rows, points = [], []
        for j in range(16):  # records on file twice, each pair on one mobile
            for k in (0, 1):
                cid = 1 + 2 * j + k
                rows.append({"id": cid, "name": f"{FIRSTS[j % 8]} Клим{j}ов", "custom": {}})
                points.append((cid, f"+7912000{j:04d}"))
        await seed_contacts(hub, rows, points)
        before = await train(hub.store, hub.settings)

        # Half of them a head looked at: father and son on one phone, two people.
        async with hub.store.write() as conn:
            await conn.execute(
                DuplicateCandidate.__table__.insert(),
                [
                    {"contact_id": 2 + 2 * j, "other_id": 1 + 2 * j, "score": 0.9,
                     "reasons": {"reasons": []}, "origin": "scan", "status": "dismissed",
                     "created_at": now}
                    for j in range(8)
                ],
            )  # fmt: skip
        after = await train(hub.store, hub.settings)

        assert (before.dismissed, after.dismissed) == (0, 8)
        assert after.share < before.share  # fewer of such pairs taken for one person
        phone_before, _ = before.model.weight("phone", "equal")
        phone_after, _ = after.model.weight("phone", "equal")
        assert phone_after < phone_before - 1  # bits: a shared mobile says less now
    finally:
        await hub.stop()
