"""Running ``hub run`` as a real process for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, store_url: str, port: int) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('url = "sqlite+aiosqlite:///var/hub.db"', f'url = "{store_url}"')
    text = text.replace("port = 8080", f"port = {port}")
    text = text.replace("rate_limit = 20 ", "rate_limit = 1000000 ")
    path = folder / "config.toml"
    path.write_text(text)
    return path


class Daemon:
    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "HUB_CONFIG": str(self.config)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "run"],
            cwd=self.config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.config.parent / "hub.log", "ab"),  # noqa: SIM115
        )

    async def ready(self, timeout: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as session:
            while asyncio.get_running_loop().time() < deadline:
                assert self.proc is not None
                assert self.proc.poll() is None, self.log()
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"daemon not ready: {self.log()}")

    def log(self) -> str:
        return (self.config.parent / "hub.log").read_text()[-3000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)
