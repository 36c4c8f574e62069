"""SMS.ru as the campaign gateway ``smsru``: one ``sms/send`` per message, delivery
reports by callback or by ``sms/status``.

Sending (https://sms.ru/api/send): ``POST {base_url}/sms/send`` with the form ``api_id``,
``to`` (the number in digits, without "+"), ``msg`` (UTF-8), ``from`` (the approved
sender, when set) and ``json=1``. The answer's top-level ``status_code`` speaks of the
request (key, sender, money), the object under ``sms[<number>]`` of the message: ``OK``
with its ``sms_id`` (kept as the provider id), or ``ERROR`` with ``status_code`` and
``status_text``. What each code means and whether it is retried is
:data:`plugins.sms_smsru.codes.SEND_ERRORS`: limits and "service unavailable" (206,
220, 230-233, 500) are :class:`Transient`, the rest (a refused number, no money, an
unapproved sender, a wrong key) :class:`Permanent`, with SMS.ru's own text when it
gave one. HTTP 429 is retried after its Retry-After; 5xx, timeouts and lost
connections are retried.

After a crash, ``find`` answers ``None``: SMS.ru takes no id of ours and has no query
by one, so a message cut off mid-send is held for review, never sent twice.

Delivery (https://sms.ru/api/status): ``status`` polls ``sms/status`` with up to 100
``sms_id`` at once (:data:`plugins.sms_smsru.codes.STATUSES`: 103 delivered, 104-108 and
150 failed, 100-102 still on the way). With ``callback_token`` set, SMS.ru's callback
(account settings, "Программистам" → callback; http://online.sms.ru/?panel=api&subpanel=cb)
can be pointed at ``https://<hub>/sms/smsru/<callback_token>``: SMS.ru POSTs a form of
``data[0]``, ``data[1]``, ... each a record of lines, ``sms_status`` / sms_id / code /
unix time; the route hands the reports to ``hub.campaigns.delivered`` and answers the
text ``100``, which SMS.ru requires of a handler. A record of any other kind
(``callcheck_status``) is answered 100 and ignored.

Replies. SMS.ru's callback page lists two kinds of notification, delivery statuses and
call-checks; it documents no incoming SMS, so this plugin has no reply route and a
"СТОП" sent to an SMS.ru sender reaches the hub only by another way.

Sources (read 2025-11, stored copies): https://sms.ru/api/send, https://sms.ru/api/status,
https://sms.ru/api/cost (copies on tele2./beeline./joomla./megafon.sms.ru); the callback
page http://online.sms.ru/?panel=api&subpanel=cb; the official PHP sample
``smsru_send.php`` (github.com/llISparkIll/misc1 @4b9a416); the callback handler sample
as reproduced in the C# ``SmsRu.Handlers.CallbackHandler`` and Ruby ``SmsRu::Webhook``.

Not verified (from public clients' tables, not from a page read here): the codes other
than 100, 103, 104 and 207 and their texts; ``from`` and ``test`` as parameter names;
the fourth line of a callback record (the time) and SMS.ru retrying a push not answered
100; the ``my/balance`` answer (``balance`` beside ``status_code``); that ``sms/status``
takes up to 100 ids and is served over POST; ``cost`` / ``sms`` (parts) in a send
answer, read when present.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from hub.campaigns.gateway import (
    Accepted,
    DeliveryReport,
    Outgoing,
    Permanent,
    Transient,
)
from hub.campaigns.http import check_account, integer, open_session, post
from hub.hookspecs import hookimpl
from hub.logging import debug_enabled
from plugins.sms_smsru.codes import (
    AUTH_ERRORS,
    NOT_FOUND,
    SEND_ERRORS,
    STATUSES,
    WAIT,
)
from plugins.sms_smsru.config import SmsRuConfig

log = structlog.get_logger("plugins.sms_smsru")

__all__ = ["SmsRu", "SmsRuConfig"]

CALLBACK = "/sms/smsru/{token}"
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
STATUS_BATCH = 100


class SmsRu:
    """Campaign SMS through one SMS.ru account."""

    Config = SmsRuConfig
    name = "smsru"
    channel = "sms"

    def __init__(self, config: SmsRuConfig, hub: Any = None) -> None:
        self.config = config
        self.hub = hub
        self.rate = config.rate
        self.concurrency = config.concurrency
        self._session: aiohttp.ClientSession | None = None

    # -- hooks ----------------------------------------------------------------------------

    @hookimpl
    def hub_campaign_gateways(self) -> list[SmsRu]:
        return [self]

    @hookimpl
    async def hub_startup(self) -> None:
        if self._session is None:
            self._session = open_session(self.config.timeout)
        if not self.config.check_balance:
            return
        try:
            body = await check_account(
                self._call("my/balance", {}),
                gateway="SMS.ru",
                url=self.config.base_url,
                what="my/balance",
                refusal=_refusal,
                credentials=AUTH_ERRORS,
                fix="check [plugins.sms_smsru] api_id",
            )
        except BaseException:
            await self.hub_shutdown()
            raise
        log.info("smsru_ready", balance=body.get("balance"), sender=self.config.sender)

    @hookimpl
    async def hub_shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        if self.config.callback_token is None:
            return []
        return [web.post(CALLBACK, self.callback)]

    # -- the gateway ----------------------------------------------------------------------

    async def send(self, message: Outgoing) -> Accepted:
        number = _digits(message.address)
        form = {"to": number, "msg": message.text}
        sender = message.sender or self.config.sender
        if sender:
            form["from"] = sender
        if self.config.test:
            form["test"] = "1"
        body = await self._call("sms/send", form)
        if body.get("status") != "OK":
            raise _failure(body)
        sms = body.get("sms")
        entry = sms.get(number) if isinstance(sms, dict) else None
        if not isinstance(entry, dict):
            # The request was taken and says nothing of our number: it may have gone.
            raise Permanent(f"SMS.ru answered OK without the number {number}", code=None)
        if entry.get("status") != "OK":
            raise _failure(entry)
        provider_id = entry.get("sms_id")
        if not isinstance(provider_id, str) or not provider_id:
            raise Permanent("SMS.ru accepted the message without an sms_id")
        if debug_enabled("plugins.sms_smsru"):
            log.debug("smsru_sent", outbox_id=message.id, sms_id=provider_id)
        return Accepted(
            provider_id=provider_id,
            parts=integer(entry.get("sms")),
            cost=_decimal(entry.get("cost")),
        )

    async def find(self, message: Outgoing) -> None:
        return None  # SMS.ru has no query by an id of ours: a person decides

    async def status(self, provider_ids: Sequence[str]) -> list[DeliveryReport]:
        reports: list[DeliveryReport] = []
        for start in range(0, len(provider_ids), STATUS_BATCH):
            batch = list(provider_ids[start : start + STATUS_BATCH])
            body = await self._call("sms/status", {"sms_id": ",".join(batch)})
            if body.get("status") != "OK":
                raise _failure(body)
            entries = body.get("sms")
            if not isinstance(entries, dict):
                continue
            for sms_id in batch:
                entry = entries.get(sms_id)
                if isinstance(entry, dict) and entry.get("status") == "OK":
                    report = _report(sms_id, integer(entry.get("status_code")), None)
                    if report is not None:
                        reports.append(report)
        return reports

    # -- the callback ---------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        token = self.config.callback_token
        given = request.match_info.get("token", "")
        if token is None or not hmac.compare_digest(
            given.encode(), token.get_secret_value().encode()
        ):
            return web.Response(status=404, text="not found")
        form = await request.post()
        reports = []
        for key, value in form.items():
            if not key.startswith("data[") or not isinstance(value, str):
                continue
            lines = value.replace("\r\n", "\n").split("\n")
            if lines[0].strip() != "sms_status" or len(lines) < 3:
                continue  # callcheck_status, or a kind SMS.ru added since
            at = integer(lines[3]) if len(lines) > 3 else None
            when = datetime.fromtimestamp(at, UTC) if at else None
            report = _report(lines[1].strip(), integer(lines[2]), when)
            if report is not None:
                reports.append(report)
        if reports:
            try:
                await self.hub.campaigns.delivered(self.name, reports)
            except Exception:
                log.exception("smsru_reports_not_stored", reports=len(reports))
                # Not 100: SMS.ru sends the reports again.
                return web.Response(status=503, text="not stored, retry")
        log.info("smsru_callback", reports=len(reports))
        return web.Response(text="100")

    # -- helpers --------------------------------------------------------------------------

    async def _call(self, method: str, form: dict[str, str]) -> dict[str, Any]:
        params = {"api_id": self.config.api_id.get_secret_value(), "json": "1", **form}
        return await post(self._session, f"{self.config.base_url}/{method}", params, method)


def _digits(address: str) -> str:
    """An E.164 number as SMS.ru takes it: digits only."""
    address = address.strip()
    if not E164.match(address):
        raise Permanent(f"{address!r} is not a phone number in E.164 (+79161234567)", code=None)
    return address[1:]


def _refusal(body: dict[str, Any]) -> tuple[int | None, str] | None:
    """What an answer that is not ``"status": "OK"`` says: its status code and words."""
    if body.get("status") == "OK":
        return None
    code = integer(body.get("status_code"))
    return code, _words(code, body)


def _words(code: int | None, body: dict[str, Any]) -> str:
    text = body.get("status_text")
    if isinstance(text, str) and text.strip():
        return text.strip()[:300]
    if code in SEND_ERRORS:
        return SEND_ERRORS[code][1]
    return f"неизвестный код ответа {code}"


def _failure(body: dict[str, Any]) -> Transient | Permanent:
    code = integer(body.get("status_code"))
    words = _words(code, body)
    retry, _ = SEND_ERRORS.get(code, (False, "")) if code is not None else (False, "")
    if retry:
        after = timedelta(seconds=WAIT[code]) if code in WAIT else None
        return Transient(f"SMS.ru {code}: {words}", after=after)
    if code in AUTH_ERRORS:
        log.error("smsru_key_refused", status_code=code)
    return Permanent(words, code=None if code is None else str(code))


def _report(sms_id: str, code: int | None, at: datetime | None) -> DeliveryReport | None:
    if not sms_id or code is None or code == NOT_FOUND or code not in STATUSES:
        return None  # not found, or a code of no known meaning: leave the message as it is
    state, words = STATUSES[code]
    if state == "failed":
        return DeliveryReport(sms_id, "failed", error=words, at=at)
    return DeliveryReport(sms_id, state, at=at if state == "delivered" else None)


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
