"""Signed forms: a partner's request is its own, and it creates a lead once however often
it is sent again (hub/signing.py, hub/intake/nonces.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from structlog.testing import capture_logs

from hub import signing
from hub.api import HUB_KEY
from hub.app import build_app
from hub.intake import IntakeClosed, claim_once, release_claim
from hub.signing import SignatureRefused, sign, verify
from hub.store.models import Deal, InboxEvent, Nonce
from tests.conftest import FORMS, make_hub, make_settings, wait_for

SECRET = "partner-secret-0123456789"
ORDER = '{"name": "ООО Ромашка", "phone": "+7 343 222-33-44", "amount": "150000"}'.encode()
JSON = {"Content-Type": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml"}


def signed_headers(
    path: str,
    body: bytes,
    *,
    key: str = "",
    at: int | None = None,
    secret: str = SECRET,
) -> dict[str, str]:
    """What a partner's server sends: the time, the signature, the Idempotency-Key."""
    timestamp = int(time.time()) if at is None else at
    headers = {
        "X-Hub-Timestamp": str(timestamp),
        "X-Hub-Signature-256": sign(secret, timestamp, "POST", path, key, body),
        **JSON,
    }
    if key:
        headers["Idempotency-Key"] = key
    return headers


async def rows(client: TestClient, model: Any) -> int:
    async with client.app[HUB_KEY].store.read() as conn:
        return (await conn.execute(select(func.count()).select_from(model))).scalar_one()


async def refusal(response: Any) -> str:
    assert response.status == 401, await response.text()
    return (await response.json())["code"]


# -- replays ------------------------------------------------------------------------------


async def test_a_captured_signed_request_creates_one_lead_however_it_is_sent_again(
    hub_client, monkeypatch
):
    path = "/forms/partner?utm_source=partner&ref=42"
    headers = signed_headers(path, ORDER, key="order-7781")
    first = await hub_client.post(path, data=ORDER, headers=headers)
    assert first.status == 202
    lead_id = (await first.json())["lead_id"]

    again = await hub_client.post(path, data=ORDER, headers=headers)
    assert await refusal(again) == "signature_replayed"
    other_key = await hub_client.post(
        path, data=ORDER, headers={**headers, "Idempotency-Key": "order-7782"}
    )
    assert await refusal(other_key) == "signature_invalid"
    other_query = await hub_client.post(
        "/forms/partner?utm_source=partner&ref=43", data=ORDER, headers=headers
    )
    assert await refusal(other_query) == "signature_invalid"
    no_query = await hub_client.post("/forms/partner", data=ORDER, headers=headers)
    assert await refusal(no_query) == "signature_invalid"

    later = time.time() + 5 * 60 + 1
    monkeypatch.setattr(signing, "clock", lambda: later)
    after_five_minutes = await hub_client.post(path, data=ORDER, headers=headers)
    assert await refusal(after_five_minutes) == "signature_expired"

    await wait_for(lambda: _deal_of(hub_client, lead_id))
    assert await rows(hub_client, InboxEvent) == 1
    assert await rows(hub_client, Deal) == 1


async def _deal_of(client: TestClient, lead_id: int) -> int | None:
    async with client.app[HUB_KEY].store.read() as conn:
        return (
            await conn.execute(select(Deal.id).where(Deal.inbox_id == lead_id))
        ).scalar_one_or_none()


async def test_another_hub_on_the_same_store_refuses_the_replay_and_so_does_a_restart(
    aiohttp_client, store_url
):
    one = await aiohttp_client(build_app(make_hub(make_settings(store_url))))
    two = await aiohttp_client(build_app(make_hub(make_settings(store_url))))
    headers = signed_headers("/forms/partner", ORDER, key="order-1")
    assert (await one.post("/forms/partner", data=ORDER, headers=headers)).status == 202
    assert await refusal(await two.post("/forms/partner", data=ORDER, headers=headers)) == (
        "signature_replayed"
    )
    await one.close()
    await two.close()
    restarted = await aiohttp_client(build_app(make_hub(make_settings(store_url))))
    replay = await restarted.post("/forms/partner", data=ORDER, headers=headers)
    assert await refusal(replay) == "signature_replayed"
    assert await rows(restarted, InboxEvent) == 1


async def test_two_hubs_given_the_same_request_at_once_take_it_once(aiohttp_client, store_url):
    one = await aiohttp_client(build_app(make_hub(make_settings(store_url))))
    two = await aiohttp_client(build_app(make_hub(make_settings(store_url))))
    headers = signed_headers("/forms/partner", ORDER)  # no Idempotency-Key: only the claim
    answers = await asyncio.gather(
        *(c.post("/forms/partner", data=ORDER, headers=headers) for c in (one, two) * 4)
    )
    assert sorted(a.status for a in answers) == [202] + [401] * 7


