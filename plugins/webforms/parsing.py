"""Reading a form submission: urlencoded, multipart or JSON, in any declared charset."""

from __future__ import annotations

import codecs
import re
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import collapse_rfc2231_value
from typing import Any

import orjson

from hub.intake import storable_text

Fields = dict[str, list[str]]


class BadSubmission(ValueError):
    """The body cannot be read.

    ``status`` is the HTTP answer (400 or 415); ``code`` and ``params`` choose
    the sentence a person reads (templates/messages.txt), the message is for
    the site's developer and the log.
    """

    def __init__(self, message: str, status: int = 400, code: str = "unreadable", **params: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.params = params


# Python codecs that are no character set: they turn bytes into other bytes (base64,
# zlib: not text encodings at all), encode domain names, read Python escapes (which
# make any character, a lone surrogate too) or refuse everything.
_NOT_CHARSETS = {"undefined", "punycode", "idna", "unicode-escape", "raw-unicode-escape"}


def codec_for(name: str) -> str:
    """The codec of a declared charset, or 415 naming it."""
    shown = shown_text(name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        raise BadSubmission(f"unknown charset {shown!r}", 415, "charset", charset=shown) from None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        raise BadSubmission(
            f"charset {shown!r} is not a text encoding", 415, "charset", charset=shown
        )
    return info.name


def _charset(content_type_params: dict[str, str]) -> str:
    return codec_for(content_type_params.get("charset", "utf-8").strip().strip('"') or "utf-8")


def _decode(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except UnicodeError as error:  # also what a codec raises that is not a decode error
        at = f" at byte {error.start}" if isinstance(error, UnicodeDecodeError) else ""
        raise BadSubmission(
            f"body is not valid {charset}{at} (declare the charset "
            "in Content-Type, e.g. application/x-www-form-urlencoded; charset=windows-1251)",
            code="not_in_charset",
            charset=charset,
        ) from None


# A run of percent-escapes: the bytes of one or more characters in the form's charset.
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def parse_urlencoded(body: bytes, charset: str) -> Fields:
    """Read ``a=1&b=%D0%98`` as ``urllib.parse.parse_qsl`` does, blank values kept.

    Decoding each run of escapes at once with ``bytes.fromhex`` is about twice as
    fast as ``parse_qsl``, which goes escape by escape; tests/plugins/webforms/
    test_parsing.py holds the two to the same answers.
    """
    text = _decode(body, charset)

    def run(match: re.Match[str]) -> str:
        return bytes.fromhex(match.group().replace("%", "")).decode(charset)

    fields: Fields = {}
    try:
        for pair in text.split("&"):
            if not pair:
                continue
            name, _, value = pair.partition("=")
            if "+" in name:
                name = name.replace("+", " ")
            if "%" in name:
                name = _ESCAPES.sub(run, name)
            if "+" in value:
                value = value.replace("+", " ")
            if "%" in value:
                value = _ESCAPES.sub(run, value)
            fields.setdefault(name, []).append(value)
    except UnicodeError:
        raise BadSubmission(
            f"a percent-encoded value is not valid {charset}",
            code="not_in_charset",
            charset=charset,
        ) from None
    return fields


def parse_json(body: bytes) -> Fields:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadSubmission(f"body is not valid JSON: {error}", code="json") from None
    if not isinstance(data, dict):
        raise BadSubmission("JSON body must be an object of field names to values", code="json")
    fields: Fields = {}
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        out = []
        for item in values:
            if item is None:
                continue
            if isinstance(item, dict | list):
                raise BadSubmission(f"field {key!r}: nested objects are not accepted", code="json")
            out.append(item if isinstance(item, str) else orjson.dumps(item).decode())
        fields[key] = out
    return fields


# Printable ASCII, not ending in a space (RFC 2046 allows fewer characters and at most 70;
# clients that go beyond are read all the same). No quote or backslash: it is quoted below.
_BOUNDARY = re.compile(r"(?:[ !#-\[\]-~]{0,199}[!#-\[\]-~])")


def parse_multipart(
    body: bytes, boundary: str | None, charset: str
) -> tuple[Fields, list[dict[str, object]]]:
    """Return text fields and each file (field, file name, size, type and its bytes)."""
    if not boundary:
        raise BadSubmission("multipart/form-data without a boundary", code="multipart")
    if not _BOUNDARY.fullmatch(boundary):
        raise BadSubmission(
            f"multipart boundary {shown_text(boundary)!r} is not 1 to 200 printable "
            "ASCII characters",
            code="multipart",
        )
    message = BytesParser(policy=HTTP).parsebytes(
        b'Content-Type: multipart/form-data; boundary="'
        + boundary.encode("ascii")
        + b'"\r\n\r\n'
        + body
    )
    if not message.is_multipart():
        raise BadSubmission("multipart body cannot be read", code="multipart")
    fields: Fields = {}
    files: list[dict[str, object]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files.append(
                {  # names as far as a store can keep them (a NUL in filename*=, say)
                    "field": shown_text(str(name)),
                    "filename": shown_text(str(filename)),
                    "size": len(payload),
                    "content_type": shown_text(part.get_content_type()),
                    "content": payload,
                }
            )
            continue
        declared = part.get_param("charset")  # get_content_charset() drops what is not ASCII
        part_charset = codec_for(collapse_rfc2231_value(declared)) if declared else charset
        fields.setdefault(str(name), []).append(_decode(payload, part_charset))
    return fields, files


def parse_body(content_type: str, params: dict[str, str], body: bytes) -> tuple[Fields, list]:
    charset = _charset(params)
    if content_type == "application/x-www-form-urlencoded":
        return parse_urlencoded(body, charset), []
    if content_type == "application/json":
        return parse_json(body), []
    if content_type == "multipart/form-data":
        return parse_multipart(body, params.get("boundary"), charset)
    shown = shown_text(content_type)
    raise BadSubmission(
        f"unsupported content type {shown or '(none)'!r}: send "
        "application/x-www-form-urlencoded, multipart/form-data or application/json",
        status=415,
        code="content_type",
        content_type=shown,
    )


# -- what the stores can keep ----------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


storable = storable_text  # what both stores keep: the intake's own check


def shown_text(text: str) -> str:
    """``text`` as it can be shown and stored: without NUL, a lone surrogate shown as U+FFFD."""
    if storable(text):
        return text
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def keepable(fields: Fields) -> tuple[Fields, list[str]]:
    """The fields without NUL characters, and the fields whose text no store can keep.

    A NUL carries no text (no keyboard types one), so it is dropped. A lone
    surrogate stands for a character that was lost on the way (a broken UTF-7
    or header byte): such a field is named, shown with U+FFFD, for the sender to fix.
    """
    if all(storable(k) and all(map(storable, v)) for k, v in fields.items()):
        return fields, []
    clean: Fields = {}
    refused: list[str] = []
    for name, values in fields.items():
        name = name.replace("\x00", "")
        values = [v.replace("\x00", "") for v in values]
        if not (storable(name) and all(map(storable, values))):
            refused.append(shown_text(name))
            continue
        clean.setdefault(name, []).extend(values)
    return clean, refused
