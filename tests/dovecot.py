"""A real IMAP server for the tests: Debian's dovecot-imapd on a loopback port.

``make test`` installs it (the Makefile's ``mailserver``); without it the tests that need
it are skipped with the reason. Each test gets its own server, folder and users; mail is
delivered with IMAP APPEND (stdlib ``imaplib``), as another mail client would file it.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = "/usr/sbin/dovecot"
PASSWORD = "mailbox-secret"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/run
log_path = {d}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
default_internal_user = dovecot
default_login_user = dovenull
mail_uid = dovecot
mail_gid = dovecot
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MailServer:
    folder: Path
    port: int
    host: str = "127.0.0.1"

    def add_user(self, user: str, password: str = PASSWORD) -> None:
        with open(self.folder / "users", "a") as users:
            users.write(f"{user}:{{PLAIN}}{password}\n")

    def client(self, user: str, password: str = PASSWORD) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port)
        client.login(user, password)
        return client

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """File ``raw`` in ``user``'s ``folder`` as a mail system would (IMAP APPEND)."""
        client = self.client(user)
        try:
            if folder != "INBOX":
                client.create(folder)
            status, _ = client.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK", status
        finally:
            client.logout()

    def flags(self, user: str, folder: str = "INBOX") -> list[str]:
        """Each message's flags in ``folder``, by UID order."""
        client = self.client(user)
        try:
            client.select(folder)
            _status, data = client.uid("FETCH", "1:*", "(FLAGS)")
            return [line.decode() for line in data if line]
        finally:
            client.logout()

    def count(self, user: str, folder: str = "INBOX") -> int:
        client = self.client(user)
        try:
            status, data = client.select(folder)
            return int(data[0]) if status == "OK" else 0
        finally:
            client.logout()

    def recreate_inbox(self, user: str) -> None:
        """Delete the user's mail store: the server gives the folder a new UIDVALIDITY."""
        shutil.rmtree(self.folder / "mail" / user, ignore_errors=True)


def start(folder: Path, tls: tuple[Path, Path] | None = None) -> tuple[MailServer, int]:
    """Start dovecot in ``folder``; with ``tls`` (certificate, key) it offers STARTTLS."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run").mkdir(exist_ok=True)
    (folder / "mail").mkdir(exist_ok=True)
    os.chmod(folder, 0o755)
    (folder / "users").write_text("")
    port = _free_port()
    ssl = "ssl = no"
    if tls is not None:
        for source in tls:
            shutil.copy(source, folder / source.name)
        ssl = f"ssl = yes\nssl_cert = <{folder / tls[0].name}\nssl_key = <{folder / tls[1].name}"
    (folder / "dovecot.conf").write_text(CONFIG.format(d=folder, port=port, ssl=ssl))
    shutil.chown(folder / "mail", "dovecot", "dovecot")
    # dovecot forks and keeps what it was given as stdout open: never a pipe here.
    subprocess.run(
        [DOVECOT, "-c", str(folder / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    deadline = time.monotonic() + 10
    pidfile = folder / "run" / "master.pid"
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            if pidfile.exists() and pidfile.read_text().strip():
                break
        except OSError:
            pass
        time.sleep(0.05)
    else:
        raise RuntimeError(f"dovecot did not start on {port}: see {folder}/dovecot.log")
    pid = int(pidfile.read_text())
    return MailServer(folder, port), pid


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[MailServer]:
    """A running dovecot of this test's own; stopped after it."""
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot-imapd is not installed (make test installs it)")
    if os.geteuid() != 0:
        pytest.skip("dovecot's mail_uid needs the tests to run as root here")
    folder = Path(f"/tmp/hub-dovecot-{os.getpid()}-{_free_port()}")
    server, pid = start(folder)
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
        shutil.rmtree(folder, ignore_errors=True)


SALES = "sales@example.com"


@pytest.fixture
def mailroom(mail_server: MailServer) -> MailServer:
    """The server with the sales mailbox on it."""
    mail_server.add_user(SALES)
    return mail_server