async def test_a_signature_is_for_one_path_even_where_forms_share_a_secret(
    aiohttp_client, store_url
):
    forms = {**FORMS, "partner_b": {**FORMS["partner"]}}
    client = await aiohttp_client(
        build_app(make_hub(make_settings(store_url, plugins={"webforms": {"forms": forms}})))
    )
    headers = signed_headers("/forms/partner_b", ORDER, key="k")
    moved = await client.post("/forms/partner", data=ORDER, headers=headers)
    assert await refusal(moved) == "signature_invalid"
    assert (await client.post("/forms/partner_b", data=ORDER, headers=headers)).status == 202


async def test_a_signature_covers_the_body_and_the_secret(hub_client):
    headers = signed_headers("/forms/partner", ORDER)
    changed = ORDER.replace(b"150000", b"950000")
    assert await refusal(
        await hub_client.post("/forms/partner", data=changed, headers=headers)
    ) == ("signature_invalid")
    forged = signed_headers("/forms/partner", ORDER, secret=SECRET + "x")
    assert await refusal(await hub_client.post("/forms/partner", data=ORDER, headers=forged)) == (
        "signature_invalid"
    )
    assert await rows(hub_client, InboxEvent) == 0
    assert await rows(hub_client, Nonce) == 0  # a forged request takes no place in the store


async def test_a_timestamp_more_than_five_minutes_off_either_way_is_refused(hub_client):
    for offset, status in [(-301, 401), (-299, 202), (299, 202), (301, 401), (10**9, 401)]:
        # Signed just before it is sent: a slow earlier request must not age this one.
        headers = signed_headers("/forms/partner", ORDER, at=int(time.time()) + offset)
        answer = await hub_client.post("/forms/partner", data=ORDER, headers=headers)
        assert answer.status == status, offset
        if status == 401:
            assert (await answer.json())["code"] == "signature_expired"


async def test_missing_or_malformed_signature_headers_are_refused(hub_client):
    good = signed_headers("/forms/partner", ORDER)
    cases = {
        "signature_missing": [
            {**JSON},
            {**JSON, "X-Hub-Signature-256": good["X-Hub-Signature-256"]},
            {**JSON, "X-Hub-Timestamp": good["X-Hub-Timestamp"]},
        ],
        "signature_invalid": [
            {**good, "X-Hub-Timestamp": good["X-Hub-Timestamp"] + ".0"},
            {**good, "X-Hub-Timestamp": "-" + good["X-Hub-Timestamp"]},
            {**good, "X-Hub-Signature-256": good["X-Hub-Signature-256"][7:]},  # no sha256=
            {**good, "X-Hub-Signature-256": "sha1=" + "0" * 40},
        ],
    }
    for code, variants in cases.items():
        for headers in variants:
            answer = await hub_client.post("/forms/partner", data=ORDER, headers=headers)
            assert await refusal(answer) == code, headers


# -- what the sender is told -------------------------------------------------------------


async def test_a_refused_signature_is_explained_and_logged_without_secrets(hub_client):
    headers = signed_headers("/forms/partner", ORDER, at=int(time.time()) - 600)
    with capture_logs() as logs:
        api = await hub_client.post("/forms/partner", data=ORDER, headers=headers)
        page = await hub_client.post("/forms/partner", data=ORDER, headers={**headers, **BROWSER})
    body = await api.json()
    assert body["code"] == "signature_expired"
    assert "X-Hub-Timestamp" in body["error"]
    assert body["message"].startswith("Заявка не принята: подпись устарела")
    assert page.status == 401
    assert "Заявка не принята: подпись устарела" in await page.text()
    refused = [e for e in logs if e["event"] == "webform_rejected"]
    assert [e["log_level"] for e in refused] == ["warning", "warning"]
    assert refused[0]["reason"] == "signature_expired"
    signature = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    for entry in logs:
        assert signature not in repr(entry) and SECRET not in repr(entry)


async def test_a_replayed_request_is_told_to_sign_a_retry_anew(hub_client):
    headers = signed_headers("/forms/partner", ORDER)
    assert (await hub_client.post("/forms/partner", data=ORDER, headers=headers)).status == 202
    page = await hub_client.post("/forms/partner", data=ORDER, headers={**headers, **BROWSER})
    assert page.status == 401
    assert "этот подписанный запрос уже был получен" in await page.text()


# -- claims and what is refused after them -----------------------------------------------


async def test_a_request_refused_for_its_fields_stays_refused_when_sent_again(hub_client):
    bad = '{"name": "ООО Ромашка", "phone": "12"}'.encode()
    headers = signed_headers("/forms/partner", bad)
    assert (await hub_client.post("/forms/partner", data=bad, headers=headers)).status == 422
    replay = await hub_client.post("/forms/partner", data=bad, headers=headers)
    assert await refusal(replay) == "signature_replayed"
    assert await rows(hub_client, InboxEvent) == 0


