"""Files that arrive with leads (a brief attached to a web form), kept on disk.

A file is stored under its SHA-256 in the attachments folder and synced to
disk before the lead that mentions it is accepted, so an accepted lead never
points at a missing file. The same file sent twice is stored once. A crash
between the file and the lead leaves at worst an unreferenced file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Attachments:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, sha256: str) -> Path | None:
        """Where a stored file is; None for a malformed or unknown id."""
        if not _SHA256.match(sha256):
            return None
        path = self.folder / sha256[:2] / sha256
        return path if path.exists() else None

    async def save(self, content: bytes) -> str:
        """Store ``content`` durably; returns its SHA-256."""
        digest = hashlib.sha256(content).hexdigest()
        await asyncio.to_thread(self._write, digest, content)
        return digest

    def _write(self, digest: str, content: bytes) -> None:
        target = self.folder / digest[:2] / digest
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(f".{os.getpid()}.part")
        with open(temporary, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
