"""SMS.ru's codes (https://sms.ru/api/send, https://sms.ru/api/status): what each means,
in the provider's words, and whether trying again can help.

Seen in the stored docs: 100, 103, 104, 207. The rest follow public clients' tables of
the same codes and are not verified against the docs (see the module docstring of
:mod:`plugins.sms_smsru`).
"""

from __future__ import annotations

from typing import Literal

# Request and per-number errors of sms/send: code -> (retry?, words).
SEND_ERRORS: dict[int, tuple[bool, str]] = {
    200: (False, "неправильный api_id"),
    201: (False, "не хватает средств на лицевом счету"),
    202: (False, "неправильно указан номер телефона получателя"),
    203: (False, "нет текста сообщения"),
    204: (False, "имя отправителя не согласовано с администрацией"),
    205: (False, "сообщение слишком длинное"),
    206: (True, "превышен дневной лимит на отправку сообщений"),
    207: (False, "на этот номер нельзя отправлять сообщения"),
    208: (False, "параметр time указан неправильно"),
    209: (False, "номер добавлен в стоп-лист"),
    210: (False, "используется GET, где необходимо использовать POST"),
    211: (False, "метод не найден"),
    212: (False, "текст сообщения необходимо передать в кодировке UTF-8"),
    213: (False, "указано более 100 номеров в списке получателей"),
    220: (True, "сервис временно недоступен, попробуйте чуть позже"),
    230: (True, "превышен общий лимит количества сообщений на этот номер в день"),
    231: (True, "превышен лимит одинаковых сообщений на этот номер в минуту"),
    232: (True, "превышен лимит одинаковых сообщений на этот номер в день"),
    233: (True, "превышен лимит отправки повторных сообщений с кодом на этот номер"),
    300: (False, "неправильный token (возможно, истек срок действия или сменился IP)"),
    301: (False, "неправильный api_id или логин/пароль"),
    302: (False, "пользователь авторизован, но аккаунт не подтвержден"),
    303: (False, "код подтверждения неверен"),
    304: (False, "отправлено слишком много кодов подтверждения, повторите позже"),
    305: (False, "слишком много неверных вводов кода, повторите позже"),
    500: (True, "ошибка на сервере, повторите запрос"),
}
AUTH_ERRORS = frozenset({200, 300, 301, 302})

# Codes whose wait is longer than the sender's backoff: seconds before trying again.
WAIT: dict[int, int] = {206: 3600, 230: 3600, 232: 3600}

# sms/status: code -> (state, words). 100-102 are on their way; the rest are final.
State = Literal["sent", "delivered", "failed"]
STATUSES: dict[int, tuple[State, str]] = {
    100: ("sent", "сообщение находится в очереди"),
    101: ("sent", "сообщение передается оператору"),
    102: ("sent", "сообщение отправлено (в пути)"),
    103: ("delivered", "сообщение доставлено"),
    104: ("failed", "не может быть доставлено: время жизни истекло"),
    105: ("failed", "не может быть доставлено: удалено оператором"),
    106: ("failed", "не может быть доставлено: сбой в телефоне"),
    107: ("failed", "не может быть доставлено: неизвестная причина"),
    108: ("failed", "не может быть доставлено: отклонено"),
    110: ("delivered", "сообщение прочитано"),
    150: ("failed", "не может быть доставлено: не найден маршрут на данный номер"),
}
NOT_FOUND = -1  # sms/status: no such message
