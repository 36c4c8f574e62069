"""Web-form channel: ``POST /forms/{form_id}`` from a site's HTML form or its server.

The submission is checked (origin, rate, size, signature, encoding, required
fields), stored in the intake, and only then answered: ``202`` with the lead id
to an API client, ``303`` to the thank-you page for a browser. A refusal is a
page in Russian naming the form's own fields for a browser (templates/), and
JSON with machine-readable codes beside the same sentences for an API client.
A form with ``auth = "hmac"`` takes only requests signed as :mod:`hub.signing`
says, each of them once.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import BadHttpMessage
from jinja2 import Environment, FileSystemLoader, select_autoescape
from yarl import URL

from hub.context import Hub
from hub.domain.lead import Lead
from hub.hookspecs import hookimpl
from hub.intake import IntakeClosed, UnstorableEvent, claim_once, release_claim
from hub.logging import debug_enabled
from hub.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureRefused, verify_request
from plugins.webforms.config import Form, WebFormsConfig
from plugins.webforms.mapping import FieldError, map_fields
from plugins.webforms.parsing import BadSubmission, keepable, parse_body, shown_text, storable
from plugins.webforms.ratelimit import RateLimiter

CHANNEL = "webforms"
TOKEN_HEADER = "X-Hub-Token"
ALLOWED_HEADERS = (
    f"Content-Type, Idempotency-Key, {SIGNATURE_HEADER}, {TIMESTAMP_HEADER}, {TOKEN_HEADER}"
)

# Content codings aiohttp decodes before the handler reads the body.
CODINGS = {"", "identity", "gzip", "deflate"}

log = structlog.get_logger("plugins.webforms")
templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
say = templates.get_template("messages.txt").module  # refusal(), field_error()


class WebForms:
    """Lead capture from website forms."""

    Config = WebFormsConfig

    def __init__(self, config: WebFormsConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.limiters = {
            form_id: RateLimiter(form.rate_limit, form.rate_window.total_seconds())
            for form_id, form in config.forms.items()
        }

    # -- hooks ----------------------------------------------------------------------------

    @hookimpl
    def hub_routes(self) -> list[web.RouteDef]:
        return [
            web.post("/forms/{form_id}", self.submit),
            web.options("/forms/{form_id}", self.preflight),
        ]

    @hookimpl
    def hub_parse_lead(self, channel: str, payload: dict[str, Any]) -> Lead | None:
        if channel != CHANNEL:
            return None
        form_id = payload["form"]
        form = self.config.forms.get(form_id)
        label = (form.name if form and form.name else None) or form_id
        return Lead(
            channel=CHANNEL,
            activity_kind="form",
            summary=f"Web form «{label}»",
            submission=payload.get("submission", {}),
            **payload["lead"],
        )

    # -- HTTP -----------------------------------------------------------------------------

    async def preflight(self, request: web.Request) -> web.Response:
        form = self.config.forms.get(request.match_info["form_id"])
        origin = request.headers.get("Origin")
        if form is None or not origin or not _origin_allowed(form, origin):
            return web.Response(status=403, text="origin not allowed")
        return web.Response(
            status=204,
            headers={
                **_cors(origin),
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": "86400",
            },
        )

    async def submit(self, request: web.Request) -> web.StreamResponse:
        form_id = request.match_info["form_id"]
        form = self.config.forms.get(form_id)
        browser = _is_browser(request)
        origin = request.headers.get("Origin")
        cors = _cors(origin) if origin and form and _origin_allowed(form, origin) else {}
        # form_id goes on each log line by hand: binding context variables per request
        # costs more than the few lines this handler writes.
        if form is None:
            shown = shown_text(form_id)
            return self._error(
                request,
                404,
                "unknown_form",
                f"unknown form {shown!r}",
                browser=browser,
                params={"form_id": shown},
            )
        if origin and not cors and not _same_origin(request, origin):
            shown = shown_text(origin)
            return self._reject(
                request, form_id, 403, "origin", f"origin {shown} not allowed", origin=shown
            )
        client_ip = self._client_ip(request)
        wait = self.limiters[form_id].hit(client_ip)
        if wait:
            seconds = max(1, round(wait))
            response = self._reject(
                request,
                form_id,
                429,
                "rate_limit",
                "too many submissions, try again later",
                retry_after=seconds,
            )
            response.headers["Retry-After"] = str(seconds)
            return response
        too_large = f"body over {form.max_body} bytes"
        if request.content_length is not None and request.content_length > form.max_body:
            return self._reject(request, form_id, 413, "too_large", too_large, limit=form.max_body)
        coding = request.headers.get("Content-Encoding", "").strip().lower()
        if coding not in CODINGS:
            shown = shown_text(coding)
            return self._reject(
                request,
                form_id,
                415,
                "unreadable",
                f"unsupported Content-Encoding {shown!r}: send gzip, deflate or none",
                code="content_coding",
                coding=shown,
            )
        compressed = coding not in ("", "identity")
        try:
            body = await _read_bounded(request, form.max_body, compressed=compressed)
            # aiohttp notices a broken deflate stream, but a gzip one cut short only when
            # nothing of it decodes
            broken = compressed and body == b"" and request.content.total_raw_bytes > 0
        except (web.RequestPayloadError, BadHttpMessage):
            body, broken = b"", True
            # Nothing more of this body can be read: close the connection after answering,
            # rather than let aiohttp drain it for keep-alive and log the decoder's error.
            request.content.feed_eof()
        if broken:
            how = f"as Content-Encoding {coding}" if compressed else "in full"
            response = self._reject(
                request,
                form_id,
                400,
                "unreadable",
                f"body cannot be read {how}",
                code="compressed" if compressed else "unreadable",
            )
            response.force_close()
            return response
        if body is None:
            return self._reject(request, form_id, 413, "too_large", too_large, limit=form.max_body)
        claim = None  # the signature this request claimed, given back if it is not stored
        if form.auth == "hmac":
            claim, refusal = await self._claim_signature(request, form_id, form, body, cors)
            if refusal is not None:
                return refusal
        elif not _authorized(form, request):
            return self._reject(request, form_id, 401, "auth", "bad or missing token")
        try:
            mime = parse_mimetype(request.headers.get("Content-Type", ""))
            fields, files = parse_body(request.content_type, dict(mime.parameters), body)
        except BadSubmission as error:
            return self._reject(
                request,
                form_id,
                error.status,
                "unreadable",
                str(error),
                code=error.code,
                **error.params,
            )
        response = await self._accept(
            request, form_id, form, fields, files, browser, cors, client_ip
        )
        if claim is not None and response.status == 503:
            # Nothing was stored and the sender is told to retry: its retry of the same
            # bytes must not look like a replay (see hub/intake/nonces.py).
            await release_claim(self.hub.intake, CHANNEL, claim)
        return response

    async def _claim_signature(
        self, request: web.Request, form_id: str, form: Form, body: bytes, cors: dict[str, str]
    ) -> tuple[str | None, web.Response | None]:
        """Check a signed request's signature and time, then claim the signature once.

        Returns the claimed signature, or the answer refusing the request: 401 for
        a missing, wrong, old or replayed signature, 503 when the store cannot say
        whether the signature was seen.
        """
        assert form.secret is not None  # the config refuses auth = "hmac" without one
        try:
            signed = verify_request(request, form.secret.get_secret_value(), body)
            if not await claim_once(self.hub.intake, CHANNEL, signed.signature, signed.valid_for):
                raise SignatureRefused(
                    "signature_replayed",
                    "this signed request was received before: sign every attempt anew",
                )
        except SignatureRefused as refused:
            reason = "replay" if refused.code == "signature_replayed" else "auth"
            return None, self._reject(request, form_id, 401, reason, refused.detail, refused.code)
        except Exception:
            log.exception("webform_signature_check_failed", form_id=form_id)
            return None, self._error(
                request,
                503,
                "unavailable",
                "cannot check the signature now, retry shortly",
                browser=_is_browser(request),
                retry_after=5,
                cors=cors,
                form=form,
            )
        return signed.signature, None

    async def _accept(
        self,
        request: web.Request,
        form_id: str,
        form: Form,
        fields: dict[str, list[str]],
        files: list[Any],
        browser: bool,
        cors: dict[str, str],
        client_ip: str,
    ) -> web.StreamResponse:
        fields, unstorable = keepable(fields)  # without NUL; unstorable ones are left out
        spam = bool(form.honeypot and any(v.strip() for v in fields.get(form.honeypot, [])))
        query = {k: shown_text(v) for k, v in request.query.items()}
        lead, errors = map_fields(
            form, fields, query, self.hub.settings.hub.default_region, unstorable
        )
        if errors and not spam:
            self.hub.metrics.rejected.labels(CHANNEL, "invalid").inc()
            return self._error(
                request,
                422,
                "invalid",
                "some fields need fixing",
                fields=errors,
                browser=browser,
                cors=cors,
                form=form,
            )
        submission = {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
        if files and not spam:
            try:
                for item in files:
                    item["sha256"] = await self.hub.attachments.save(item.pop("content"))
            except OSError:
                log.exception("webform_attachment_failed", form_id=form_id)
                return self._error(
                    request,
                    503,
                    "attachment",
                    "cannot store the attached file now, retry",
                    browser=browser,
                    retry_after=5,
                    cors=cors,
                    form=form,
                )
            submission["_files"] = files
        elif files:
            submission["_files"] = [{k: v for k, v in f.items() if k != "content"} for f in files]
        origin = request.headers.get("Origin")
        payload = {
            "form": form_id,
            "lead": lead,
            "submission": submission,
            "meta": {  # headers are the client's bytes: kept as far as a store can keep them
                "ip": shown_text(client_ip),
                "user_agent": shown_text(request.headers.get("User-Agent", "")[:300]),
                "referer": shown_text(request.headers.get("Referer", "")[:500]),
                "origin": shown_text(origin) if origin else None,
            },
        }
        try:
            accepted = await self.hub.intake.accept(
                CHANNEL,
                payload,
                external_id=_external_id(request, form_id),
                fingerprint={"form": form_id, "lead": lead},
                status="spam" if spam else "pending",
            )
        except IntakeClosed:
            return self._error(
                request,
                503,
                "shutting_down",
                "shutting down, retry shortly",
                browser=browser,
                retry_after=5,
                cors=cors,
                form=form,
            )
        except UnstorableEvent as error:  # what the checks above did not foresee
            log.warning("webform_unstorable", form_id=form_id, error=str(error))
            self.hub.metrics.rejected.labels(CHANNEL, "unstorable").inc()
            return self._error(
                request, 422, "unstorable", str(error), browser=browser, cors=cors, form=form
            )
        except Exception:
            log.exception("webform_store_failed", form_id=form_id)
            return self._error(
                request,
                503,
                "unavailable",
                "cannot store the submission now, retry shortly",
                browser=browser,
                retry_after=5,
                cors=cors,
                form=form,
            )
        if debug_enabled("plugins.webforms"):
            log.debug(
                "webform_accepted",
                form_id=form_id,
                lead_id=accepted.id,
                duplicate=accepted.duplicate,
            )
        if browser:
            if form.thank_you_url:
                raise web.HTTPSeeOther(form.thank_you_url, headers=cors)
            page = templates.get_template("thanks.html").render(form=form)
            return web.Response(
                status=200, text=page, content_type="text/html", charset="utf-8", headers=cors
            )
        return web.Response(
            body=orjson.dumps({"lead_id": accepted.id, "duplicate": accepted.duplicate}),
            status=202,
            content_type="application/json",
            headers=cors,
        )

    def _client_ip(self, request: web.Request) -> str:
        if self.config.trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For")
            if forwarded:
                return forwarded.split(",")[0].strip()
        return request.remote or "unknown"

    def _reject(
        self,
        request: web.Request,
        form_id: str,
        status: int,
        reason: str,
        detail: str,
        code: str | None = None,
        **params: Any,
    ) -> web.Response:
        """Refuse before the fields are read; ``reason`` is the metric's label, ``code``
        (the reason unless given) chooses the sentence, ``params`` fill it."""
        self.hub.metrics.rejected.labels(CHANNEL, reason).inc()
        if status == 401:  # someone posts without the form's secret, or replays a request
            log.warning(
                "webform_rejected",
                form_id=form_id,
                status=status,
                reason=code or reason,
                detail=detail,
                ip=shown_text(self._client_ip(request)),
            )
        else:
            log.info("webform_rejected", form_id=form_id, status=status, reason=code or reason)
        form = self.config.forms.get(form_id)
        origin = request.headers.get("Origin")
        cors = _cors(origin) if origin and form and _origin_allowed(form, origin) else {}
        return self._error(
            request,
            status,
            code or reason,
            detail,
            browser=_is_browser(request),
            cors=cors,
            form=form,
            params=params,
        )

    @staticmethod
    def _error(
        request: web.Request,
        status: int,
        code: str,
        detail: str,
        *,
        browser: bool,
        fields: list[FieldError] | None = None,
        retry_after: int | None = None,
        cors: dict[str, str] | None = None,
        form: Form | None = None,
        params: dict[str, Any] | None = None,
    ) -> web.Response:
        """The answer to a refused submission.

        A browser gets a page in Russian (templates/error.html) that names the
        form's own fields and links back to the page the form is on; an API client
        gets JSON: ``error`` (for the developer), ``code``, ``message`` (the page's
        sentence) and ``fields`` (each with ``field`` as the form named it,
        ``lead_field``, ``code`` and ``message``).
        """
        headers = dict(cors or {})
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        message = str(say.refusal(code, params or {}))
        named = [
            {**item, "message": str(say.field_error(item["code"], item))} for item in fields or ()
        ]
        if browser:
            page = templates.get_template("error.html").render(
                status=status, message=message, fields=named, back=_back_link(request, form)
            )
            return web.Response(
                status=status,
                text=page,
                content_type="text/html",
                charset="utf-8",
                headers=headers,
            )
        body: dict[str, Any] = {"error": detail, "code": code, "message": message}
        if named:
            body["fields"] = named
        return web.Response(
            body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
        )


def _back_link(request: web.Request, form: Form | None) -> str | None:
    """Where "back to the form" leads: the page the form was posted from, if known.

    The Referer names that page unless the site's referrer policy cut it down to
    the site's address (browsers do for a cross-site post), when the form's
    ``page_url`` says better. Without either: the site's address, from Origin.
    """
    referer = _web_address(request.headers.get("Referer", ""))
    page = form.page_url if form else None
    if referer is not None and not (page and referer.path in ("", "/") and not referer.query):
        return str(referer)
    if page:
        return page
    origin = _web_address(request.headers.get("Origin", ""))
    return str(origin.origin()) + "/" if origin is not None else None


def _web_address(text: str) -> URL | None:
    """``text`` as an http(s) address with a host, or None (javascript:, data:, "null"...)."""
    if not text or len(text) > 2000 or not storable(text):
        return None
    try:
        url = URL(text.strip())
    except ValueError:
        return None
    return url if url.scheme in ("http", "https") and url.host else None


def _is_browser(request: web.Request) -> bool:
    """A plain HTML form post (not fetch/XHR, not a server): it wants a page back."""
    if request.content_type == "application/json":
        return False
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept


def _origin_allowed(form: Form, origin: str) -> bool:
    return "*" in form.allowed_origins or origin.rstrip("/") in {
        o.rstrip("/") for o in form.allowed_origins
    }


def _same_origin(request: web.Request, origin: str) -> bool:
    return origin.rstrip("/") == f"{request.scheme}://{request.host}"


def _cors(origin: str | None) -> dict[str, str]:
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _external_id(request: web.Request, form_id: str) -> str | None:
    key = request.headers.get("Idempotency-Key", "").strip()
    return f"{form_id}:{key}" if key else None


def _authorized(form: Form, request: web.Request) -> bool:
    """A form with ``auth = "token"`` (or none): the token in X-Hub-Token or as a bearer."""
    if form.auth == "none" or form.secret is None:
        return True
    secret = form.secret.get_secret_value().encode()
    given = request.headers.get(TOKEN_HEADER, "")
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret)


async def _read_bounded(request: web.Request, limit: int, *, compressed: bool) -> bytes | None:
    """Read at most ``limit`` bytes of body (decoded); None when the body is longer."""
    if not compressed and request.content_length is not None and request.content_length <= limit:
        return await request.read()  # aiohttp reads exactly Content-Length bytes
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
