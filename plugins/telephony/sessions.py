"""Who is signed in to ``/card``: session cookies every hub process can check.

A manager signs in with their API token once; the cookie they get back never holds the
token. It says which token signed in (by its name), until when, and a random id, sealed
with an HMAC-SHA256 keyed by *that token's secret*::

    v1.<token name, base64url>.<expires, unix milliseconds>.<random id>.<seal, base64url>

so any hub process with the same settings can check it, before and after a restart, with
nothing kept in memory or in the store (no sticky sessions behind a load balancer). A
token changed or removed in the settings ends its sessions, since their seals no longer
check; so does a change of the token's role, which the seal covers.

Signing out is remembered in the store (the intake's ``nonces``, namespace
:data:`SIGNED_OUT`, until the session would have expired), so a copied cookie stays
refused in every process and after a restart. That is the one question asked of the
store, once per cookie per process: a checked cookie is kept in memory
(:class:`Session`, with its open event streams) until it expires.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import structlog

from hub.deals import Actor
from hub.intake.nonces import claim_once, is_claimed

if TYPE_CHECKING:
    from hub.config import ApiToken
    from hub.context import PluginView

log = structlog.get_logger("plugins.telephony")

SIGNED_OUT = "card_signed_out"  # the nonces' namespace of signed-out sessions
VERSION = "v1"
MAX_COOKIE = 400  # a longer cookie is not one of ours
MAX_KEPT = 10_000  # checked sessions kept in memory; the oldest is forgotten beyond this

Stream = asyncio.Queue[str | None]  # what waits to be sent on one open /card/events


@dataclass(eq=False)
class Session:
    """A signed-in browser: whose token it was, and its open streams."""

    token_name: str
    role: str
    email: str | None
    user_id: int | None
    name: str
    extension: str | None
    zone: ZoneInfo  # the user's timezone (``[[users]] timezone``), else the hub's
    expires_ms: int  # the cookie's, as sealed
    sid: str  # the random id of the cookie: what signing out remembers
    seal: bytes  # what the cookie was sealed with: a changed token or role breaks it
    streams: set[Stream] = field(default_factory=set)

    @property
    def expires(self) -> float:
        """When the session ends, unix seconds."""
        return self.expires_ms / 1000

    @property
    def viewer(self) -> int | None:
        """Whose cards: a manager's id, None for head and admin (they see everything)."""
        return self.user_id if self.role == "manager" else None

    @property
    def actor(self) -> Actor:
        if self.user_id is not None and self.email:
            return Actor.user(self.user_id, self.email, self.role)
        return Actor.token(self.token_name, self.role, None)

    def wants(self, extension: str | None, owner_id: int | None) -> bool:
        """Whether a ring of ``extension`` for a client of ``owner_id`` is for this screen."""
        if self.user_id is None:
            return False
        if extension and self.extension == extension:
            return True
        # a head or admin sees every client: only their own extension's rings are theirs
        return self.role == "manager" and owner_id is not None and owner_id == self.user_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _seal(token: ApiToken, name: str, expires: int, sid: str) -> bytes:
    message = f"hub-card-session\n{name}\n{token.role}\n{expires}\n{sid}".encode()
    return hmac.new(token.token.get_secret_value().encode(), message, hashlib.sha256).digest()


