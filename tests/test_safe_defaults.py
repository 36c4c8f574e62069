"""Safe defaults: no example or short secret on a public address; manager tokens name real users."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, SecretStr

from hub.cli import main
from hub.config import ConfigError, is_loopback, load_settings
from hub.hookspecs import hookimpl
from hub.plugins import PluginHost
from plugins.webforms import WebForms
from tests.conftest import ROOT, make_settings

EXAMPLE = ROOT / "config.example.toml"
EXAMPLE_SECRETS = (
    "api.tokens.head.token",
    "api.tokens.anna.token",
    "plugins.webforms.forms.partner.secret",
    "plugins.telephony.route_token",
)
REAL = "7f3a9c1e5b2d4f6a8c0e2b4d6f8a1c3e"  # 32 characters


def check(path=EXAMPLE) -> CliRunner:
    return CliRunner().invoke(main, ["config", "check", str(path)])


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_allows_the_example_secrets_for_development(host, monkeypatch):
    monkeypatch.setenv("HUB__HUB__HOST", host)
    assert is_loopback(host)
    result = check()
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "hub.example.ru", ""])
def test_a_public_address_with_example_secrets_is_refused_naming_every_key(host, monkeypatch):
    monkeypatch.setenv("HUB__HUB__HOST", host)
    assert not is_loopback(host)
    result = check()
    assert result.exit_code == 2
    for key in EXAMPLE_SECRETS:
        assert f"{key}: still the example value" in result.output
    assert "HUB__API__TOKENS__HEAD__TOKEN" in result.output
    assert "change-me" not in result.output  # the secrets themselves are never printed


def test_real_secrets_of_32_characters_may_listen_publicly(monkeypatch):
    monkeypatch.setenv("HUB__HUB__HOST", "0.0.0.0")
    monkeypatch.setenv("HUB__API__TOKENS__HEAD__TOKEN", REAL)
    monkeypatch.setenv("HUB__API__TOKENS__ANNA__TOKEN", REAL[::-1])
    monkeypatch.setenv("HUB__PLUGINS__WEBFORMS__FORMS__PARTNER__SECRET", REAL.upper())
    monkeypatch.setenv("HUB__PLUGINS__TELEPHONY__ROUTE_TOKEN", REAL[1:] + "x")
    monkeypatch.setenv("HUB__PLUGINS__TELEPHONY__WEBHOOK_SECRET", REAL[2:] + "yz")
    result = check()
    assert result.exit_code == 0, result.output


def test_a_short_secret_on_a_public_address_is_refused_with_its_length(monkeypatch):
    monkeypatch.setenv("HUB__HUB__HOST", "0.0.0.0")
    monkeypatch.setenv("HUB__API__TOKENS__HEAD__TOKEN", REAL)
    monkeypatch.setenv("HUB__API__TOKENS__ANNA__TOKEN", REAL)
    monkeypatch.setenv(
        "HUB__PLUGINS__WEBFORMS__FORMS__PARTNER__SECRET", "partner-secret-31-characters-xx"
    )
    monkeypatch.setenv("HUB__PLUGINS__TELEPHONY__ROUTE_TOKEN", REAL)
    monkeypatch.setenv("HUB__PLUGINS__TELEPHONY__WEBHOOK_SECRET", REAL)
    result = check()
    assert result.exit_code == 2
    assert "plugins.webforms.forms.partner.secret: 31 characters is too short" in result.output
    assert "api.tokens" not in result.output


def test_hub_run_on_a_public_address_with_example_secrets_does_not_start(monkeypatch, tmp_path):
    monkeypatch.setattr("hub.cli.configure_logging", lambda *a, **k: None)
    monkeypatch.setattr("aiohttp.web.run_app", lambda *a, **k: pytest.fail("it started"))
    config = write(tmp_path, EXAMPLE.read_text())
    result = CliRunner().invoke(main, ["--config", str(config), "run", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "api.tokens.head.token: still the example value" in result.output
    assert "hub.host: '0.0.0.0' is reachable from other machines" in result.output


class Crm:
    """A third-party plugin with a secret of its own: found by the host, named by its key."""

    class Config(BaseModel):
        model_config = {"extra": "forbid"}
        api_key: SecretStr
        webhook: dict[str, SecretStr] = {}

    def __init__(self, config: Config) -> None:
        self.config = config

    @hookimpl
    def hub_startup(self) -> None:
        pass


def test_secrets_in_any_plugins_section_are_checked(sqlite_url):
    settings = make_settings(
        sqlite_url,
        hub={"host": "0.0.0.0"},
        api={"tokens": {"head": {"token": REAL, "role": "head"}}},
        plugins={
            "crm": {"api_key": "change-me-crm-key", "webhook": {"signing": "short-signing-key"}},
            "webforms": {"forms": {"partner": {"auth": "hmac", "secret": REAL}}},
        },
    )
    host = PluginHost(settings, load_entry_points=False, extra={"crm": Crm, "webforms": WebForms})
    with pytest.raises(ConfigError) as error:
        host.configure(None)
    message = str(error.value)
    assert "plugins.crm.api_key: still the example value" in message
    assert "plugins.crm.webhook.signing: 17 characters is too short" in message
    assert "webforms" not in message and "api.tokens" not in message


def test_a_disabled_plugins_secret_does_not_count(sqlite_url):
    settings = make_settings(
        sqlite_url,
        hub={"host": "0.0.0.0"},
        api={"tokens": {}},
        plugins={"crm": {"enabled": False, "api_key": "change-me"}, "webforms": {"forms": {}}},
    )
    host = PluginHost(settings, load_entry_points=False, extra={"crm": Crm, "webforms": WebForms})
    host.configure(None)


def write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_a_manager_token_for_a_user_not_in_users_is_refused_naming_the_key(tmp_path):
    text = EXAMPLE.read_text().replace('user = "anna@example.com"', 'user = "ana@example.com"')
    result = check(write(tmp_path, text))
    assert result.exit_code == 2
    assert "api.tokens.anna.user: 'ana@example.com' is not under [[users]]" in result.output
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "config.toml")


def test_a_manager_token_for_an_inactive_user_is_refused_naming_the_key(tmp_path):
    text = EXAMPLE.read_text().replace(
        'role = "manager"               # manager | head | admin\nactive = true',
        'role = "manager"               # manager | head | admin\nactive = false',
    )
    assert "active = false" in text
    result = check(write(tmp_path, text))
    assert result.exit_code == 2
    assert "api.tokens.anna.user: 'anna@example.com' is not active" in result.output


def test_a_manager_tokens_user_matches_whatever_the_case(sqlite_url):
    make_settings(
        sqlite_url,
        api={
            "tokens": {
                "anna": {"token": REAL, "role": "manager", "user": "Anna@Example.com"},
            }
        },
    )
