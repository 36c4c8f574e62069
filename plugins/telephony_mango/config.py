"""Settings of the Mango Office adapter: ``[plugins.telephony_mango]``."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, field_validator

from hub.config import Credential, Duration

# Mango issues both (the VPBX's "API connector" page); shorter is a paste gone wrong.
MIN_LENGTH = 16


class MangoConfig(BaseModel):
    """``[plugins.telephony_mango]``: the VPBX's API key and salt (its "подпись")."""

    model_config = ConfigDict(extra="forbid")

    # "Уникальный код вашей АТС": sent as vpbx_api_key with every event.
    # Or HUB__PLUGINS__TELEPHONY_MANGO__API_KEY.
    api_key: Credential
    # "Ключ для создания подписи": signs every event, never sent.
    # Or HUB__PLUGINS__TELEPHONY_MANGO__API_SALT.
    api_salt: Credential
    # How long a recording's link (signed with the key and salt, "expires") works once a
    # manager opened it: long enough to listen to the whole call.
    recording_link_for: Duration = timedelta(hours=1)
    # Where the VPBX's API is: recordings are played from <api_url>/queries/recording/link/...
    api_url: str = "https://app.mango-office.ru/vpbx"

    @field_validator("recording_link_for")
    @classmethod
    def _lifetime(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=1):
            raise ValueError("must be 1m to 1d: long enough to listen, short enough not to leak")
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (https://app.mango-office.ru/vpbx)")
        return value.rstrip("/")

    @field_validator("api_key", "api_salt")
    @classmethod
    def _long_enough(cls, value: Credential) -> Credential:
        if len(value.get_secret_value().strip()) < MIN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_LENGTH} characters, as the VPBX's API connector "
                "page shows it"
            )
        return value
