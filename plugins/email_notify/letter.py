"""A rendered notification as an email: headers a mail system understands, text and HTML."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from hub.notify import Message
from plugins.email_notify.config import EmailNotifyConfig

# The default policy, with every part encoded to 7 bits (base64 or quoted-printable as is
# shorter): the message goes through a server without 8BITMIME unchanged.
POLICY = policy.default.clone(cte_type="7bit")
# The deal's page at the end of the text, in the words of the HTML templates' button.
LINK_LINE = "Открыть сделку: {link}"


def message_id(key: str, domain: str) -> str:
    """The same Message-ID on every attempt at one notification, so a receiving system that
    drops repeats (by Message-ID) drops a resend after a reply that never arrived."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def one_line(text: str) -> str:
    return " ".join(text.split())


def compose(
    message: Message, to: str, config: EmailNotifyConfig, now: datetime | None = None
) -> EmailMessage:
    letter = EmailMessage(policy=POLICY)
    letter["From"] = Address(display_name=config.sender_name, addr_spec=config.sender)
    letter["To"] = Address(addr_spec=to)
    if config.reply_to:
        letter["Reply-To"] = Address(addr_spec=config.reply_to)
    letter["Subject"] = one_line(message.subject)
    letter["Date"] = format_datetime(now or datetime.now(UTC))
    letter["Message-ID"] = message_id(message.key, config.sender_domain)
    # RFC 3834: sent by a program, so vacation and other autoresponders stay quiet;
    # Exchange/Outlook read their own header for the same.
    letter["Auto-Submitted"] = "auto-generated"
    letter["X-Auto-Response-Suppress"] = "OOF, AutoReply"

    text = message.text.rstrip()
    if message.link and message.link not in text:  # the HTML part links it as a button
        text = f"{text}\n\n{LINK_LINE.format(link=message.link)}".lstrip()
    letter.set_content(text + "\n")
    if message.html.strip():
        letter.add_alternative(message.html, subtype="html")
    return letter
