"""Logs never carry a secret, and malformed requests cannot flood them."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from hub.logging import MalformedRequests, redact_secrets, redact_text
from tests.conftest import ROOT
from tests.e2e.daemon import Daemon, free_port, write_config

SECRET = "s3cr3t" + uuid.uuid4().hex  # 38 characters, in no other text


@pytest.mark.parametrize(
    "text",
    [
        f"b'Authorization: Bearer {SECRET}\\x01'",
        f"b'Authorization: Bearer {SECRET[:9]}\\x01{SECRET[9:]}'",
        f"Got more than 8190 bytes when reading: b'Bearer {SECRET}AAAAAAAA...'.",
        f"Authorization: Basic {SECRET}",
        f"Cookie: session={SECRET}; theme=dark",
        f"Set-Cookie: session={SECRET}; HttpOnly",
        f"X-Hub-Signature-256: sha256={SECRET}",
        f"X-Signature={SECRET}",
        f"X-Hub-Token: {SECRET}",
        f"GET /api/v1/deals?access_token={SECRET}&limit=5",
        f'{{"client_secret": "{SECRET}", "n": 1}}',
        f"connect to postgresql+asyncpg://hub:{SECRET}@db/hub failed",
        f"password='{SECRET}'",
    ],
)
def test_credentials_are_redacted_from_text(text):
    clean = redact_text(text)
    assert SECRET not in clean
    assert SECRET[:12] not in clean
    assert "[redacted]" in clean


@pytest.mark.parametrize(
    "text",
    [
        "plugin_started",
        "token must be at least 16 characters",
        "api.tokens.anna.user: 'anna@example.com' is not under [[users]]",
        "store: postgresql+asyncpg://postgres@127.0.0.1:5432/hub not reachable",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact_text(text) == text


def test_the_structlog_processor_redacts_fields_by_name_and_value():
    event = redact_secrets(
        None,
        "info",
        {
            "event": "request_failed",
            "token": SECRET,
            "headers": {"Authorization": f"Bearer {SECRET}", "Accept": "text/html"},
            "exception": [{"exc_value": f"bad header b'X-Hub-Signature: {SECRET}\\x01'"}],
            "attempts": 3,
        },
    )
    assert SECRET not in json.dumps(event)
    assert event["headers"]["Accept"] == "text/html"
    assert event["attempts"] == 3


def test_very_long_values_are_cut():
    assert len(redact_text("x" * 100_000)) < 8300


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def malformed(error: Exception, remote: str = "203.0.113.7") -> logging.LogRecord:
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        (remote,),
        (type(error), error, None),
    )


def test_malformed_requests_give_one_line_then_a_count_per_window():
    guard = MalformedRequests(window=60)
    guard._log = recorder = Recorder()  # type: ignore[assignment]
    raw = f"Invalid header value char:\n\n  b'Authorization: Bearer {SECRET}\\x01'\n  ^"
    for i in range(500):
        assert guard.filter(malformed(BadHttpMessage(raw), f"203.0.113.{i % 3}")) is False
    guard.filter(malformed(LineTooLong(f"b'Bearer {SECRET}AAAA...'", "8190")))
    guard.flush()
    guard.flush()  # nothing new: no line
    assert [event for event, _ in recorder.lines] == ["malformed_request", "malformed_requests"]
    first, summary = recorder.lines[0][1], recorder.lines[1][1]
    assert first["reason"] == "Invalid header value char"
    assert first["remote"] == "203.0.113.0"
    assert summary["count"] == 500
    assert sum(summary["remotes"].values()) == 500
    assert SECRET not in json.dumps(recorder.lines)


def test_a_new_window_reports_the_last_ones_count_first():
    guard = MalformedRequests(window=0.05)
    guard._log = recorder = Recorder()  # type: ignore[assignment]
    for _ in range(3):
        guard.filter(malformed(BadHttpMessage("Invalid method")))
    import time

    time.sleep(0.06)
    guard.filter(malformed(BadHttpMessage("Invalid method")))
    assert [event for event, _ in recorder.lines] == [
        "malformed_request",
        "malformed_requests",
        "malformed_request",
    ]
    assert recorder.lines[1][1]["count"] == 2


def test_other_records_pass_through_the_flood_guard():
    guard = MalformedRequests()
    record = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Unhandled exception", (), None
    )
    assert guard.filter(record) is True


SCRIPT = textwrap.dedent(
    """
    import logging, structlog, sys
    from hub.logging import configure_logging
    configure_logging("info", sys.argv[2])
    secret = sys.argv[1]
    logging.getLogger("sqlalchemy.engine.Engine").warning(
        "connection failed: %s", f"postgresql+asyncpg://hub:{secret}@db/hub"
    )
    logging.getLogger("aiohttp.client").error("sent Authorization: Bearer %s", secret)
    logging.getLogger("some.library").warning("cookie=%s", secret)
    log = structlog.get_logger("hub.test")
    log.info("request", token=secret, headers={"X-Hub-Signature-256": "sha256=" + secret})
    try:
        raise ValueError(f"bad header b'Authorization: Bearer {secret}\\\\x01'")
    except ValueError:
        log.exception("failed")
        logging.getLogger("aiohttp.server").exception("Unhandled exception")
    """
)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_every_logger_is_redacted_once_configured(fmt):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, SECRET, fmt],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert SECRET not in result.stderr + result.stdout
    assert result.stderr.count("[redacted]") >= 6
    assert "ValueError" in result.stderr  # the traceback is still there, without the secret
    if fmt == "json":
        events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
        assert "request" in events and "failed" in events  # structlog's own lines still render


# -- the real daemon ---------------------------------------------------------------------------


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(200), 10)
    except (ConnectionError, TimeoutError):
        return b""
    finally:
        writer.close()


@pytest.mark.slow
async def test_malformed_requests_with_a_valid_token_never_put_it_in_the_log(
    tmp_path, sqlite_url, monkeypatch
):
    monkeypatch.setenv("HUB__API__TOKENS__HEAD__TOKEN", SECRET)
    port = free_port()
    daemon = Daemon(write_config(tmp_path, sqlite_url, port), port)
    daemon.start()
    try:
        await daemon.ready()
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}/api/v1/deals",
                headers={"Authorization": f"Bearer {SECRET}"},
            ) as response,
        ):
            assert response.status == 200  # the token is valid

        token = SECRET.encode()
        head = b"GET /api/v1/deals HTTP/1.1\r\nHost: hub\r\n"
        cases = [
            head + b"Authorization: Bearer " + token + b"\x01\r\n\r\n",
            head + b"Authorization: Bearer " + token[:9] + b"\x01" + token[9:] + b"\r\n\r\n",
            head + b"Authorization: Bearer " + token + b"\r\nX-Big: " + b"A" * 10240 + b"\r\n\r\n",
            head + b"Authorization: Bearer " + token + b"A" * 10240 + b"\r\n\r\n",
            head + b"X-Hub-Token: " + token + b"A" * 10240 + b"\r\n\r\n",
            head + b"X-Hub-Signature-256: sha256=" + token + b"\x01\r\n\r\n",
            head + b"Cookie: session=" + token + b"\x7f\r\n\r\n",
            b"GET /api/v1/deals?access_token=" + token + b"\x01 HTTP/1.1\r\nHost: hub\r\n\r\n",
        ]
        for request in cases:
            assert (await raw(port, request)).startswith(b"HTTP/1.")

        flood = cases[0]
        sent = len(cases)
        for _ in range(10):
            await asyncio.gather(*(raw(port, flood) for _ in range(50)))
            sent += 50
        assert sent == 508
        assert await asyncio.to_thread(daemon.terminate) == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()

    text = (tmp_path / "hub.log").read_text()
    assert SECRET not in text
    assert SECRET[6:20] not in text  # not even a piece of it
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(len(line) < 4096 for line in text.splitlines())
    assert not [line for line in lines if line.get("logger") == "aiohttp.server"]
    about = [line for line in lines if line["event"].startswith("malformed_request")]
    assert 2 <= len(about) <= 5, about
    assert all(line["level"] == "warning" for line in about)
    counted = sum(line.get("count", 1) for line in about)
    assert counted == sent
