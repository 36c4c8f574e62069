"""Whatever a client sends to a form, the answer is never a 5xx and the store stays whole.

Hypothesis builds requests from broken and hostile parts (charsets that are no text
encoding, bytes in no charset, NUL characters, lone surrogates, boundaries and part
headers in any bytes, compressed bodies that do not decompress, odd headers) and
posts them byte for byte. Afterwards the inbox must hold exactly the submissions
that were answered as accepted, each readable, and each processed by the worker.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any
from urllib.parse import quote_plus

from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hub.app import build_app
from hub.store.models import InboxEvent
from tests.conftest import make_hub, make_settings, wait_for
from tests.plugins.webforms.raw import Answer, post_raw

EXAMPLES = 120  # per store: a few seconds; about one in six is stored

# Text with what breaks things: NUL, lone surrogates, format characters, Cyrillic, emoji.
_CHARS = st.one_of(
    st.sampled_from(list("aZ09 Иванёй+%&=;\"'\\\x00\ud800\udcff\ufffd\u2028😀@.-")),
    st.characters(exclude_categories=()),  # surrogates included
)
_TEXT = st.text(_CHARS, max_size=14)
_NAMES = st.one_of(st.sampled_from(["fio", "tel", "email", "comment", "website", "name"]), _TEXT)
# Most requests are a valid lead with something odd beside it, so the store sees them too.
_LEAD = st.tuples(
    st.text("Иван Петрова-", min_size=1, max_size=12).map(lambda name: ("fio", name)),
    st.integers(0, 10**7 - 1).map(lambda n: ("tel", f"8912{n:07d}")),
)
_FIELDS = st.tuples(
    st.one_of(_LEAD, _LEAD, _LEAD, st.just(())),
    st.lists(st.tuples(_NAMES, _TEXT), max_size=4),
).map(lambda parts: [*parts[0], *parts[1]])
_GOOD_CHARSETS = st.sampled_from(["utf-8", "utf-8", "windows-1251", "koi8-r", "utf-7"])
_BAD_CHARSETS = st.one_of(
    st.sampled_from(
        [
            *("latin-1", "utf-16", "base64", "hex", "zlib", "rot13", "undefined"),
            *("punycode", "idna", "unicode_escape", "bogus", ""),
        ]
    ),
    # printable, so that it passes aiohttp's header parser and reaches ours
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from("ЖЯ"), max_size=10
    ).map(lambda t: t.replace(";", "").replace('"', "")),
)
_CHARSETS = st.one_of(*[_GOOD_CHARSETS] * 4, _BAD_CHARSETS)
_ERRORS = st.sampled_from(["replace", "replace", "strict", "surrogatepass", "surrogateescape"])
_HEADER_BYTES = st.one_of(
    _TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=20),
).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_USUAL_HEADERS = {
    b"User-Agent": st.sampled_from([b"Mozilla/5.0", "Яндекс.Браузер".encode()]),
    b"Referer": st.sampled_from([b"https://shop.example.ru/contacts", b"javascript:alert(1)"]),
    b"Origin": st.sampled_from([b"https://shop.example.ru", b"https://shop.example.ru/"]),
    b"Idempotency-Key": st.sampled_from([b"order-1", "заказ-2".encode()]),
}


def _encode(text: str, charset: str, errors: str) -> bytes:
    try:
        return text.encode(charset, errors)
    except (LookupError, UnicodeError, ValueError, TypeError):
        return text.encode("utf-8", "surrogatepass")


@st.composite
def _urlencoded(draw: st.DrawFn) -> tuple[str, bytes]:
    charset, errors = draw(_CHARSETS), draw(_ERRORS)
    pairs = draw(_FIELDS)
    if draw(st.integers(0, 3)):  # escaped as a browser would, in whatever charset
        parts = []
        for name, value in pairs:
            try:
                parts.append(
                    f"{quote_plus(name, encoding=charset, errors=errors)}="
                    f"{quote_plus(value, encoding=charset, errors=errors)}"
                )
            except (LookupError, UnicodeError, ValueError, TypeError):
                parts.append(f"{name}={value}")
        body = _encode("&".join(parts), "ascii", "surrogateescape")
    else:  # raw bytes in the body
        body = _encode("&".join(f"{n}={v}" for n, v in pairs), charset, errors)
    declared = draw(st.one_of(st.just(charset), st.just(charset), _CHARSETS))
    return f"application/x-www-form-urlencoded; charset={declared}", body


@st.composite
def _nearly_valid(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid lead and one odd field: in UTF-8, or in UTF-7 (where "+2AA-" is a lone
    surrogate), with NUL characters escaped or not."""
    name, value = draw(_NAMES), draw(_TEXT)
    lead = [*draw(_LEAD), (name, value)]
    if draw(st.booleans()):
        body = "&".join(
            f"{quote_plus(n, errors='replace')}={quote_plus(v, errors='replace')}" for n, v in lead
        )
        return "application/x-www-form-urlencoded", body.encode()
    escaped = "&".join(f"{n}={v}".replace("+", "%2B").replace(" ", "%20") for n, v in lead[:2])
    odd = _encode(f"{name}={value}", "utf-7", "strict").replace(b"&", b"%26")
    return "application/x-www-form-urlencoded; charset=utf-7", escaped.encode() + b"&" + odd


