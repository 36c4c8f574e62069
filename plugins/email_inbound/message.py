"""Understanding a letter: who wrote, what is new in it, what came with it.

:func:`read_message` reads raw bytes with the standard ``email`` package and never
raises, whatever the bytes: real mail has unknown charsets, 8-bit headers without MIME,
broken encoded words, truncated parts. Headers are parsed with ``policy.compat32`` and
decoded by hand (``policy.default`` raises on some real headers, e.g. mixed KOI8-R and
windows-1251 encoded words), each chunk in its declared charset, or, when that is
unknown or wrong, in UTF-8, windows-1251 or KOI8-R, whichever reads as Russian
(:func:`decode_bytes`); every such guess is kept in ``defects``.

The text is the first ``text/plain`` part that is not an attachment, or the HTML part
turned into readable text (``html2text``). Quoted replies and the signature are cut
from it (:mod:`.signature`), so a reply's activity shows what the client wrote now.
Attachments over ``max_attachment`` (or past ``max_total``) are dropped and listed with
the reason. A delivery report (``multipart/report``) or a mail server's plain-text
bounce yields the addresses that failed and whether for good (5.x.x) or not (4.x.x).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import quopri
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

import html2text

from plugins.email_inbound.signature import Parts, find_company, find_phones, split_text

MiB = 1024 * 1024
_MSGID = re.compile(r"<([^<>\s]+)>")
_ADDRESS = re.compile(r"[A-Za-z0-9._%+\-=]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_SMTP_CODE = re.compile(r"\b([45])\d\d[ -]")
# How often each Russian letter is used (per mille): a right guess of a Cyrillic charset
# reads as frequent letters; KOI8-R taken for windows-1251 reads as rare ones ("феуф").
_RUSSIAN = dict(
    zip(
        "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъё",
        (
            110,
            85,
            80,
            73,
            67,
            63,
            55,
            47,
            45,
            44,
            35,
            32,
            30,
            28,
            26,
            20,
            19,
            17,
            17,
            16,
            16,
            14,
            12,
            10,
            10,
            9,
            7,
            6,
            5,
            4,
            3,
            3,
            1,
        ),
        strict=True,
    )
)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yandex.ru",
        "yandex.com",
        "ya.ru",
        "yandex.by",
        "yandex.kz",
        "yandex.ua",
        "mail.ru",
        "bk.ru",
        "list.ru",
        "inbox.ru",
        "internet.ru",
        "rambler.ru",
        "lenta.ru",
        "autorambler.ru",
        "myrambler.ru",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "yahoo.com",
        "ymail.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "zoho.com",
        "mail.com",
        "ukr.net",
        "tut.by",
        "qip.ru",
        "ngs.ru",
    }
)


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    content: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SkippedAttachment:
    filename: str
    size: int
    reason: str


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    address: str
    status: str | None  # "5.1.1"
    permanent: bool


@dataclass(frozen=True, slots=True)
class Bounce:
    recipients: tuple[FailedRecipient, ...]


@dataclass(frozen=True, slots=True)
class Mail:
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    sender: str | None  # the address, as written
    sender_name: str
    reply_to: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    text: str  # what is new in it: no quoted reply, no signature
    quoted: str
    signature: str
    attachments: tuple[Attachment, ...]
    skipped_attachments: tuple[SkippedAttachment, ...]
    headers: dict[str, str]  # lower-case names of the headers that say what kind of mail it is
    content_type: str
    report_type: str | None  # multipart/report's report-type: delivery-status, feedback-report
    bounce: Bounce | None
    signature_phones: tuple[str, ...]
    signature_company: str | None
    sender_domain_company: str | None
    content_hash: str
    defects: tuple[str, ...]

    @property
    def sender_domain(self) -> str | None:
        if not self.sender or "@" not in self.sender:
            return None
        return self.sender.rsplit("@", 1)[1].lower()


# Headers kept on Mail.headers: what the skipping rules read.
KEPT_HEADERS = (
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "x-autoresponse",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "list-post",
    "return-path",
    "x-failed-recipients",
    "x-ms-exchange-inbox-rules-loop",
    "x-auto-response-suppress",
    "feedback-type",
)


def read_message(raw: bytes, *, max_attachment: int = 10 * MiB, max_total: int = 25 * MiB) -> Mail:
    """The letter in ``raw``; never raises."""
    defects: list[str] = []
    try:
        message = message_from_bytes(raw, policy=policy.compat32)
    except Exception as error:  # the parser itself gave up: keep what can be said
        message = Message()
        defects.append(f"unparseable: {type(error).__name__}")
    try:
        return _read(message, raw, defects, max_attachment, max_total)
    except Exception as error:  # a part no rule foresaw: the letter is still kept
        defects.append(f"unreadable: {type(error).__name__}: {error}"[:200])
        return _empty(raw, defects)


def _read(
    message: Message, raw: bytes, defects: list[str], max_attachment: int, max_total: int
) -> Mail:
    header = _HeaderReader(message, defects)
    senders = _addresses(header.text("from"))
    sender, sender_name = senders[0] if senders else (None, "")
    reply_to = _addresses(header.text("reply-to"))
    body = _Body(max_attachment, max_total, defects)
    body.walk(message)
    text = body.text or ""
    parts = split_text(text)
    tail = parts.signature or "\n".join(parts.text.splitlines()[-8:])
    content_type = (message.get_content_type() or "text/plain").lower()
    report_type = (
        (message.get_param("report-type") or None) if content_type == "multipart/report" else None
    )
    kept = {name: header.text(name) for name in KEPT_HEADERS if message.get(name) is not None}
    subject = " ".join(header.text("subject").split())
    mail_sender = sender.strip() if sender else None
    return Mail(
        message_id=_first_id(header.raw("message-id")),
        in_reply_to=tuple(_MSGID.findall(header.raw("in-reply-to"))),
        references=tuple(_MSGID.findall(header.raw("references"))),
        sender=mail_sender,
        sender_name=sender_name,
        reply_to=reply_to[0][0] if reply_to else None,
        to=tuple(a for a, _ in _addresses(header.text("to"))),
        cc=tuple(a for a, _ in _addresses(header.text("cc"))),
        subject=subject,
        date=_date(header.raw("date"), defects),
        text=parts.text,
        quoted=parts.quoted,
        signature=parts.signature,
        attachments=tuple(body.attachments),
        skipped_attachments=tuple(body.skipped),
        headers=kept,
        content_type=content_type,
        report_type=str(report_type).lower() if report_type else None,
        bounce=_bounce(message, content_type, mail_sender, sender_name, subject, text, defects),
        signature_phones=tuple(find_phones(tail)),
        signature_company=find_company(tail),
        sender_domain_company=_domain_company(mail_sender),
        content_hash=content_hash(raw),
        defects=tuple(defects),
    )


def content_hash(raw: bytes) -> str:
    """The same letter's hash whether it arrived with CRLF or LF line ends."""
    normalized = b"\n".join(line.rstrip() for line in raw.replace(b"\r\n", b"\n").split(b"\n"))
    return hashlib.sha256(normalized.strip()).hexdigest()


