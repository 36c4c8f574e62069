"""Settings of the Mango Office adapter: ``[plugins.telephony_mango]``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from hub.config import Credential

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

    @field_validator("api_key", "api_salt")
    @classmethod
    def _long_enough(cls, value: Credential) -> Credential:
        if len(value.get_secret_value().strip()) < MIN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_LENGTH} characters, as the VPBX's API connector "
                "page shows it"
            )
        return value
