"""Kill the daemon with SIGKILL while it reads a mailbox, start it again: every letter is
filed once, none twice, and every one ends flagged on the server.

The mailbox is a real dovecot; the daemon is ``hub run`` on the example config with the
mailbox added. Killed at a random moment in the middle of 300 letters, some letter is
likely stored and not yet flagged or remembered: the restart fetches it again, the
intake knows its Message-ID, and it is flagged then.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.config import load_settings
from hub.store import Store
from hub.store.models import Deal, InboxEvent
from tests.dovecot import PASSWORD, MailServer, mail_server, mailroom
from tests.e2e.daemon import Daemon, free_port, write_config

pytestmark = pytest.mark.slow
__all__ = ["mail_server", "mailroom"]  # fixtures

SALES = "sales@example.com"
LETTERS = 300


def letter(i: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Клиент {i:03d} <client{i:03d}@firm{i:03d}.ru>"
    message["To"] = SALES
    message["Subject"] = f"Заявка №{i}"
    message["Message-ID"] = make_msgid(idstring=f"n{i}", domain=f"firm{i:03d}.ru")
    message.set_content(f"Здравствуйте! Нужно {i + 1} м² плитки.\n")
    return bytes(message)


def config_with_mailbox(folder: Path, store_url: str, port: int, mail: MailServer) -> Path:
    path = write_config(folder, store_url, port)
    path.write_text(
        path.read_text()
        + f"""
[plugins.email_inbound]
own_domains = ["example.com"]
leads_per_sender_per_hour = 1000

[plugins.email_inbound.mailboxes.sales]
host = "127.0.0.1"
port = {mail.port}
security = "none"
user = "{SALES}"
password = "{PASSWORD}"
poll_interval = "1s"
"""
    )
    return path


async def counts(store: Store) -> tuple[int, int]:
    async with store.read() as conn:
        stored = (
            await conn.execute(
                select(func.count())
                .select_from(InboxEvent)
                .where(InboxEvent.channel == "email_inbound")
            )
        ).scalar_one()
        deals = (await conn.execute(select(func.count()).select_from(Deal))).scalar_one()
    return stored, deals


async def test_a_killed_daemon_restarted_files_every_letter_once(
    tmp_path: Path, mailroom: MailServer
) -> None:
    client = mailroom.client(SALES)
    for i in range(LETTERS):
        client.append("INBOX", "", None, letter(i))
    client.logout()
    store_url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    port = free_port()
    config = config_with_mailbox(tmp_path, store_url, port, mailroom)
    store = Store(load_settings(config).store.url)
    daemon = Daemon(config, port)
    daemon.start()
    await daemon.ready()
    try:
        while (await counts(store))[0] < LETTERS // 3:
            await asyncio.sleep(0.02)
        daemon.kill()
        killed_at = await counts(store)
        assert killed_at[0] < LETTERS, "the kill came after everything was read"

        daemon.start()
        await daemon.ready()

        async def done() -> Any:
            found = await counts(store)
            return found if found == (LETTERS, LETTERS) else None

        deadline = asyncio.get_running_loop().time() + 60
        while (found := await done()) is None:
            assert asyncio.get_running_loop().time() < deadline, (await counts(store), daemon.log())
            await asyncio.sleep(0.2)
        assert found == (LETTERS, LETTERS)
        await asyncio.sleep(1.5)  # a poll more: nothing else arrives
        assert await counts(store) == (LETTERS, LETTERS)
        flags = mailroom.flags(SALES)
        assert len(flags) == LETTERS
        assert all("\\Seen" in line for line in flags)
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.terminate()
        await store.close()