def decode_bytes(data: bytes, charset: str | None, defects: list[str] | None = None) -> str:
    """``data`` as text: in ``charset`` when it is right, else the best Russian guess."""
    if charset:
        name = charset.strip().strip('"').lower()
        name = {"unknown-8bit": "", "x-unknown": "", "ansi_x3.4-1968": "ascii"}.get(name, name)
        if name:
            try:
                return data.decode(name)
            except LookupError:
                if defects is not None:
                    defects.append(f"unknown charset {charset!r}")
            except UnicodeDecodeError:
                if defects is not None:
                    defects.append(f"not {charset!r} as labelled")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    guesses = [data.decode(name, "replace") for name in ("cp1251", "koi8-r")]
    return max(guesses, key=lambda text: sum(_RUSSIAN.get(ch, 0) for ch in text.lower()))


def _decode_words(value: str, defects: list[str]) -> str:
    """RFC 2047 encoded words decoded one by one, in their charsets (or the best guess),
    wherever they stand; the blanks between two adjacent words dropped."""

    def word(found: re.Match[str]) -> str:
        charset, encoding, data = found.group(1).split("*", 1)[0], found.group(2), found.group(3)
        try:
            if encoding in "bB":
                raw = base64.b64decode(data + "=" * (-len(data) % 4))
            else:
                raw = quopri.decodestring(
                    data.replace("_", " ").encode("ascii", "replace"), header=True
                )
        except (binascii.Error, ValueError):
            defects.append("broken encoded word")
            return found.group(0)
        return decode_bytes(raw, charset, defects)

    joined = re.sub(r"(\?=)\s+(=\?)", r"\1\2", value)
    return _ENCODED_WORD.sub(word, joined)


