"""Reading one IMAP folder, exactly once, through ``aioimaplib``.

New messages are taken in UID order, up to 50 at a time: fetched in one command without
marking them read (``BODY.PEEK[]``), each handed to ``keep`` (which returns only once the
message is stored durably by the intake; the intake commits them as one group), then
``after_storing`` done on the server for them in one command (flag ``\\Seen``, move them,
or leave them), then the last UID remembered. The folder's UIDVALIDITY and the last UID
done are kept in ``hub_state`` (:class:`Cursor`), so a restart goes on where it stopped.

Nothing is done twice or skipped, whatever stops it where:

- killed after storing and before flagging: the message is fetched again, the intake
  knows its key (the Message-ID, or a hash of the bytes when there is none) and stores
  nothing new, and it is flagged then;
- a dropped connection: the task raises, the plugin host starts it again with backoff,
  and it syncs from the remembered UID;
- a new UIDVALIDITY (the folder was recreated, the server migrated): every UID means
  another message now, so the folder is read again from the mailbox's ``since`` date
  and the intake's keys drop what was already stored;
- a first connection reads only mail received since ``since`` (default: that day).

New mail is waited for with IDLE where the server has it (re-issued every 25 minutes, as
RFC 2177 asks), otherwise by polling every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import aioimaplib
import structlog
from sqlalchemy import select

from hub.store import Store
from hub.store.models import HubState
from hub.store.ops import upsert
from plugins.email_inbound.config import MailboxConfig

log = structlog.get_logger("plugins.email_inbound")
state_t = HubState.__table__

IDLE_RENEW = 25 * 60  # seconds: servers drop an IDLE after 30 minutes (RFC 2177)
FETCH_BATCH = 50  # UIDs fetched per command
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_EXISTS = re.compile(rb"^\d+ EXISTS\b")

# keep(raw message, where it was) -> None, once it is stored durably
Keep = Callable[[bytes, "Seen"], Awaitable[None]]


class MailboxRefused(Exception):
    """The server refused the login or the folder: retrying will not help until fixed."""


@dataclass(frozen=True, slots=True)
class Seen:
    mailbox: str
    folder: str
    uidvalidity: int
    uid: int


@dataclass(slots=True)
class Position:
    uidvalidity: int
    last_uid: int
    since: date


class Cursor:
    """Where reading a folder stopped: a row of ``hub_state``."""

    def __init__(self, store: Store, mailbox: str, folder: str) -> None:
        self.store = store
        self.key = f"email_inbound:{mailbox}:{folder}"[:200]

    async def load(self) -> Position | None:
        async with self.store.read() as conn:
            row = (
                await conn.execute(select(state_t.c.value).where(state_t.c.key == self.key))
            ).first()
        if row is None:
            return None
        value = row.value
        return Position(value["uidvalidity"], value["last_uid"], date.fromisoformat(value["since"]))

    async def save(self, position: Position) -> None:
        row = {
            "key": self.key,
            "value": {
                "uidvalidity": position.uidvalidity,
                "last_uid": position.last_uid,
                "since": position.since.isoformat(),
            },
            "updated_at": datetime.now(UTC),
        }
        async with self.store.write() as conn:
            await upsert(conn, state_t, [row], key=["key"], update_columns=["value", "updated_at"])


class MailboxReader:
    def __init__(self, name: str, config: MailboxConfig, store: Store, keep: Keep) -> None:
        self.name = name
        self.config = config
        self.keep = keep
        self.cursor = Cursor(store, name, config.folder)
        self.state = "starting"
        # The server announced new mail in a reply to a command of the last sync (a letter
        # that came in during it): it says so once, so the reader syncs again, not IDLEs.
        self._arrived = False

    async def run(self) -> None:
        """Read until cancelled; raises when the connection fails (the host retries)."""
        client = await self._connect()
        try:
            idle = self.config.idle and client.has_capability("IDLE")
            self.state = "idle" if idle else "polling"
            while True:
                await self.sync(client)
                if self._arrived:
                    continue
                if idle:
                    await self._idle(client)
                else:
                    await asyncio.sleep(self.config.poll_interval.total_seconds())
                    await _ok(await client.noop(), "NOOP")
        finally:
            self.state = "disconnected"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), 5)

    async def sync(self, client: aioimaplib.IMAP4) -> int:
        """Store every message not done yet; how many were new to this folder's cursor."""
        selected = await client.select(_quote(self.config.folder))
        if selected.result != "OK":
            raise MailboxRefused(f"folder {self.config.folder!r}: {_text(selected)}")
        uidvalidity = _uidvalidity(selected)
        self._arrived = False  # what SELECT counted is what this sync reads
        position = await self.cursor.load()
        if position is None or position.uidvalidity != uidvalidity:
            since = position.since if position else (self.config.since or datetime.now(UTC).date())
            if position is not None:
                log.warning(
                    "mailbox_uidvalidity_changed",
                    mailbox=self.name,
                    was=position.uidvalidity,
                    now=uidvalidity,
                )
            position = Position(uidvalidity, 0, since)
            uids = await self._search(client, "SINCE", since.strftime("%d-%b-%Y"))
        else:
            uids = await self._search(client, "UID", f"{position.last_uid + 1}:*")
        new = sorted(uid for uid in uids if uid > position.last_uid)
        if not new and position.last_uid == 0:
            await self.cursor.save(position)  # remember the folder and its since date
        for start in range(0, len(new), FETCH_BATCH):
            batch = new[start : start + FETCH_BATCH]
            fetched = await self._fetch(client, batch)
            # Stored together (the intake commits them as one group), flagged together, and
            # only then remembered: a stop anywhere in between fetches them again.
            await asyncio.gather(
                *(
                    self.keep(raw, Seen(self.name, self.config.folder, uidvalidity, uid))
                    for uid, raw in fetched.items()
                )
            )
            if fetched:
                await self._after_storing(client, sorted(fetched))
            for uid in batch:
                if uid not in fetched:
                    log.warning("mailbox_message_vanished", mailbox=self.name, uid=uid)
            position.last_uid = batch[-1]
            await self.cursor.save(position)
        if new:
            log.info("mailbox_synced", mailbox=self.name, messages=len(new))
        return len(new)

    # -- IMAP -----------------------------------------------------------------------------

    async def _connect(self) -> aioimaplib.IMAP4:
        config = self.config
        timeout = config.timeout.total_seconds()
        context = self._tls() if config.security == "tls" else None
        if context is not None:
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                config.host, config.imap_port, timeout=timeout, ssl_context=context
            )
        else:
            client = aioimaplib.IMAP4(config.host, config.imap_port, timeout=timeout)
        _hear_arrivals(client, self._heard)
        await client.wait_hello_from_server()
        if config.security == "starttls":
            await _starttls(client, self._tls(), config.host, timeout)
        login = await client.login(config.user, config.password.get_secret_value())
        if login.result != "OK":
            raise MailboxRefused(f"login as {config.user!r} refused: {_text(login)}")
        self.state = "connected"
        log.info("mailbox_connected", mailbox=self.name, host=config.host, folder=config.folder)
        return client

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.config.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _search(self, client: aioimaplib.IMAP4, *criteria: str) -> list[int]:
        response = await client.uid_search(*criteria, charset=None)
        await _ok(response, "UID SEARCH")

        found: list[int] = []
        for line in response.lines:
            text = bytes(line)
            if text.startswith(b"SEARCH") or text[:1].isdigit():
                found += [int(n) for n in text.removeprefix(b"SEARCH").split() if n.isdigit()]
        return found

    async def _fetch(self, client: aioimaplib.IMAP4, uids: list[int]) -> dict[int, bytes]:
        """The messages of ``uids`` still in the folder, by UID, in one command."""
        wanted = ",".join(map(str, uids))
        response = await client.uid("fetch", wanted, "(UID BODY.PEEK[])")
        await _ok(response, "UID FETCH")

        found: dict[int, bytes] = {}
        lines = response.lines
        for index, line in enumerate(lines):
            # "n FETCH (UID u BODY[] {size}" then the literal; some servers name the UID after
            if not isinstance(line, bytes):  # a literal (bytearray) is read with its line
                continue
            if b"FETCH" not in line or index + 1 >= len(lines):
                continue
            literal = lines[index + 1]
            if not isinstance(literal, bytearray):
                continue
            match = _FETCH_UID.search(line)
            if match is None and index + 2 < len(lines):
                match = _FETCH_UID.search(bytes(lines[index + 2]))
            if match is not None:
                found[int(match.group(1))] = bytes(literal)
        return found

    def _heard(self) -> None:
        self._arrived = True

    async def _after_storing(self, client: aioimaplib.IMAP4, uids: list[int]) -> None:
        what = self.config.after_storing
        done = ",".join(map(str, uids))
        if what == "seen":
            await _ok(await client.uid("store", done, "+FLAGS.SILENT", r"(\Seen)"), "STORE")
        elif what == "move":
            target = _quote(self.config.move_to or "")
            if client.has_capability("MOVE"):
                await _ok(await client.uid("move", done, target), "MOVE")
            else:
                await _ok(await client.uid("copy", done, target), "COPY")
                deleted = await client.uid("store", done, "+FLAGS.SILENT", r"(\Deleted)")
                await _ok(deleted, "STORE")
                if client.has_capability("UIDPLUS"):
                    await _ok(await client.uid("expunge", done), "UID EXPUNGE")

    async def _idle(self, client: aioimaplib.IMAP4) -> None:
        """Wait until the server says the folder changed, or IDLE_RENEW passed."""
        waiting = await client.idle_start(timeout=IDLE_RENEW)
        try:
            while True:
                pushed = await client.wait_server_push(timeout=IDLE_RENEW)
                if pushed == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
                if any(b"EXISTS" in bytes(line) for line in _lines(pushed)):
                    break
        finally:
            client.idle_done()
            await asyncio.wait_for(waiting, self.config.timeout.total_seconds())


