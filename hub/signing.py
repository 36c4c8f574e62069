"""Signed requests: how a partner's server proves a request is its own, and new.

The sender shares a secret with the hub and signs every request with it::

    X-Hub-Timestamp: <unix seconds>
    X-Hub-Signature-256: sha256=<hex of HMAC-SHA256(secret, message)>

    message = f"{timestamp}\\n{METHOD}\\n{path?query}\\n{Idempotency-Key}\\n".encode() + body

``path?query`` is the request target exactly as sent (percent-encoded as on the
wire); the ``Idempotency-Key`` is empty when the request has none. No field but
the body can hold a newline (HTTP allows none in a method, a target or a header)
and the body comes last, so two different requests never share a message.

The hub refuses a timestamp more than :data:`WINDOW` seconds away from its clock,
either way, and a signature it has seen before (:func:`hub.intake.claim_once`,
kept until the timestamp leaves the window): a captured request can be sent
neither later nor again within those minutes. A sender retrying signs again with
the current time (a second later at least, or the signature is the same) and keeps
its ``Idempotency-Key``, so the retry is the same lead. The web-form channel uses
this for forms with ``auth = "hmac"``; any channel receiving webhooks can too::

    signed = verify_request(request, secret, body)  # or SignatureRefused
    if not await claim_once(hub.intake, "mychannel", signed.signature, signed.valid_for):
        raise SignatureRefused("signature_replayed", "this signed request was received before")
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

TIMESTAMP_HEADER = "X-Hub-Timestamp"
SIGNATURE_HEADER = "X-Hub-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WINDOW = 300  # seconds a timestamp may be from the hub's clock, behind or ahead
# Seconds a seen signature is kept beyond the window, for hub processes whose clocks
# differ: one of them could still take the timestamp as fresh.
CLOCK_SLACK = 60

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")

clock = time.time  # the hub's clock; tests move it


class SignatureRefused(Exception):
    """A signed request is refused: ``code`` says why, ``detail`` says it for a developer.

    Codes: ``signature_missing`` (no timestamp or signature header),
    ``signature_invalid`` (malformed, or not this request signed with the secret),
    ``signature_expired`` (the timestamp is more than the window behind or ahead),
    ``signature_replayed`` (the same signature was received before).
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Signed:
    """A request whose signature and time are good."""

    timestamp: int
    signature: str  # the HMAC, lower-case hex: what a replay is recognised by
    valid_for: float  # seconds a claim of the signature must last (see claim_once)


def message(
    timestamp: int | str, method: str, path_qs: str, idempotency_key: str, body: bytes
) -> bytes:
    """The bytes a signature covers; ValueError for a field that would make it ambiguous."""
    head = (str(timestamp), method, path_qs, idempotency_key)
    if any("\n" in field or "\r" in field for field in head):
        raise ValueError("a signed request's timestamp, method, path and key hold no line break")
    return "\n".join((*head, "")).encode("utf-8", "surrogateescape") + body


def sign(
    secret: str | bytes,
    timestamp: int | str,
    method: str,
    path_qs: str,
    idempotency_key: str,
    body: bytes,
) -> str:
    """The ``X-Hub-Signature-256`` header's value: ``sha256=<hex>``."""
    return "sha256=" + _digest(secret, message(timestamp, method, path_qs, idempotency_key, body))


def verify(
    secret: str | bytes,
    signature: str | None,
    timestamp: str | None,
    method: str,
    path_qs: str,
    idempotency_key: str,
    body: bytes,
    *,
    now: float | None = None,
    window: int = WINDOW,
) -> Signed:
    """Check a request's signature, then its time; :class:`SignatureRefused` if either fails.

    ``signature`` and ``timestamp`` are the headers' values as received. Whether
    the signature was seen before is the caller's to ask (:func:`hub.intake.claim_once`),
    after this, so a forged request never takes a place in the store.
    """
    if not signature or not timestamp:
        missing = SIGNATURE_HEADER if not signature else TIMESTAMP_HEADER
        raise SignatureRefused("signature_missing", f"no {missing} header")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureRefused("signature_invalid", f"{TIMESTAMP_HEADER} is not unix seconds")
    found = _SIGNATURE.fullmatch(signature.strip())
    if found is None:
        raise SignatureRefused("signature_invalid", f"{SIGNATURE_HEADER} is not sha256=<hex>")
    given = found.group(1).lower()
    try:
        signed = message(timestamp, method, path_qs, idempotency_key, body)
    except ValueError as error:
        raise SignatureRefused("signature_invalid", str(error)) from None
    if not hmac.compare_digest(given.encode(), _digest(secret, signed).encode()):
        raise SignatureRefused(
            "signature_invalid",
            "the signature is not this request's (timestamp, method, path with query, "
            "Idempotency-Key, body) signed with the form's secret",
        )
    now = clock() if now is None else now
    moment = int(timestamp)
    if abs(now - moment) > window:
        how = "old" if moment < now else "far in the future"
        raise SignatureRefused(
            "signature_expired",
            f"{TIMESTAMP_HEADER} is {abs(round(now - moment))} s {how}: "
            f"sign each request when it is sent (allowed: {window} s either way)",
        )
    return Signed(moment, given, moment + window - now + CLOCK_SLACK)


def verify_request(
    request: web.Request, secret: str | bytes, body: bytes, *, now: float | None = None
) -> Signed:
    """:func:`verify` for an aiohttp request whose body was read as ``body``."""
    headers = request.headers
    return verify(
        secret,
        headers.get(SIGNATURE_HEADER),
        headers.get(TIMESTAMP_HEADER),
        request.method,
        request.raw_path,
        headers.get(IDEMPOTENCY_HEADER, ""),
        body,
        now=now,
    )


def _digest(secret: str | bytes, signed: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, signed, hashlib.sha256).hexdigest()
