"""An SMS.ru for the tests: ``sms/send``, ``sms/status`` and ``my/balance`` answered as
https://sms.ru/api/send and https://sms.ru/api/status document them (``json=1``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_ID = "0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D"


@dataclass
class FakeSmsRu:
    api_id: str = API_ID
    balance: float = 4122.56
    refused: dict[str, int] = field(default_factory=dict)  # number -> per-number code
    request_error: int | None = None  # a top-level status_code (201 no money, 220, ...)
    statuses: dict[str, int] = field(default_factory=dict)  # sms_id -> status code
    # Answers given before anything else: (HTTP status, JSON body or text, headers).
    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    sent: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{method:.+}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        assert request.content_type == "application/x-www-form-urlencoded"
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append((method, form))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            status, body, headers = self.script.pop(0)
            if isinstance(body, str):
                return web.Response(status=status, text=body, headers=headers)
            return web.json_response(body, status=status, headers=headers)
        assert form.get("json") == "1", "the plugin asks for JSON answers"
        if form.get("api_id") != self.api_id:
            return _error(200, "Неправильный api_id")
        if self.request_error is not None:
            return _error(self.request_error, f"ошибка {self.request_error}")
        if method == "my/balance":
            return web.json_response({"status": "OK", "status_code": 100, "balance": self.balance})
        if method == "sms/send":
            return self.send(form)
        if method == "sms/status":
            return self.status(form)
        return _error(211, "Метод не найден")

    def send(self, form: dict[str, str]) -> web.Response:
        to, text = form.get("to", ""), form.get("msg", "")
        if not text:
            return _error(203, "Нет текста сообщения")
        answers = {}
        for number in to.split(","):
            assert number.isdigit(), f"numbers go as digits, not {number!r}"
            if number in self.refused:
                code = self.refused[number]
                answers[number] = {
                    "status": "ERROR",
                    "status_code": code,
                    "status_text": f"код {code}",
                }
                continue
            sms_id = f"000000-{10000000 + len(self.sent)}"
            self.sent.append({**form, "to": number, "sms_id": sms_id})
            answers[number] = {"status": "OK", "status_code": 100, "sms_id": sms_id}
        return web.json_response(
            {"status": "OK", "status_code": 100, "sms": answers, "balance": self.balance}
        )

    def status(self, form: dict[str, str]) -> web.Response:
        answers: dict[str, Any] = {}
        for sms_id in form.get("sms_id", "").split(","):
            code = self.statuses.get(sms_id, -1)
            if code == -1:
                answers[sms_id] = {
                    "status": "ERROR",
                    "status_code": -1,
                    "status_text": "Сообщение не найдено",
                }
            else:
                answers[sms_id] = {"status": "OK", "status_code": code, "cost": 0.5}
        return web.json_response({"status": "OK", "status_code": 100, "sms": answers})


def _error(code: int, text: str) -> web.Response:
    return web.json_response({"status": "ERROR", "status_code": code, "status_text": text})
