"""[plugins.telephony_zadarma]: what is refused, and the environment's secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load_settings
from plugins.telephony_zadarma import Zadarma
from tests.conftest import make_hub
from tests.plugins.telephony_zadarma.conftest import NAME, zadarma_settings


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"api_secret": "short"}, "at least 16 characters"),
        ({"timezone": "Moscow"}, "not a time zone"),
        ({"api_sercet": "x" * 20}, "api_sercet"),
    ],
)
def test_a_bad_section_names_the_key(sqlite_url: str, section: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_hub(zadarma_settings(sqlite_url, **section), extra={NAME: Zadarma})
    assert f"plugins.{NAME}." in str(error.value)
    assert message in str(error.value)


def test_the_api_secret_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[plugins.{NAME}]\napi_secret = "change-me-in-the-environment"\n')
    monkeypatch.setenv("HUB__PLUGINS__TELEPHONY_ZADARMA__API_SECRET", "secret-from-the-environment")
    settings = load_settings(path)
    config = Zadarma.Config.model_validate(settings.plugins[NAME])
    assert config.api_secret.get_secret_value() == "secret-from-the-environment"
