"""A real IMAP server with the sales mailbox on it, for the channel's tests."""

from __future__ import annotations

import pytest

from tests.dovecot import MailServer, mail_server

SALES = "sales@example.com"

__all__ = ["mail_server", "mailroom"]


@pytest.fixture
def mailroom(mail_server: MailServer) -> MailServer:
    mail_server.add_user(SALES)
    return mail_server
