"""A Bot API server for the tests, answering ``getMe`` and ``sendMessage`` as
https://core.telegram.org/bots/api documents them, and refusing what the real one refuses:
a wrong token (401), a malformed one (404), a chat it does not know (400), a bot the user
blocked (403), a flood (429 with ``retry_after``), a group upgraded to a supergroup (400
with ``migrate_to_chat_id``), HTML it cannot parse and text over 4096 characters (400).

Its HTML check is written apart from the plugin's (on the standard library's parser), so
a cut the plugin gets wrong is refused here as Telegram would refuse it.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

TOKEN = "123456789:AAH-test_token-abcdefghijklmnopqrstu"
BOT = {"id": 123456789, "is_bot": True, "first_name": "CRM Hub", "username": "crm_hub_bot"}

# https://core.telegram.org/bots/api#html-style
TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
    "a", "tg-emoji", "code", "pre", "blockquote",
}  # fmt: skip
NAMED_ENTITIES = {"lt", "gt", "amp", "quot"}
_BARE_AMPERSAND = re.compile(r"&(?!#[0-9]+;|#[xX][0-9a-fA-F]+;|[a-zA-Z]+;)")
_NAMED = re.compile(r"&([a-zA-Z]+);")
_BARE_LT = re.compile(r"<(?![a-zA-Z/])")


class BadHtml(Exception):
    pass


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TAGS:
            raise BadHtml(f'Unsupported start tag "{tag}"')
        if tag == "a" and not dict(attrs).get("href"):
            raise BadHtml("Can't find the URL of a link")
        self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise BadHtml(f'Unsupported start tag "{tag}"')

    def handle_endtag(self, tag: str) -> None:
        if not self.open:
            raise BadHtml(f'Unexpected end tag "{tag}"')
        if self.open[-1] != tag:
            raise BadHtml(f'Can\'t find end tag corresponding to start tag "{self.open[-1]}"')
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(markup: str) -> str:
    """The text Telegram shows for ``markup``; raises :class:`BadHtml` as it would refuse it."""
    if match := _BARE_AMPERSAND.search(markup):
        raise BadHtml(f"Character '&' is reserved (byte offset {match.start()})")
    if match := _BARE_LT.search(markup):
        raise BadHtml(f"Character '<' is reserved (byte offset {match.start()})")
    for name in _NAMED.findall(markup):
        if name not in NAMED_ENTITIES:
            raise BadHtml(f'Unsupported HTML entity "&{name};"')
    parser = _Parser()
    parser.feed(markup)
    parser.close()
    if parser.open:
        raise BadHtml(f'Can\'t find end tag corresponding to start tag "{parser.open[-1]}"')
    return "".join(parser.text)


@dataclass
class FakeTelegram:
    token: str = TOKEN
    chats: dict[int, str] = field(
        default_factory=lambda: {1001: "private", -1002003: "supergroup", -1009: "channel"}
    )
    usernames: dict[str, int] = field(default_factory=lambda: {"@crm_news": -1009})
    blocked: set[int] = field(default_factory=set)
    migrated: dict[int, int] = field(default_factory=dict)  # old group id -> supergroup id
    flood: dict[int, int] = field(default_factory=dict)  # chat -> retry_after, once
    # Answers given before anything else, one per request: (status, body); a body that is a
    # str is sent as text/html, as a proxy in front of the API would.
    script: list[tuple[int, Any]] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # what reached a chat

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self.handle)
        return app

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [params for name, params in self.requests if name == method]

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        self.requests.append((method, params))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            status, body = self.script.pop(0)
            if isinstance(body, str):
                return web.Response(status=status, text=body, content_type="text/html")
            return web.json_response(body, status=status)
        token = request.match_info["token"]
        if ":" not in token:
            return _error(404, "Not Found")
        if token != self.token:
            return _error(401, "Unauthorized")
        if method == "getMe":
            return web.json_response({"ok": True, "result": BOT})
        if method == "sendMessage" and request.method == "POST":
            return self.send_message(params)
        return _error(404, "Not Found: method not found")

    def send_message(self, params: dict[str, Any]) -> web.Response:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            return _error(400, "Bad Request: chat_id is empty")
        chat = self._chat(chat_id)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        shown = text
        if params.get("parse_mode") == "HTML":
            try:
                shown = parse_html(text)
            except BadHtml as error:
                return _error(400, f"Bad Request: can't parse entities: {error}")
        elif params.get("parse_mode") is not None:
            return _error(400, "Bad Request: unsupported parse_mode")
        if not shown.strip():
            return _error(400, "Bad Request: message text is empty")
        if utf16(shown) > 4096:
            return _error(400, "Bad Request: message is too long")
        preview = params.get("link_preview_options", {})
        if not isinstance(preview, dict) or not isinstance(preview.get("is_disabled", False), bool):
            return _error(400, "Bad Request: can't parse link preview options")
        if "reply_markup" in params and (problem := _bad_markup(params["reply_markup"])):
            return _error(400, f"Bad Request: {problem}")
        if chat in self.migrated:
            return _error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=self.migrated[chat],
            )
        if chat is None or chat not in self.chats:
            return _error(400, "Bad Request: chat not found")
        if chat in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if chat in self.flood:
            seconds = self.flood.pop(chat)
            return _error(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds)
        message = {
            "message_id": len(self.messages) + 1,
            "date": 1764000000,
            "chat": {"id": chat, "type": self.chats[chat]},
            "text": shown,
        }
        self.messages.append({**message, "params": params})
        return web.json_response({"ok": True, "result": message})

    def _chat(self, chat_id: Any) -> int | None:
        if isinstance(chat_id, bool):
            return None
        if isinstance(chat_id, int):
            return chat_id
        if isinstance(chat_id, str) and re.fullmatch(r"-?\d+", chat_id):
            return int(chat_id)
        if isinstance(chat_id, str):
            return self.usernames.get(chat_id)
        return None


async def _params(request: web.Request) -> dict[str, Any]:
    """Parameters as the Bot API takes them: the query string, a form, or a JSON body."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
    elif request.can_read_body:
        params.update(await request.post())
    return params


def _error(status: int, description: str, **parameters: int) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


def _bad_markup(markup: Any) -> str | None:
    """What is wrong with an InlineKeyboardMarkup (https://core.telegram.org/bots/api#inlinekeyboardmarkup)."""
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        return "can't parse reply keyboard markup JSON object"
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                return "can't parse inline keyboard button: Text buttons are unallowed"
            url = button.get("url")
            if url is None:
                return "can't parse inline keyboard button: a button needs an action"
            host = re.match(r"^(?:https?|tg)://([^/:?#]+)", url)
            if host is None or host.group(1) in ("localhost",) or "." not in host.group(1):
                return f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL"
    return None
