"""SMSC.ru as the campaign gateway ``smsc``: one ``send.php`` per message under an id of
ours, found again after a crash by ``status.php``; delivery reports and replies by
SMSC's callback.

Sending (https://smsc.ru/api/http/, "Отправка SMS-сообщения"): ``POST
{base_url}/sys/send.php`` with ``login`` and ``psw`` (or ``apikey``), ``phones`` (the
number in digits, without "+"), ``mes``, ``charset=utf-8``, ``fmt=3`` (JSON), ``cost=3``
(the answer carries ``cost`` and ``balance``), ``sender`` when set, and ``id``: the outbox
row's id, which SMSC lets the client choose ("32-битное число в диапазоне от 1 до
2147483647"; a row id outside that range is sent without one, and cannot be found
again). A success is ``{"id": N, "cnt": parts, "cost": "...", "balance": "..."}``; the
provider id kept is ``"<id>:<phone>"``, because SMSC finds a message by both.

Errors (``{"error": ..., "error_code": N}``, :data:`plugins.sms_smsc.codes.SEND_ERRORS`):
1, 2, 3, 5, 6, 7, 8 are :class:`Permanent` (parameters, credentials, no money, a
forbidden text or sender, a bad number, an undeliverable number); 4 (the IP blocked
for a while) is :class:`Transient` after a minute; 9 (the same request within a minute)
means an earlier attempt got through, so the message is looked up by its id and taken
as sent when SMSC has it. HTTP 429 is retried after its Retry-After; 5xx, timeouts and
lost connections are retried.

After a crash ``find`` asks ``status.php`` by id and phone: status -3 ("не найдено") is
:data:`NOT_THERE`, any other status means SMSC took it. ``status`` polls the same query
message by message (https://smsc.ru/api/http/status_messages/: ``{"status", "last_date",
"last_timestamp", "flag", "err"}``), and maps statuses as
:data:`plugins.sms_smsc.codes.STATUSES` (1, 2, 4 delivered; -2, 3, 6, 20, 22-25 failed).

Callback (https://smsc.ru/api/http/miscellaneous/callback/, set in the account's
settings to ``https://<hub>/sms/smsc``): SMSC POSTs a form. A delivery status has
``id``, ``phone``, ``status`` (and ``ts``, ``err``), signed ``md5 =
md5("<id>:<phone>:<status>:<secret>")``; an incoming SMS has ``phone``, ``mes``, ``to``,
signed ``md5("<phone>:<mes>:<to>:<secret>")``. A wrong or missing signature is answered
403 and nothing is recorded. A status goes to ``hub.campaigns.delivered``; a reply that
is only "STOP" / "СТОП" (any case, punctuation aside) withdraws the number's SMS consent
through ``hub.campaigns.opted_out(..., source="smsc:reply")``. Answered 200 once
recorded; 503 when the hub could not record it (SMSC may send it again).

Sources (read 2025-11, stored copies): https://smsc.ru/api/http/ ; the error page
http://s1.sm-s.ru/api/http/send/sms/sms_answer/ (SMSC white label); the status page
https://smscentre.com/api/http/status_messages/ and ``.../status_answer/`` (SMSC in
English); the official ``smsc_api.php`` (https://smsc.ru/api/code/libraries/http_smtp/php/)
and SMS::API::SMSC on metacpan (the form of ``id``); github.com/C0deWiser/laravel-smscenter-mailer
@ed7c516 ``src/SmsCenterService.php`` (the callback's md5 rules), ``lang/ru/status.php``.

Not verified: which secret SMSC signs callbacks with (the account password, or a key
set beside the callback URL: hence ``callback_secret``, the password when unset), the
callback's extra fields and whether SMSC retries a callback not answered 2xx; the JSON
types of ``cost``/``balance`` (read as strings or numbers); that the ``id`` in the
answer is the one sent; the ``balance.php`` answer (``{"balance": ...}``); how long
error 4 lasts; whether a message "ожидает отправки" (-1) or "передано оператору" (0)
can still end as "не найдено".
"""

from __future__ import annotations

import asyncio
import hashlib
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
    NOT_THERE,
    Accepted,
    DeliveryReport,
    Outgoing,
    Permanent,
    Transient,
    _NotThere,
)
from hub.campaigns.http import check_account, integer, open_session, post
from hub.hookspecs import hookimpl
from hub.logging import debug_enabled
from plugins.sms_smsc.codes import (
    AUTH_FAILED,
    DUPLICATE,
    IP_BLOCKED,
    NOT_FOUND,
    SEND_ERRORS,
    STATUSES,
)
from plugins.sms_smsc.config import SmscConfig

