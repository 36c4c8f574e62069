"""Settings of the SMSC.ru gateway: ``[plugins.sms_smsc]``."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.config import Credential, Duration


class SmscConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Either the account's login and password, or an API key (``apikey``) instead of both.
    login: str | None = None
    password: Credential | None = None  # or HUB__PLUGINS__SMS_SMSC__PASSWORD
    apikey: Credential | None = None
    # The sender name (Sender ID) approved for the account; unset: the account's default.
    sender: str | None = None
    base_url: str = "https://smsc.ru"  # the reserve server is https://www2.smsc.ru
    # Messages a second, at most. SMSC publishes no limit for HTTP; agree a bulk rate with it.
    rate: float = Field(5.0, gt=0, le=1000)
    concurrency: int = Field(4, ge=1, le=64)
    timeout: Duration = timedelta(seconds=10)  # one request, connecting included
    # What SMSC signs its callbacks with (md5 of "...:<secret>"). Unset: the password.
    callback_secret: Credential | None = None
    check_balance: bool = True  # ask balance.php at start-up, so wrong credentials show at once

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) address, not {value!r}")
        return value.rstrip("/")

    @field_validator("sender", "login")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or any(ch in value for ch in "\r\n\0"):
            raise ValueError("must be one line, not empty")
        return value

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> SmscConfig:
        if self.apikey is not None:
            if self.login is not None or self.password is not None:
                raise ValueError("set apikey, or login and password: not both")
        elif self.login is None or self.password is None:
            raise ValueError("set login and password (or apikey instead of both)")
        return self

    def auth(self) -> dict[str, str]:
        """The form fields that say who is asking."""
        if self.apikey is not None:
            return {"apikey": self.apikey.get_secret_value()}
        assert self.login is not None and self.password is not None
        return {"login": self.login, "psw": self.password.get_secret_value()}

    def signing_secret(self) -> str | None:
        secret = self.callback_secret or self.password
        return None if secret is None else secret.get_secret_value()
