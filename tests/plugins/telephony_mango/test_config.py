"""[plugins.telephony_mango]: what is refused, and the environment's secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load_settings
from plugins.telephony_mango import MangoOffice
from tests.conftest import make_hub
from tests.plugins.telephony_mango.conftest import NAME, mango_settings


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"api_key": "short"}, "api_key"),
        ({"api_salt": "short"}, "at least 16 characters"),
        ({"api_sault": "x" * 20}, "api_sault"),
    ],
)
def test_a_bad_section_names_the_key(sqlite_url: str, section: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_hub(mango_settings(sqlite_url, **section), extra={NAME: MangoOffice})
    assert f"plugins.{NAME}." in str(error.value)
    assert message in str(error.value)


def test_the_key_and_salt_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[plugins.{NAME}]\napi_key = "change-me-key-0000"\napi_salt = "change-me-salt-000"\n'
    )
    monkeypatch.setenv("HUB__PLUGINS__TELEPHONY_MANGO__API_KEY", "key-from-the-environment")
    monkeypatch.setenv("HUB__PLUGINS__TELEPHONY_MANGO__API_SALT", "salt-from-the-environment")
    config = MangoOffice.Config.model_validate(load_settings(path).plugins[NAME])
    assert config.api_key.get_secret_value() == "key-from-the-environment"
    assert config.api_salt.get_secret_value() == "salt-from-the-environment"
