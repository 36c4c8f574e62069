"""A local Asterisk manager interface for tests: greets, answers Login, Ping and
CoreShowChannels, and replays scripted event blocks (the corpus's captures) to each
connection in turn, optionally dropping the connection after them.

It parses what it receives and what it sends with its own few lines, not the plugin's
parser, and tracks which channels exist (Newchannel adds, Hangup removes) as a PBX would,
so CoreShowChannels answers what the replayed events left alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

BANNER = "Asterisk Call Manager/5.0.1"


def fields_of(block: str) -> dict[str, str]:
    """The first value of each key of a block (enough for a test server)."""
    found: dict[str, str] = {}
    for line in block.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            found.setdefault(key.strip().lower(), value.strip())
    return found


def load_transcript(path: Path) -> tuple[str, list[str]]:
    """A corpus transcript as (banner, event blocks), without the captured Login response
    (this server answers Login itself, echoing the client's ActionID)."""
    text = path.read_bytes().decode("utf-8")
    banner, _, rest = text.partition("\r\n")
    blocks = [block for block in rest.split("\r\n\r\n") if block.strip()]
    if blocks and blocks[0].startswith("Response:"):
        blocks = blocks[1:]
    return banner, blocks


def blocks_of(text: str) -> list[str]:
    """Event blocks written in a test (LF lines, blank-line separated) in wire form."""
    return [
        "\r\n".join(line.rstrip("\n") for line in block.strip("\n").split("\n"))
        for block in text.split("\n\n")
        if block.strip()
    ]


@dataclass
class Script:
    """What one connection is shown after its Login."""

    blocks: list[str]
    drop: bool = False  # abort the connection after the blocks (a network failure)
    meanwhile: list[str] = field(default_factory=list)  # happen unseen once it is dropped


@dataclass
class AmiServer:
    username: str = "hub"
    secret: str = "ami-secret"
    banner: str = BANNER
    scripts: list[Script] = field(default_factory=list)
    alive: dict[str, dict[str, str]] = field(default_factory=dict)  # Uniqueid -> channel
    connections: int = 0
    logins: int = 0
    actions: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def then(
        self, blocks: list[str], *, drop: bool = False, meanwhile: list[str] | None = None
    ) -> AmiServer:
        """The next connection to log in is shown ``blocks`` (and dropped, if ``drop``;
        then the PBX goes on with ``meanwhile`` while nobody listens)."""
        self.scripts.append(Script(blocks, drop, meanwhile or []))
        return self

    async def start(self, port: int = 0) -> AmiServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def drop_connections(self) -> None:
        """Cut every open connection, as a network failure would."""
        for writer in self._writers:
            writer.transport.abort()

    async def stop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- a connection ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            writer.write(f"{self.banner}\r\n".encode())
            while True:
                action = await self._read_action(reader)
                if action is None:
                    return
                self.actions.append(action)
                if not await self._answer(action, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, action: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        """Answer one action; False when the connection is to end."""
        name = action.get("action", "").lower()
        action_id = action.get("actionid", "")
        if name == "login":
            self.logins += 1
            if (action.get("username"), action.get("secret")) != (self.username, self.secret):
                await self._send(
                    writer,
                    f"Response: Error\r\nActionID: {action_id}\r\nMessage: Authentication failed",
                )
                return False  # Asterisk closes the session after a failed Login
            await self._send(
                writer,
                f"Response: Success\r\nActionID: {action_id}\r\nMessage: Authentication accepted",
            )
            script = self.scripts.pop(0) if self.scripts else Script([])
            for block in script.blocks:
                self._track(block)
                writer.write(block.encode() + b"\r\n\r\n")
            await writer.drain()
            if script.drop:
                writer.transport.abort()
                for block in script.meanwhile:
                    self._track(block)
                return False
            return True
        if name == "ping":
            await self._send(writer, f"Response: Success\r\nActionID: {action_id}\r\nPing: Pong")
            return True
        if name == "coreshowchannels":
            await self._send(
                writer,
                f"Response: Success\r\nActionID: {action_id}\r\nEventList: start\r\n"
                "Message: Channels will follow",
            )
            for uniqueid, channel in self.alive.items():
                await self._send(
                    writer,
                    f"Event: CoreShowChannel\r\nActionID: {action_id}\r\n"
                    f"Channel: {channel.get('channel', '')}\r\nUniqueid: {uniqueid}\r\n"
                    f"Linkedid: {channel.get('linkedid', '')}",
                )
            await self._send(
                writer,
                f"Event: CoreShowChannelsComplete\r\nActionID: {action_id}\r\n"
                f"EventList: Complete\r\nListItems: {len(self.alive)}",
            )
            return True
        if name == "logoff":
            await self._send(writer, f"Response: Goodbye\r\nActionID: {action_id}")
            return False
        await self._send(
            writer, f"Response: Error\r\nActionID: {action_id}\r\nMessage: Invalid/unknown command"
        )
        return True

    @staticmethod
    async def _read_action(reader: asyncio.StreamReader) -> dict[str, str] | None:
        lines: list[str] = []
        while True:
            raw = await reader.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\r\n")
            if line:
                lines.append(line)
            elif lines:
                return fields_of("\n".join(lines))

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, block: str) -> None:
        writer.write(block.encode() + b"\r\n\r\n")
        await writer.drain()

    def _track(self, block: str) -> None:
        found = fields_of(block)
        event = found.get("event", "").lower()
        if event == "newchannel":
            self.alive[found.get("uniqueid", "")] = found
        elif event == "hangup":
            self.alive.pop(found.get("uniqueid", ""), None)
