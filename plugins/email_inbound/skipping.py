"""What is not a request from a client, and why.

Checked in this order, because a letter is often several of them at once: a bounce
relayed through a mailing list is a bounce; an autoresponder's copy to a list is an
auto-reply. ``None``: a request, or a reply, to be filed.
"""

from __future__ import annotations

import re

from plugins.email_inbound.message import Mail

# Mailman's and majordomo's own addresses: ppp-request@, ppp-bounces@, owner-ppp@.
_LIST_SENDER = re.compile(r"(-request|-bounces|-owner|-admin)$|^owner-")
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|out of (the )?office|"
    r"абонент временно|автоответ|автоматический ответ|вне офиса|в отпуске)\b",
    re.I,
)


def skip_reason(
    mail: Mail, *, own_addresses: set[str], own_domains: set[str], blocked: set[str]
) -> str | None:
    headers = mail.headers
    if mail.bounce is not None or mail.report_type in ("delivery-status", "feedback-report"):
        return "bounce"
    auto = headers.get("auto-submitted", "").strip().lower()
    precedence = headers.get("precedence", "").strip().lower()
    if (auto and auto != "no") or "x-autoreply" in headers or "x-autorespond" in headers:
        return "auto_reply"
    if precedence == "auto_reply" or _AUTO_SUBJECT.match(mail.subject):
        return "auto_reply"
    local = (mail.sender or "").lower().split("@", 1)[0]
    if "list-id" in headers or precedence == "list" or _LIST_SENDER.search(local):
        return "mailing_list"
    if precedence in ("bulk", "junk"):
        return "bulk"
    sender = (mail.sender or "").lower()
    domain = mail.sender_domain or ""
    if sender in own_addresses or _within(domain, own_domains):
        return "own_address"
    if sender in blocked or _within(domain, blocked):
        return "blocked"
    return None


def _within(domain: str, domains: set[str]) -> bool:
    """``domain`` is one of ``domains`` or a subdomain of one (mx.example.com)."""
    return bool(domain) and any(domain == d or domain.endswith("." + d) for d in domains)