@st.composite
def _json(draw: st.DrawFn) -> tuple[str, bytes]:
    scalars = st.one_of(_TEXT, st.integers(-(2**80), 2**80), st.floats(), st.booleans(), st.none())
    values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(_TEXT, scalars))
    data = dict(draw(_FIELDS))
    data.update(draw(st.dictionaries(_NAMES, values, max_size=3)))
    # ensure_ascii: a lone surrogate goes out as its escape, which a JSON parser must refuse
    return "application/json", json.dumps(data, ensure_ascii=True).encode()


@st.composite
def _multipart(draw: st.DrawFn) -> tuple[str, bytes]:
    usual = st.sampled_from([b"XyZ", b"----WebKitFormBoundary7MA4"])
    boundary = draw(st.one_of(*[usual] * 4, _HEADER_BYTES))
    sent_boundary = draw(st.one_of(*[st.just(boundary)] * 4, _HEADER_BYTES))
    body = b""
    for name, value in draw(_FIELDS):
        charset = draw(st.one_of(st.none(), st.none(), _CHARSETS))
        headers = b'Content-Disposition: form-data; name="%s"' % _encode(
            name, "utf-8", "surrogateescape"
        )
        if draw(st.integers(0, 3)) == 0:
            headers += b'; filename="%s"' % draw(_HEADER_BYTES).replace(b'"', b"")
        if charset is not None:
            headers += b"\r\nContent-Type: text/plain; charset=" + _encode(
                charset, "utf-8", "surrogatepass"
            )
        content = _encode(value, charset or "utf-8", draw(_ERRORS))
        body += b"--" + sent_boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    if draw(st.integers(0, 3)):
        body += b"--" + sent_boundary + b"--\r\n"
    content_type = b"multipart/form-data; boundary=" + boundary
    return content_type.decode("utf-8", "surrogateescape"), body


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """Half of them in a clean envelope (only the content is odd), half in a hostile one."""
    hostile = draw(st.booleans())
    other = st.tuples(
        st.sampled_from(["text/plain", "", "application/xml"]), st.binary(max_size=60)
    )
    content_type, body = draw(
        st.one_of(*[_nearly_valid()] * 4, *[_urlencoded()] * 2, _json(), *[_multipart()] * 2, other)
    )
    headers = [(b"Content-Type", content_type.encode("utf-8", "surrogateescape"))]
    codings = [None, "gzip", "deflate"]
    if hostile:
        codings += ["gzip-broken", "deflate-broken", "other"]
    coding = draw(st.sampled_from(codings))
    if coding == "gzip":
        body = gzip.compress(body)
    elif coding == "deflate":
        body = zlib.compress(body)
    elif coding in ("gzip-broken", "deflate-broken"):
        packed = (gzip.compress if coding.startswith("gzip") else zlib.compress)(body)
        cut = draw(st.integers(0, len(packed)))
        body = packed[:cut] + draw(st.binary(max_size=8))
    if coding == "other":
        headers.append((b"Content-Encoding", draw(_HEADER_BYTES)))
    elif coding is not None:
        headers.append((b"Content-Encoding", coding.split("-")[0].encode()))
    if hostile and draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    for name, usual in _USUAL_HEADERS.items():
        choice = draw(st.integers(0, 3))
        if choice == 0 and hostile:
            headers.append((name, draw(_HEADER_BYTES)))
        elif choice == 1:
            headers.append((name, draw(usual)))
    accept = draw(st.sampled_from([None, None, b"text/html", b"application/json", b"*/*"]))
    if accept:
        headers.append((b"Accept", accept))
    path = b"/forms/contact"
    if hostile:
        path = draw(st.sampled_from([path, path, b"/forms/partner", b"/forms/%FF%00"]))
    return path, headers, body


def _stored_text(value: Any) -> bool:
    """No NUL and no lone surrogate anywhere in a stored payload."""
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return all(_stored_text(k) and _stored_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(_stored_text, value))
    return True


def test_malformed_posts_never_get_a_5xx_and_the_store_holds_what_was_accepted(store_url):
    hub = make_hub(make_settings(store_url))
    server = TestServer(build_app(hub))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start_server())
    accepted: set[int] = set()  # lead ids answered to API clients
    thanked = 0  # accepted submissions answered to browsers (no id on the page)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests())
    def post(request: tuple[bytes, list[tuple[bytes, bytes]], bytes]) -> None:
        nonlocal thanked
        answer: Answer = loop.run_until_complete(post_raw(server, *request))
        assert answer.status < 500, (answer.status, answer.body[:300], request)
        if answer.status == 202:
            accepted.add(json.loads(answer.body)["lead_id"])
        elif answer.status in (200, 303):
            thanked += 1

    async def inbox() -> list[Any]:
        async with hub.store.read() as conn:
            return list(
                await conn.execute(select(InboxEvent.id, InboxEvent.status, InboxEvent.payload))
            )

    async def processed() -> bool:
        return all(row.status != "pending" for row in await inbox())

    try:
        post()
        loop.run_until_complete(wait_for(processed, within=30))
        rows = loop.run_until_complete(inbox())
    finally:
        loop.run_until_complete(server.close())
        loop.close()
    stored = {row.id for row in rows}
    assert stored, "some submissions must get through, or the store was never put to the test"
    assert accepted <= stored
    assert len(stored) <= len(accepted) + thanked  # nothing refused was stored
    assert all(_stored_text(row.payload) for row in rows)
    assert {row.status for row in rows} <= {"done", "spam"}