log = structlog.get_logger("plugins.sms_smsc")

__all__ = ["Smsc", "SmscConfig"]

CALLBACK = "/sms/smsc"
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
MAX_ID = 2_147_483_647  # SMSC's id: a 32-bit number from 1
STOP_WORDS = frozenset({"stop", "стоп"})
WAIT = timedelta(minutes=1)


class Smsc:
    """Campaign SMS through one SMSC.ru account."""

    Config = SmscConfig
    name = "smsc"
    channel = "sms"

    def __init__(self, config: SmscConfig, hub: Any = None) -> None:
        self.config = config
        self.hub = hub
        self.rate = config.rate
        self.concurrency = config.concurrency
        self._session: aiohttp.ClientSession | None = None

    # -- hooks ----------------------------------------------------------------------------

    @hookimpl
    def hub_campaign_gateways(self) -> list[Smsc]:
        return [self]

    @hookimpl
    async def hub_startup(self) -> None:
        if self._session is None:
            self._session = open_session(self.config.timeout)
        if not self.config.check_balance:
            return
        try:
            body = await check_account(
                self._call("balance.php", {}),
                gateway="SMSC",
                url=self.config.base_url,
                what="balance.php",
                refusal=_refusal,
                credentials={AUTH_FAILED},
                fix="check [plugins.sms_smsc] login and password, or apikey",
            )
        except BaseException:
            await self.hub_shutdown()
            raise
        log.info("smsc_ready", balance=body.get("balance"), sender=self.config.sender)

    @hookimpl
    async def hub_shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        return [web.post(CALLBACK, self.callback)]

    # -- the gateway ----------------------------------------------------------------------

    async def send(self, message: Outgoing) -> Accepted:
        phone = _digits(message.address)
        our_id = _our_id(message)
        form = {"phones": phone, "mes": message.text, "cost": "3"}
        if our_id is not None:
            form["id"] = str(our_id)
        sender = message.sender or self.config.sender
        if sender:
            form["sender"] = sender
        body = await self._call("send.php", form)
        code = integer(body.get("error_code"))
        if code is not None:
            if code == DUPLICATE:
                return await self._duplicate(our_id, phone)
            raise _send_failure(code)
        sms_id = integer(body.get("id"))
        if sms_id is None:
            sms_id = our_id
        if sms_id is None:
            raise Permanent("SMSC accepted the message without an id")
        if debug_enabled("plugins.sms_smsc"):
            log.debug("smsc_sent", outbox_id=message.id, sms_id=sms_id, parts=body.get("cnt"))
        return Accepted(
            provider_id=f"{sms_id}:{phone}",
            parts=integer(body.get("cnt")),
            cost=_decimal(body.get("cost")),
        )

    async def find(self, message: Outgoing) -> Accepted | _NotThere | None:
        our_id = _our_id(message)
        if our_id is None:
            return None  # sent without an id of ours: SMSC cannot be asked
        phone = _digits(message.address)
        status = await self._status_of(our_id, phone)
        if status is None:
            return None
        if status == NOT_FOUND:
            return NOT_THERE
        return Accepted(provider_id=f"{our_id}:{phone}")

    async def status(self, provider_ids: Sequence[str]) -> list[DeliveryReport]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(provider_id: str) -> DeliveryReport | None:
            sms_id, _, phone = provider_id.partition(":")
            if integer(sms_id) is None or not phone:
                return None
            async with gate:
                try:
                    body = await self._query(int(sms_id), phone)
                except Transient as error:
                    log.warning("smsc_status_failed", provider_id=provider_id, error=str(error))
                    return None
            if integer(body.get("error_code")) is not None:
                return None
            at = integer(body.get("last_timestamp"))
            return _report(provider_id, integer(body.get("status")), integer(body.get("err")), at)

        found = await asyncio.gather(*(one(provider_id) for provider_id in provider_ids))
        return [report for report in found if report is not None]

    # -- the callback ---------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        form = {key: value for key, value in (await request.post()).items()
                if isinstance(value, str)}  # fmt: skip
        secret = self.config.signing_secret()
        if "mes" in form:
            signed = [form.get("phone", ""), form["mes"], form.get("to", "")]
        else:
            signed = [form.get("id", ""), form.get("phone", ""), form.get("status", "")]
        if secret is None or not _signed(signed, secret, form.get("md5", "")):
            log.warning("smsc_callback_refused", reason="bad md5")
            return web.Response(status=403, text="bad md5")
        try:
            if "mes" in form:
                await self._reply(form)
            else:
                await self._delivery(form)
        except Exception:
            log.exception("smsc_callback_not_stored")
            return web.Response(status=503, text="not stored, retry")
        return web.Response(text="OK")

    async def _delivery(self, form: dict[str, str]) -> None:
        phone = re.sub(r"\D", "", form.get("phone", ""))
        provider_id = f"{form.get('id', '')}:{phone}"
        report = _report(
            provider_id,
            integer(form.get("status")),
            integer(form.get("err")),
            integer(form.get("ts")),
        )
        log.info("smsc_callback", provider_id=provider_id, status=form.get("status"))
        if report is not None:
            await self.hub.campaigns.delivered(self.name, [report])

    async def _reply(self, form: dict[str, str]) -> None:
        digits = re.sub(r"\D", "", form.get("phone", ""))
        if not digits or not is_stop(form["mes"]):
            log.info("smsc_reply", stop=False)
            return
        address = f"+{digits}"
        withdrawn = await self.hub.campaigns.opted_out("sms", address, source="smsc:reply")
        log.info("smsc_reply", stop=True, contacts=withdrawn)

    # -- helpers --------------------------------------------------------------------------

    async def _duplicate(self, our_id: int | None, phone: str) -> Accepted:
        """Error 9: the same request came within a minute, so an earlier try got there."""
        words = SEND_ERRORS[DUPLICATE]
        if our_id is None:
            # Without our id it cannot be looked up; sending again could send it twice.
            raise Permanent(f"{words}: возможно, уже отправлено", code=str(DUPLICATE))
        status = await self._status_of(our_id, phone)
        if status is not None and status != NOT_FOUND:
            return Accepted(provider_id=f"{our_id}:{phone}")
        raise Transient(f"SMSC {DUPLICATE}: {words}", after=WAIT)

    async def _status_of(self, sms_id: int, phone: str) -> int | None:
        """The message's status; None when SMSC answered with an error instead."""
        body = await self._query(sms_id, phone)
        code = integer(body.get("error_code"))
        if code == DUPLICATE:
            raise Transient("SMSC 9: слишком много запросов статуса", after=WAIT)
        if code is not None:
            return None
        return integer(body.get("status"))

    async def _query(self, sms_id: int, phone: str) -> dict[str, Any]:
        return await self._call("status.php", {"id": str(sms_id), "phone": phone})

    async def _call(self, script: str, form: dict[str, str]) -> dict[str, Any]:
        params = {**self.config.auth(), "fmt": "3", "charset": "utf-8", **form}
        return await post(self._session, f"{self.config.base_url}/sys/{script}", params, script)


