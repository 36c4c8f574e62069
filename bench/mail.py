"""Inbound email benchmark: letters read, understood and filed per second, IMAP included.

    .venv/bin/python -m bench.mail [--letters 10000]

A dovecot of its own (as the tests start it, :mod:`tests.dovecot`) gets ``--letters``
letters by IMAP APPEND: inquiries from distinct senders, a fifth of them replies to an
earlier one, some with a signature phone, some in windows-1251 or KOI8-R. Then:

*Parse only* (the baseline, in this process): :func:`read_message` and
:func:`skip_reason` over every letter: the least filing can cost.

*End to end*: a started hub with the ``email_inbound`` plugin reading the mailbox from
the first letter: each fetched, stored (attachment store and intake, on disk), flagged,
then filed by the intake worker (matched, a contact and a deal, or a reply on its deal).
The clock runs from the start until every letter is filed. The filing worker files a
batch's letters together (one writer call for its replies, a few questions to the store
for the whole batch: :meth:`MailFiling.handle_batch`).

Goal (issue 11): over 200 letters/s end to end on SQLite. Printed: both rates and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from hub.store.models import InboxEvent
from plugins.email_inbound import EmailInbound
from plugins.email_inbound.message import read_message
from plugins.email_inbound.skipping import skip_reason
from tests.conftest import make_hub, make_settings
from tests.dovecot import PASSWORD, start

SALES = "sales@example.com"
NAMES = ["Пётр Волков", "Анна Белова", "Игорь Котов", "Марина Лебедева", "Олег Новиков"]


def letters(n: int) -> list[bytes]:
    out: list[bytes] = []
    ids: list[str] = []
    for i in range(n):
        message = EmailMessage()
        name = NAMES[i % len(NAMES)]
        message["From"] = f"{name} <client{i}@firm{i}.ru>"
        message["To"] = SALES
        message_id = make_msgid(idstring=str(i), domain=f"firm{i}.ru")
        message["Message-ID"] = message_id
        text = f"Здравствуйте! Нужно {i % 500 + 10} кв. м плитки, доставка в Самару.\n"
        if i % 5 == 4 and ids:
            message["Subject"] = "Re: Заявка"
            message["In-Reply-To"] = ids[i // 2]
            text = "Спасибо, а сроки?\n\n> " + text
        else:
            message["Subject"] = f"Заявка №{i}"
        if i % 3 == 0:
            text += (
                f"\n-- \n{name}\nтел. +7 912 {i // 10000:03d}-{i // 100 % 100:02d}-{i % 100:02d}\n"
            )
        charset = ("utf-8", "windows-1251", "koi8-r")[i % 3]
        message.set_content(text, charset=charset)
        ids.append(message_id)
        out.append(bytes(message))
    return out


def parse_only(raws: list[bytes]) -> float:
    started = time.perf_counter()
    for raw in raws:
        skip_reason(read_message(raw), own_addresses=set(), own_domains=set(), blocked=set())
    return len(raws) / (time.perf_counter() - started)


async def end_to_end(port: int, store_url: str, n: int) -> float:
    settings = make_settings(
        store_url,
        plugins={
            "email_inbound": {
                "mailboxes": {
                    "sales": {
                        "host": "127.0.0.1",
                        "port": port,
                        "security": "none",
                        "user": SALES,
                        "password": PASSWORD,
                        "since": "2000-01-01",
                    }
                },
                "leads_per_sender_per_hour": 1000,
            }
        },
        intake={"workers": 2, "batch_size": 200},
    )
    hub = make_hub(settings, extra={"email_inbound": EmailInbound})
    started = time.perf_counter()
    read_in: float | None = None
    await hub.start()
    try:
        while True:
            async with hub.store.read() as conn:
                done = (
                    await conn.execute(
                        select(func.count())
                        .select_from(InboxEvent)
                        .where(InboxEvent.channel == "email_inbound", InboxEvent.status == "done")
                    )
                ).scalar_one()
                stored = (
                    await conn.execute(
                        select(func.count())
                        .select_from(InboxEvent)
                        .where(InboxEvent.channel == "email_inbound")
                    )
                ).scalar_one()
            if stored >= n and read_in is None:
                read_in = time.perf_counter() - started
                print(
                    f"  read and stored (IMAP, attachments, intake): {n / read_in:8.0f} letters/s"
                )
            if done >= n:
                return n / (time.perf_counter() - started)
            await asyncio.sleep(0.05)
    finally:
        await hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=10_000)
    args = parser.parse_args()
    raws = letters(args.letters)
    folder = Path(tempfile.mkdtemp(prefix="hub-dovecot-bench-", dir="/tmp"))
    server, pid = start(folder)
    try:
        server.add_user(SALES)
        client = server.client(SALES)
        for raw in raws:
            client.append("INBOX", "", None, raw)
        client.logout()
        baseline = parse_only(raws)
        print(f"parse and classify only (baseline): {baseline:8.0f} letters/s")
        work = Path(tempfile.mkdtemp(prefix="hub-bench-email-"))
        rate = asyncio.run(
            end_to_end(server.port, f"sqlite+aiosqlite:///{work / 'hub.db'}", len(raws))
        )
        print(
            f"end to end on SQLite (IMAP, store, flag, file): {rate:8.0f} letters/s "
            f"(goal > 200); ratio to parsing alone {rate / baseline:.2f}"
        )
        shutil.rmtree(work, ignore_errors=True)
    finally:
        import os

        os.kill(pid, 15)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
