"""What is new in a letter: the quoted reply and the signature cut from its text, and the
phones and company a signature gives.

Mail clients mark a quote in a few ways, and Russian ones in their own words: ``>``
lines; "On <date>, <name> wrote:"; Outlook's "-----Original Message-----" and its
"From: / От:" block; Gmail's and Yandex's "<date>, <name> написал(а):" / "пишет:";
Thunderbird's "-------- Forwarded Message --------" (a forward keeps its quoted part as
quoted, the text the forwarder added as new). A signature starts at the RFC 3676 "-- "
line, or at a closing such as "С уважением," or "Best regards," near the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

_QUOTE_HEADERS = [
    re.compile(r"^\s*(on|am|le)\s.{4,200}(wrote|schrieb|a écrit)\s*:\s*$", re.I),
    re.compile(r"^.{0,200}(написал|написала|написал\(а\)|пишет)\s*:\s*$", re.I),
    re.compile(
        r"^\s*-{2,}\s*(original message|исходное сообщение|forwarded message|"
        r"пересылаемое сообщение|переадресованное сообщение)\s*-{2,}\s*$",
        re.I,
    ),
    re.compile(r"^\s*(from|от|отправлено)\s*:\s.+", re.I),
    re.compile(r"^_{20,}\s*$"),
]
_CLOSINGS = re.compile(
    r"^\s*(с уважением|с наилучшими пожеланиями|всего доброго|всего хорошего|спасибо|"
    r"best regards|kind regards|regards|best wishes|thanks|thank you|cheers|sincerely)"
    r"[\s,.!]*$",  # the closing alone on its line: "Спасибо, берём" is the letter itself
    re.I,
)
_COMPANY = re.compile(
    r"((?:ООО|ОАО|ЗАО|ПАО|АО|НКО|ГУП|МУП|ФГУП|ИП)\s*[«\"„“]?[^\n,;]{2,80}?[»\"”]?"
    r"|[^\n,;]{2,80}?\s(?:LLC|Ltd\.?|GmbH|Inc\.?|Corp\.?|S\.A\.|AG|LLP|B\.V\.))(?=$|[\n,;])",
)


@dataclass(frozen=True, slots=True)
class Parts:
    text: str
    quoted: str
    signature: str


def split_text(text: str) -> Parts:
    """The letter's own new text, the part it quotes, and its signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = len(lines)
    for index, line in enumerate(lines):
        if line.lstrip().startswith(">") or any(p.match(line) for p in _QUOTE_HEADERS):
            # "From:" alone is a quote only where Outlook puts it: after a blank line
            outlook = re.match(r"^\s*(from|от|отправлено)\s*:", line, re.I)
            if outlook and index > 0 and lines[index - 1].strip():
                continue
            cut = index
            break
    own, quoted = lines[:cut], lines[cut:]
    signature_at = None
    for index, line in enumerate(own):
        if line.rstrip() in ("-- ", "--") and index > 0:
            signature_at = index
            break
    if signature_at is None:
        start = max(0, len(own) - 12)
        for index in range(start, len(own)):
            if _CLOSINGS.match(own[index]) and len(own[index]) < 60:
                signature_at = index
                break
    if signature_at is not None:
        body, signature = own[:signature_at], own[signature_at:]
        if signature and signature[0].rstrip() in ("-- ", "--"):
            signature = signature[1:]
    else:
        body, signature = own, []
    return Parts(
        text="\n".join(body).strip(),
        quoted="\n".join(quoted).strip(),
        signature="\n".join(signature).strip(),
    )


def find_phones(text: str, region: str = "RU") -> list[str]:
    """Phone numbers written in ``text``, as written (the caller normalizes them)."""
    found: list[str] = []
    try:
        for match in phonenumbers.PhoneNumberMatcher(text[:5000], region):
            if match.raw_string not in found:
                found.append(match.raw_string)
    except Exception:
        return found
    return found[:5]


def find_company(text: str) -> str | None:
    """A company's name in a signature: ООО «Ромашка», ИП Сидоров, Acme Ltd."""
    for line in text.splitlines()[:15]:
        found = _COMPANY.search(line.strip())
        if found:
            return " ".join(found.group(1).split())[:200]
    return None