def _refusal(body: dict[str, Any]) -> tuple[int | None, str] | None:
    """What an answer with an ``error_code`` says: the code and its words."""
    code = integer(body.get("error_code"))
    if code is None:
        return None
    return code, SEND_ERRORS.get(code, str(body.get("error", ""))[:200])


def is_stop(text: str) -> bool:
    """A reply that says only STOP / СТОП, in any case, with any punctuation around it."""
    return re.sub(r"[\W_]+", " ", text).strip().casefold() in STOP_WORDS


def _digits(address: str) -> str:
    """An E.164 number as SMSC takes it: digits only."""
    address = address.strip()
    if not E164.match(address):
        raise Permanent(f"{address!r} is not a phone number in E.164 (+79161234567)")
    return address[1:]


def _our_id(message: Outgoing) -> int | None:
    return message.id if 1 <= message.id <= MAX_ID else None


def _send_failure(code: int) -> Transient | Permanent:
    words = SEND_ERRORS.get(code, f"неизвестный код ошибки {code}")
    if code == IP_BLOCKED:
        return Transient(f"SMSC {code}: {words}", after=WAIT)
    if code == AUTH_FAILED:
        log.error("smsc_credentials_refused", error_code=code)
    return Permanent(words, code=str(code))


def _signed(fields: list[str], secret: str, given: str) -> bool:
    expected = hashlib.md5(":".join([*fields, secret]).encode()).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


def _report(
    provider_id: str, status: int | None, err: int | None, at: int | None
) -> DeliveryReport | None:
    if status is None or status not in STATUSES:
        return None  # not found, or a status of no known meaning: leave it as it is
    state, words = STATUSES[status]
    when = datetime.fromtimestamp(at, UTC) if at else None
    if state == "failed":
        error = f"{words} (код ошибки {err})" if err else words
        return DeliveryReport(provider_id, "failed", error=error, at=when)
    return DeliveryReport(provider_id, state, at=when if state == "delivered" else None)


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
