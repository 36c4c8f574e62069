"""A real IMAP server with the sales mailbox on it, for the channel's tests."""

from tests.dovecot import mail_server, mailroom

__all__ = ["mail_server", "mailroom"]
