"""SMSC.ru's codes, in its words, and whether trying again can help.

Errors of send.php (``{"error": ..., "error_code": N}``, 3 and 6-8 with the message's
``id``): http://s1.sm-s.ru/api/http/send/sms/sms_answer/ (a white-label copy of SMSC's
"Ответ сервера и коды ошибок"). Message statuses: https://smsc.ru/api/http/status_messages/
(as https://smscentre.com/api/http/status_messages/status_answer/ and the texts in
github.com/C0deWiser/laravel-smscenter-mailer ``lang/ru/status.php``).
"""

from __future__ import annotations

from typing import Literal

# send.php: error_code -> words. 4 and 9 are answered apart (see plugins.sms_smsc.send).
SEND_ERRORS: dict[int, str] = {
    1: "ошибка в параметрах",
    2: "неверный логин или пароль",
    3: "недостаточно средств на счете Клиента",
    4: "IP-адрес временно заблокирован из-за частых ошибок в запросах",
    5: "неверный формат даты",
    6: "сообщение запрещено (по тексту или по имени отправителя)",
    7: "неверный формат номера телефона",
    8: "сообщение на указанный номер не может быть доставлено",
    9: "отправка более одного одинакового запроса на передачу SMS-сообщения в течение минуты",
}
AUTH_FAILED = 2
IP_BLOCKED = 4
DUPLICATE = 9  # send.php: the same request within a minute; status.php: too many queries

# status.php / the status callback: status -> (state, words).
State = Literal["sent", "delivered", "failed"]
STATUSES: dict[int, tuple[State, str]] = {
    -2: ("failed", "остановлено"),
    -1: ("sent", "ожидает отправки"),
    0: ("sent", "передано оператору"),
    1: ("delivered", "доставлено"),
    2: ("delivered", "прочитано"),
    3: ("failed", "просрочено"),
    4: ("delivered", "нажата ссылка"),
    6: ("failed", "заблокировано спам-фильтром"),
    20: ("failed", "невозможно доставить"),
    22: ("failed", "неверный номер"),
    23: ("failed", "запрещено"),
    24: ("failed", "недостаточно средств"),
    25: ("failed", "недоступный номер"),
}
NOT_FOUND = -3  # status.php: no message with this id to this phone
