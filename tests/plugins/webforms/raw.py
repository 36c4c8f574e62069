"""Posting bytes exactly as given (headers too), as a broken client or a fuzzer would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from html.parser import HTMLParser

from aiohttp.test_utils import TestClient, TestServer


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def post_raw(
    to: TestClient | TestServer, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> Answer:
    """One request on its own connection; Content-Length is the body's."""
    server = to.server if isinstance(to, TestClient) else to
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = b"POST %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" % path
        head += b"Content-Length: %d\r\n" % len(body)
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    raw_headers, _, content = rest.partition(b"\r\n\r\n")
    fields = (line.partition(b":") for line in raw_headers.split(b"\r\n") if line)
    return Answer(
        status=int(status_line.split()[1]),
        headers={k.decode("latin-1").lower(): v.strip().decode("latin-1") for k, _, v in fields},
        body=content,
    )


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page_text(html: str) -> str:
    """What a person reads on the page, whitespace collapsed."""
    page = _Page()
    page.feed(html)
    return " ".join("".join(page.text).split())


def page_links(html: str) -> list[str]:
    page = _Page()
    page.feed(html)
    return page.links