class Sessions:
    """Issues, checks and ends the ``/card`` sessions of one hub process."""

    def __init__(self, hub: PluginView) -> None:
        self.hub = hub
        self.kept: dict[str, Session] = {}  # by cookie value, oldest first

    def issue(self, token: str, life: float) -> tuple[Session, str] | None:
        """A new session of ``life`` seconds for the API token ``token`` and its cookie;
        None for a token that signs nobody in."""
        given = token.strip()
        if not given:
            return None
        found = None
        for name, configured in self.hub.settings.api.tokens.items():
            # compare with every token, so the time taken does not tell which one matched
            if hmac.compare_digest(given.encode(), configured.token.get_secret_value().encode()):
                found = name
        if found is None:
            return None
        expires = int((time.time() + life) * 1000)
        sid = secrets.token_urlsafe(24)
        session = self._session(found, expires, sid)
        if session is None:
            return None
        cookie = f"{VERSION}.{_b64(found.encode())}.{expires}.{sid}.{_b64(session.seal)}"
        self._keep(cookie, session)
        return session, cookie

    async def check(self, cookie: str | None) -> Session | None:
        """The session ``cookie`` stands for, or None: forged, expired, of a changed token,
        or signed out."""
        if not cookie or len(cookie) > MAX_COOKIE:
            return None
        session = self.kept.get(cookie)
        if session is not None:
            if self.valid(session):
                return session
            self.forget(cookie)
            return None
        session = self._unseal(cookie)
        if session is None:
            return None
        try:
            if await is_claimed(self.hub.intake.store, SIGNED_OUT, session.sid):
                return None
        except Exception as error:  # the store cannot say: let nobody in on a guess
            log.warning("card_session_unchecked", error=repr(error))
            return None
        self._keep(cookie, session)
        return session

    def valid(self, session: Session) -> bool:
        """Not expired, and its token still configured as it was when it was sealed."""
        if session.expires <= time.time():
            return False
        token = self.hub.settings.api.tokens.get(session.token_name)
        if token is None:
            return False
        seal = _seal(token, session.token_name, session.expires_ms, session.sid)
        return hmac.compare_digest(seal, session.seal)

    async def end(self, cookie: str, session: Session) -> None:
        """Sign ``session`` out everywhere: remembered until it would have expired."""
        self.forget(cookie)
        left = session.expires - time.time()
        if left > 0:
            try:
                await claim_once(self.hub.intake, SIGNED_OUT, session.sid, left)
            except Exception as error:
                # this process forgets it; the browser drops the cookie; log the rest
                log.warning("card_sign_out_not_remembered", error=repr(error))

    def forget(self, cookie: str) -> None:
        session = self.kept.pop(cookie, None)
        if session is not None:
            for stream in list(session.streams):
                end_stream(stream)

    def watching(self) -> list[Session]:
        """Sessions with an open stream, still valid."""
        return [s for s in list(self.kept.values()) if s.streams and self.valid(s)]

    # -- inside --------------------------------------------------------------------------

    def _keep(self, cookie: str, session: Session) -> None:
        now = time.time()
        for old in [c for c, s in self.kept.items() if s.expires <= now]:
            self.forget(old)
        while len(self.kept) >= MAX_KEPT:
            self.forget(next(iter(self.kept)))  # dicts keep insertion order: the oldest
        self.kept[cookie] = session

    def _unseal(self, cookie: str) -> Session | None:
        parts = cookie.split(".")
        if len(parts) != 5 or parts[0] != VERSION:
            return None
        _, name_b64, expires_text, sid, seal_b64 = parts
        try:
            name = _unb64(name_b64).decode()
            expires = int(expires_text)
            seal = _unb64(seal_b64)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if expires <= time.time() * 1000:
            return None
        session = self._session(name, expires, sid)
        if session is None or not hmac.compare_digest(seal, session.seal):
            return None
        return session

    def _session(self, name: str, expires: int, sid: str) -> Session | None:
        """The session of the configured token ``name``, as its user is configured now."""
        configured = self.hub.settings.api.tokens.get(name)
        if configured is None:
            return None
        email = configured.user.lower() if configured.user else None
        user = next(
            (u for u in self.hub.settings.users if email and u.email.lower() == email), None
        )
        catalog = self.hub.catalog
        user_id = catalog.user_ids.get(email) if catalog is not None and email else None
        if user is None or not user.active:
            user_id = None  # not a configured user any more: deactivated in the store
        if configured.role == "manager" and user_id is None:
            return None  # a manager token is its user's or nothing
        return Session(
            token_name=name,
            role=configured.role,
            email=email,
            user_id=user_id,
            name=user.name if user is not None else name,
            extension=user.extension if user is not None else None,
            zone=ZoneInfo((user.timezone if user else None) or self.hub.settings.hub.timezone),
            expires_ms=expires,
            sid=sid,
            seal=_seal(configured, name, expires, sid),
        )


def offer(stream: Stream, message: str | None) -> None:
    if stream.full():  # a stalled browser: the newest ring matters most
        with contextlib.suppress(asyncio.QueueEmpty):
            stream.get_nowait()
    stream.put_nowait(message)


def end_stream(stream: Stream) -> None:
    offer(stream, None)
