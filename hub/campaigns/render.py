"""A campaign's message for one person: its template rendered in a sandbox, and for SMS
how many parts it takes.

Templates are Jinja2 in :class:`~jinja2.sandbox.SandboxedEnvironment` (a marketer's
template cannot reach Python's internals) with ``contact``, ``owner``, ``company``
and ``unsubscribe_url``. An empty field renders empty; a fallback is written where
it is used: ``{{ contact.first_name or "коллеги" }}``. A template that does not
parse is refused when the campaign is created, naming the line.

SMS length (3GPP TS 23.038): a text of the GSM 7-bit alphabet takes 160 characters
in one part and 153 per part when split (the extension table's ``{}[]~\\|^€`` count
twice); anything else, Cyrillic included, goes as UCS-2: 70 in one part, 67 per part
(a character outside the BMP, such as an emoji, counts as two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2.sandbox import SandboxedEnvironment

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


class TemplateInvalid(ValueError):
    """The template does not parse; the message names the line."""


@dataclass(frozen=True, slots=True)
class SmsLength:
    encoding: str  # "GSM-7" | "UCS-2"
    characters: int  # in the encoding's units (septets or UTF-16 code units)
    parts: int


def sms_length(text: str) -> SmsLength:
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    parts = 1 if units <= single else -(-units // multi)
    return SmsLength(encoding, units, parts if units else 0)


class _Blank(Undefined):
    """A field that is not there renders as nothing, like an empty one."""

    def __str__(self) -> str:
        return ""


_env = SandboxedEnvironment(undefined=_Blank, autoescape=False, keep_trailing_newline=False)
_html_env = SandboxedEnvironment(undefined=_Blank, autoescape=True)
_strict = SandboxedEnvironment(undefined=StrictUndefined)


def check(source: str, what: str) -> None:
    """Refuse ``source`` when it does not parse, naming ``what`` and the line."""
    try:
        _strict.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateInvalid(f"{what}: строка {error.lineno}: {error.message}") from None


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    subject: str = ""
    html: str = ""


class Letter:
    """A campaign's templates, compiled once, rendered for each recipient."""

    def __init__(self, *, text: str, subject: str | None = None, html: str | None = None) -> None:
        self._text = _env.from_string(text)
        self._subject = _env.from_string(subject) if subject else None
        self._html = _html_env.from_string(html) if html else None

    def render(self, context: Mapping[str, Any]) -> Rendered:
        return Rendered(
            text=self._text.render(context).strip(),
            subject=" ".join(self._subject.render(context).split()) if self._subject else "",
            html=self._html.render(context) if self._html else "",
        )


def person(
    contact: Mapping[str, Any],
    owner: Mapping[str, Any] | None,
    company: str | None,
    unsubscribe_url: str | None,
) -> dict[str, Any]:
    """What a template sees about one recipient."""
    name = (contact.get("name") or "").split()
    # Russian order is "Фамилия Имя Отчество" in records and "Имя Фамилия" in forms; the
    # first word is the first name unless a patronymic (…вич/…вна) says the order.
    first = name[0] if name else ""
    if len(name) == 3 and name[2].lower().endswith(("вич", "вна", "ична", "кызы", "оглы")):
        first = name[1]
    return {
        "contact": {
            "id": contact.get("id"),
            "name": contact.get("name") or "",
            "first_name": first,
            "city": contact.get("city") or "",
            "segment": contact.get("segment") or "",
            "company": company or "",
        },
        "owner": {
            "name": (owner or {}).get("name") or "",
            "email": (owner or {}).get("email") or "",
            "phone": (owner or {}).get("phone") or "",
        },
        "company": company or "",
        "unsubscribe_url": unsubscribe_url or "",
    }