async def test_a_request_the_hub_could_not_store_may_be_sent_again_as_it_was(
    hub_client, monkeypatch
):
    intake = hub_client.app[HUB_KEY].intake
    accept = intake.accept
    calls = 0

    async def closed_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise IntakeClosed("the hub is shutting down")
        return await accept(*args, **kwargs)

    monkeypatch.setattr(intake, "accept", closed_once)
    headers = signed_headers("/forms/partner", ORDER, key="order-9")
    retry_later = await hub_client.post("/forms/partner", data=ORDER, headers=headers)
    assert retry_later.status == 503
    assert (await hub_client.post("/forms/partner", data=ORDER, headers=headers)).status == 202
    replay = await hub_client.post("/forms/partner", data=ORDER, headers=headers)
    assert await refusal(replay) == "signature_replayed"
    assert await rows(hub_client, InboxEvent) == 1


async def test_a_store_that_cannot_say_whether_a_signature_was_seen_answers_503(
    hub_client, monkeypatch
):
    async def unavailable(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionRefusedError("store down")

    monkeypatch.setattr("plugins.webforms.claim_once", unavailable)
    answer = await hub_client.post(
        "/forms/partner", data=ORDER, headers=signed_headers("/forms/partner", ORDER)
    )
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"


async def test_a_claim_holds_until_it_expires_and_expired_claims_are_purged(
    hub_client, monkeypatch
):
    intake = hub_client.app[HUB_KEY].intake
    assert await claim_once(intake, "calls", "sig-1", timedelta(minutes=6))
    assert not await claim_once(intake, "calls", "sig-1", timedelta(minutes=6))
    assert await claim_once(intake, "other", "sig-1", 360)  # namespaces are apart

    assert await claim_once(intake, "calls", "sig-2", 0)  # expired at once ...
    assert await claim_once(intake, "calls", "sig-2", 360)  # ... so claimed again
    assert not await claim_once(intake, "calls", "sig-2", 360)

    await release_claim(intake, "calls", "sig-2")
    assert await claim_once(intake, "calls", "sig-2", 360)

    monkeypatch.setattr("hub.intake.nonces.PURGE_EVERY", 0.0)
    assert await claim_once(intake, "calls", "sig-3", -1)
    assert await claim_once(intake, "calls", "sig-4", 360)  # purges sig-3
    async with intake.store.read() as conn:
        kept = (await conn.execute(select(Nonce.namespace, Nonce.key))).all()
    assert len(kept) == 4  # calls: sig-1, sig-2, sig-4; other: sig-1
    assert all(len(key) == 64 and not key.startswith("sig") for _, key in kept)


# -- the scheme ----------------------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=40)
_REQUESTS = st.fixed_dictionaries(
    {
        "secret": st.binary(min_size=1, max_size=64),
        "timestamp": st.integers(0, 10**12 - 1),
        "method": st.sampled_from(["POST", "PUT", "PATCH"]) | _TEXT,
        "path_qs": _TEXT.map(lambda t: "/" + t),
        "idempotency_key": _TEXT,
        "body": st.binary(max_size=200),
    }
)


def _verify(request: dict[str, Any], signature: str) -> signing.Signed:
    return verify(
        request["secret"],
        signature,
        str(request["timestamp"]),
        request["method"],
        request["path_qs"],
        request["idempotency_key"],
        request["body"],
        now=request.get("now", request["timestamp"]),
    )


def _with_byte_changed(value: Any, index: int, byte: int) -> Any:
    data = bytearray(value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value)
    data[index % len(data)] = byte
    changed = bytes(data)
    return changed.decode("utf-8", "surrogateescape") if isinstance(value, str) else changed


@given(request=_REQUESTS)
def test_a_signature_verifies_the_request_it_was_made_for(request):
    signature = sign(**request)
    assert signature.startswith("sha256=")
    assert _verify(request, signature).signature == signature.removeprefix("sha256=")
    assert _verify(request, signature.upper().replace("SHA256=", "sha256="))  # hex in any case


@given(
    request=_REQUESTS,
    part=st.sampled_from(["secret", "timestamp", "method", "path_qs", "idempotency_key", "body"]),
    index=st.integers(0, 1000),
    byte=st.integers(0, 255),
)
def test_any_single_byte_changed_breaks_the_signature(request, part, index, byte):
    signature = sign(**request)
    value = str(request["timestamp"]) if part == "timestamp" else request[part]
    if len(value) == 0:
        value = b"" if isinstance(value, bytes) else ""
        changed: Any = bytes([byte]) if isinstance(value, bytes) else chr(byte)
    else:
        original = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        if original[index % len(original)] == byte:
            byte = (byte + 1) % 256
        changed = _with_byte_changed(value, index, byte)
    tampered = {**request, part: changed, "now": request["timestamp"]}
    with pytest.raises(SignatureRefused) as refused:
        _verify(tampered, signature)
    assert refused.value.code == "signature_invalid"


def test_a_field_that_could_hold_a_line_break_cannot_be_signed():
    with pytest.raises(ValueError, match="no line break"):
        sign(SECRET, 1, "POST", "/forms/partner", "key\nPOST", b"")