class _HeaderReader:
    def __init__(self, message: Message, defects: list[str]) -> None:
        self.message = message
        self.defects = defects

    def raw(self, name: str) -> str:
        value = self.message.get(name)
        if value is None:
            return ""
        return value if isinstance(value, str) else str(value)

    def text(self, name: str) -> str:
        """The header's value with its encoded words decoded."""
        value = self.message.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):  # compat32's Header: raw 8-bit bytes, charset unknown
            try:
                value = self._join(decode_header(value))
            except Exception:
                value = str(value)
        # 8-bit bytes in a raw header come through as surrogates: decode them as a charset.
        if any("\udc80" <= ch <= "\udcff" for ch in value):
            value = decode_bytes(value.encode("utf-8", "surrogateescape"), None, self.defects)
        return _decode_words(value, self.defects).replace("\r", "").replace("\n", " ").strip()

    def _join(self, chunks: list[tuple[Any, str | None]]) -> str:
        out = []
        for chunk, charset in chunks:
            if isinstance(chunk, str):
                out.append(chunk)
            else:
                out.append(decode_bytes(chunk, charset, self.defects))
        return "".join(out).replace("\r", "").replace("\n", " ").strip()


class _Body:
    def __init__(self, max_attachment: int, max_total: int, defects: list[str]) -> None:
        self.max_attachment = max_attachment
        self.max_total = max_total
        self.defects = defects
        self.plain: str | None = None
        self.html: str | None = None
        self.attachments: list[Attachment] = []
        self.skipped: list[SkippedAttachment] = []
        self.total = 0

    @property
    def text(self) -> str | None:
        if self.plain is not None and self.plain.strip():
            return self.plain
        if self.html is not None:
            return html_to_text(self.html)
        return self.plain

    def walk(self, message: Message) -> None:
        for part in message.walk():
            if part.is_multipart():
                continue
            if part.get_content_maintype() == "message":  # a delivery-status block, a digest
                continue
            kind = part.get_content_type().lower()
            filename = _filename(part, self.defects)
            disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
            is_body = disposition != "attachment" and kind in ("text/plain", "text/html")
            if is_body and not (filename and disposition == "attachment"):
                payload = _payload(part, self.defects)
                text = decode_bytes(payload, part.get_content_charset(), self.defects)
                if kind == "text/plain" and self.plain is None:
                    self.plain = text
                    continue
                if kind == "text/html" and self.html is None:
                    self.html = text
                    continue
                if not filename:
                    continue
            if filename or disposition in ("attachment", "inline"):
                self._attach(part, filename or "attachment", kind)

    def _attach(self, part: Message, filename: str, kind: str) -> None:
        content = _payload(part, self.defects)
        size = len(content)
        if size > self.max_attachment:
            self.skipped.append(SkippedAttachment(filename, size, "too_large"))
        elif self.total + size > self.max_total:
            self.skipped.append(SkippedAttachment(filename, size, "message_total_exceeded"))
        else:
            self.total += size
            self.attachments.append(Attachment(filename, kind, size, content))