async def _starttls(
    client: aioimaplib.IMAP4, context: ssl.SSLContext, host: str, timeout: float
) -> None:
    """Upgrade the connection before login (RFC 3501 STARTTLS): aioimaplib sends the
    command, the event loop does the handshake on the same transport."""
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise MailboxRefused('the server does not offer STARTTLS: use security = "tls"')
    # aioimaplib knows the command but offers no method for it: sent as the library sends any
    command = aioimaplib.aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    response = await asyncio.wait_for(protocol.execute(command), timeout)
    await _ok(response, "STARTTLS")
    loop = asyncio.get_running_loop()
    transport = await loop.start_tls(protocol.transport, protocol, context, server_hostname=host)
    protocol.transport = transport
    await asyncio.wait_for(protocol.capability(), timeout)  # what the server offers now


async def _ok(response: Any, command: str) -> None:
    if response.result != "OK":
        raise ConnectionError(f"{command} failed: {_text(response)}")


def _uidvalidity(response: Any) -> int:
    for line in response.lines:
        found = _UIDVALIDITY.search(bytes(line))
        if found:
            return int(found.group(1))
    raise ConnectionError("the server gave no UIDVALIDITY for the folder")


def _hear_arrivals(client: aioimaplib.IMAP4, heard: Callable[[], None]) -> None:
    """Call ``heard`` on every ``* n EXISTS`` the server sends: new mail. aioimaplib drops
    one that comes with the reply to a command it runs asynchronously (UID SEARCH, FETCH,
    STORE), and the server never repeats it, so it is listened for where lines come in."""
    protocol = client.protocol
    untagged = protocol._untagged_response

    def listen(line: bytes) -> Any:
        if _EXISTS.match(line.removeprefix(b"* ")):
            heard()
        return untagged(line)

    protocol._untagged_response = listen


def _lines(pushed: Any) -> list[Any]:
    return pushed if isinstance(pushed, list) else getattr(pushed, "lines", [pushed])


def _text(response: Any) -> str:
    return b" ".join(bytes(line) for line in response.lines).decode("utf-8", "replace")[:300]


def _quote(folder: str) -> str:
    escaped = folder.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
