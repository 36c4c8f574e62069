"""An SMSC.ru for the tests: ``send.php``, ``status.php`` and ``balance.php`` answered as
https://smsc.ru/api/http/ and its error page document them (``fmt=3``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LOGIN = "zavod"
PASSWORD = "test_smsc_password"


@dataclass
class FakeSmsc:
    refused: dict[str, int] = field(default_factory=dict)  # phone -> error_code
    request_error: int | None = None
    messages: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0
    stall_after_storing: bool = False  # take the message, then never answer (once)
    # SMSC refuses the same request only within a minute (error 9): a send repeated later
    # goes out again. False takes every repeat as a new message, counted in ``sends``.
    refuse_repeats: bool = True
    sends: dict[str, int] = field(default_factory=dict)  # phone -> messages taken
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/sys/{script}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        script = request.match_info["script"]
        assert request.content_type == "application/x-www-form-urlencoded"
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append((script, form))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            status, body, headers = self.script.pop(0)
            if isinstance(body, str):
                return web.Response(status=status, text=body, headers=headers)
            return web.json_response(body, status=status, headers=headers)
        assert form.get("fmt") == "3" and form.get("charset") == "utf-8"
        if (form.get("login"), form.get("psw")) != (LOGIN, PASSWORD):
            return _error(2, "authorise error")
        if self.request_error is not None:
            return _error(self.request_error, "описание")
        if script == "balance.php":
            return web.json_response({"balance": "497.82"})
        if script == "send.php":
            return await self.send(form)
        if script == "status.php":
            found = self.messages.get((int(form["id"]), form["phone"]))
            if found is None:
                return web.json_response({"status": -3, "last_date": "", "last_timestamp": 0})
            return web.json_response(
                {"status": found["status"], "last_date": "15.03.2024 10:22:11",
                 "last_timestamp": 1710487331, "flag": 0, "err": found.get("err", 0)}
            )  # fmt: skip
        return _error(1, "unknown script")

    async def send(self, form: dict[str, str]) -> web.Response:
        phone, sms_id = form.get("phones", ""), int(form.get("id", "0"))
        assert phone.isdigit(), f"phones go as digits, not {phone!r}"
        if phone in self.refused:
            return _error(self.refused[phone], "описание", id=sms_id)
        if self.refuse_repeats and (sms_id, phone) in self.messages:
            return _error(9, "duplicate request, wait a minute")
        self.messages[(sms_id, phone)] = {**form, "status": 0}
        self.sends[phone] = self.sends.get(phone, 0) + 1
        if self.stall_after_storing:
            self.stall_after_storing = False
            await asyncio.sleep(1.0)
        return web.json_response({"id": sms_id, "cnt": 1, "cost": "2.18", "balance": "497.82"})


def _error(code: int, text: str, **extra: Any) -> web.Response:
    return web.json_response({"error": text, "error_code": code, **extra})
