"""Settings of the SMS.ru gateway: ``[plugins.sms_smsru]``."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from hub.config import Credential, Duration


class SmsRuConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_id: Credential  # the account's API key; or HUB__PLUGINS__SMS_SMSRU__API_ID
    # The sender name SMS.ru approved for the account (``from``); unset: the account's default.
    sender: str | None = None
    base_url: str = "https://sms.ru"
    rate: float = Field(5.0, gt=0, le=100)  # messages a second, at most
    concurrency: int = Field(4, ge=1, le=32)
    timeout: Duration = timedelta(seconds=10)  # one request, connecting included
    # Delivery reports come to https://<hub>/sms/smsru/<callback_token> (SMS.ru signs nothing,
    # so the path is the secret). Unset: no callback route, statuses are polled.
    callback_token: SecretStr | None = None
    check_balance: bool = True  # ask my/balance at start-up, so a wrong api_id shows at once
    test: bool = False  # SMS.ru's test=1: accepted and not sent (not verified in the docs read)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) address, not {value!r}")
        return value.rstrip("/")

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or any(ch in value for ch in "\r\n\0"):
            raise ValueError("the approved sender name, one line")
        return value

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("callback_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().isalnum():
            raise ValueError("letters and digits only: it is a part of the callback's URL path")
        return value