def html_to_text(html: str) -> str:
    """Readable text of an HTML letter: paragraphs kept, links as their text and address."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    try:
        text = converter.handle(html)
    except Exception:
        text = re.sub(r"<[^>]+>", " ", html)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _payload(part: Message, defects: list[str]) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        defects.append("undecodable part")
        data = None
    if isinstance(data, bytes):
        return data
    value = part.get_payload()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b""


def _filename(part: Message, defects: list[str]) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        defects.append("malformed filename")
        return None
    if not name:
        return None
    try:
        chunks = decode_header(name)
        return "".join(
            c if isinstance(c, str) else decode_bytes(c, cs, defects) for c, cs in chunks
        ).strip()
    except Exception:
        return name.strip()


def _addresses(value: str) -> list[tuple[str, str]]:
    """(address, display name) pairs of an address header, names without quotes."""
    try:
        pairs = getaddresses([value])
    except Exception:
        pairs = []
    out = []
    for name, address in pairs:
        if "@" in address:
            out.append((address.strip(), name.strip().strip('"').strip()))
    if not out:  # a broken header: the first address-like word
        found = _ADDRESS.search(value or "")
        if found:
            out.append((found.group(0), ""))
    return out


def _first_id(value: str) -> str | None:
    found = _MSGID.search(value)
    if found:
        return found.group(1)
    bare = value.strip()
    return bare if bare and " " not in bare and len(bare) < 500 else None


def _date(value: str, defects: list[str]) -> datetime | None:
    if not value.strip():
        return None
    try:
        moment = parsedate_to_datetime(value)
    except Exception:
        defects.append("unparseable Date")
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _domain_company(sender: str | None) -> str | None:
    if not sender or "@" not in sender:
        return None
    domain = sender.rsplit("@", 1)[1].lower().strip(">")
    if domain in FREE_MAIL or "." not in domain:
        return None
    return domain


# -- bounces ------------------------------------------------------------------------------

_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.I)
_BOUNCE_NAMES = re.compile(
    r"^\s*(mail delivery (subsystem|system|service)|mailer-daemon|mail administrator|"
    r"почтовая служба|служба доставки почты)",
    re.I,
)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|undelivered|delivery (status notification|failure|has failed)|"
    r"failure notice|returned mail|mail delivery (failed|system)|could not be delivered|"
    r"недоставленн|не доставлен|не удалось доставить|ошибка доставки)",
    re.I,
)


def _bounce(
    message: Message,
    content_type: str,
    sender: str | None,
    sender_name: str,
    subject: str,
    text: str,
    defects: list[str],
) -> Bounce | None:
    report = content_type == "multipart/report"
    found: dict[str, FailedRecipient] = {}
    if report:
        for part in message.walk():
            if part.get_content_type().lower() != "message/delivery-status":
                continue
            blocks = part.get_payload()
            if isinstance(blocks, list):
                for block in blocks[1:] if len(blocks) > 1 else blocks:
                    _recipient(block, found)
    # A mail server's own plain bounce: its sender and what it says, or its name.
    daemon = bool(sender and _BOUNCE_SENDERS.match(sender))
    says = bool(_BOUNCE_SUBJECT.search(subject) or _STATUS.search(text) or _SMTP_CODE.search(text))
    machine = (
        (daemon and says)
        or bool(message.get("X-Failed-Recipients"))
        or bool(_BOUNCE_NAMES.match(sender_name))
    )
    if not found and (report or machine):
        permanent = bool(_STATUS.search(text) and "5." in text) or bool(_SMTP_CODE.search(text))
        for address in _failed_in_text(message, text, sender):
            status = _STATUS.search(text)
            found.setdefault(
                address.lower(),
                FailedRecipient(address.lower(), status.group(0) if status else None, permanent),
            )
    if not found and not report and not machine:
        return None
    return Bounce(tuple(found.values()))


def _recipient(block: Any, found: dict[str, FailedRecipient]) -> None:
    get = getattr(block, "get", None)
    if get is None:
        return
    final = get("Final-Recipient") or get("Original-Recipient") or ""
    address = str(final).split(";", 1)[-1].strip().strip("<>").lower()
    if "@" not in address:
        return
    status = str(get("Status") or "").strip() or None
    action = str(get("Action") or "").strip().lower()
    if action in ("delivered", "relayed", "expanded"):
        return
    permanent = (status or "").startswith("5") or (action == "failed" and not status)
    found[address] = FailedRecipient(address, status, permanent)


def _failed_in_text(message: Message, text: str, sender: str | None) -> list[str]:
    listed = str(message.get("X-Failed-Recipients") or "")
    addresses = _ADDRESS.findall(listed)
    if addresses:
        return addresses
    own = {
        (sender or "").lower(),
        *(a.lower() for a in _ADDRESS.findall(str(message.get("To", "")))),
    }
    out = []
    for address in _ADDRESS.findall(text[:5000]):
        lower = address.lower()
        if lower not in own and not _BOUNCE_SENDERS.match(lower) and lower not in out:
            out.append(lower)
    return out[:5]


def _empty(raw: bytes, defects: list[str]) -> Mail:
    return Mail(
        message_id=None,
        in_reply_to=(),
        references=(),
        sender=None,
        sender_name="",
        reply_to=None,
        to=(),
        cc=(),
        subject="",
        date=None,
        text="",
        quoted="",
        signature="",
        attachments=(),
        skipped_attachments=(),
        headers={},
        content_type="text/plain",
        report_type=None,
        bounce=None,
        signature_phones=(),
        signature_company=None,
        sender_domain_company=None,
        content_hash=content_hash(raw),
        defects=tuple(defects),
    )


__all__ = ["Mail", "Parts", "decode_bytes", "html_to_text", "read_message"]
