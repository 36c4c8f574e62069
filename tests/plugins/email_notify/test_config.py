"""``[plugins.email_notify]`` as an operator writes it, and the mistakes it refuses."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.config import ConfigError
from hub.plugins import PluginHost
from plugins.email_notify import EmailNotifier
from plugins.email_notify.config import EmailNotifyConfig
from tests.conftest import make_settings

MINIMAL = {"host": "smtp.example.ru", "sender": "crm@example.ru"}


def configure(sqlite_url: str, **section: object) -> None:
    settings = make_settings(sqlite_url, plugins={"email_notify": {**MINIMAL, **section}})
    host = PluginHost(settings, load_entry_points=False, extra={"email_notify": EmailNotifier})
    host.configure(None)


def test_the_defaults_submit_over_starttls_on_587_and_retry_for_a_day():
    config = EmailNotifyConfig.model_validate(MINIMAL)

    assert (config.security, config.smtp_port) == ("starttls", 587)
    assert config.timeout == timedelta(seconds=15)
    assert config.retry_for == timedelta(hours=24)
    assert config.concurrency == 2
    assert config.sender_name == "crm-hub"
    assert config.validate_certs and config.ca_file is None
    assert config.user is None and config.password is None


def test_tls_from_the_first_byte_defaults_to_port_465():
    config = EmailNotifyConfig.model_validate({**MINIMAL, "security": "tls"})

    assert config.smtp_port == 465
    assert EmailNotifyConfig.model_validate({**MINIMAL, "port": 2525}).smtp_port == 2525


def test_durations_read_as_everywhere_in_the_config():
    config = EmailNotifyConfig.model_validate({**MINIMAL, "timeout": 30, "retry_for": "2d"})

    assert config.timeout == timedelta(seconds=30)
    assert config.retry_for == timedelta(days=2)


def test_an_internationalised_sender_domain_is_sent_in_punycode():
    config = EmailNotifyConfig.model_validate({**MINIMAL, "sender": "crm@почта.рф"})

    assert config.sender == "crm@xn--80a1acny.xn--p1ai"
    assert config.sender_domain == "xn--80a1acny.xn--p1ai"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"sender": "crm.example.ru"}, "plugins.email_notify.sender: sender: 'crm.example.ru' is"),
        ({"reply_to": "sales@"}, "plugins.email_notify.reply_to: reply_to: 'sales@' is not an"),
        ({"security": "ssl"}, "plugins.email_notify.security: Input should be 'starttls'"),
        ({"user": "crm@example.ru"}, "user and password go together"),
        ({"timeout": "0s"}, "plugins.email_notify.timeout: must be longer than 0s"),
        ({"retry_for": "soon"}, "plugins.email_notify.retry_for: not a duration"),
        ({"concurrency": 0}, "plugins.email_notify.concurrency: "),
        ({"ca_file": "no/such/ca.pem"}, "plugins.email_notify.ca_file: 'no/such/ca.pem' is not"),
        ({"sender_name": "CRM\nBcc: x@y.ru"}, "plugins.email_notify.sender_name: must be one line"),
        ({"pasword": "x"}, "plugins.email_notify.pasword: unknown key"),
        (
            {"security": "none", "user": "crm", "password": "secret"},
            "security = 'none' would send the password to smtp.example.ru unencrypted",
        ),
    ],
)
def test_a_section_that_cannot_work_is_refused_naming_the_key(sqlite_url, section, message):
    with pytest.raises(ConfigError) as refused:
        configure(sqlite_url, **section)

    assert message in str(refused.value)


def test_the_sender_is_required(sqlite_url):
    settings = make_settings(sqlite_url, plugins={"email_notify": {"host": "smtp.example.ru"}})
    host = PluginHost(settings, load_entry_points=False, extra={"email_notify": EmailNotifier})

    with pytest.raises(ConfigError) as refused:
        host.configure(None)

    assert "plugins.email_notify.sender: required key is missing" in str(refused.value)


def test_a_relay_on_this_machine_may_take_a_login_without_tls():
    config = EmailNotifyConfig.model_validate(
        {**MINIMAL, "host": "127.0.0.1", "security": "none", "user": "crm", "password": "x"}
    )

    assert config.smtp_port == 587


def test_a_relative_ca_file_is_found_beside_the_config_file(tmp_path, sqlite_url):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    settings = make_settings(sqlite_url)
    settings.config_path = tmp_path / "config.toml"

    config = EmailNotifyConfig.model_validate(
        {**MINIMAL, "ca_file": "ca.pem"}, context={"settings": settings}
    )

    assert config.ca_file == tmp_path / "ca.pem"


def test_the_password_is_a_secret_never_shown():
    config = EmailNotifyConfig.model_validate(
        {**MINIMAL, "user": "crm@example.ru", "password": "app-password-0f3e9a"}
    )

    assert "app-password-0f3e9a" not in repr(config)
    assert "app-password-0f3e9a" not in str(config.model_dump())


def test_a_public_hub_accepts_a_mail_servers_sixteen_character_app_password(sqlite_url):
    # Yandex and Gmail app passwords are 16 characters: the mail server judges them, and the
    # 32-character rule for the hub's own secrets does not apply to what it presents elsewhere.
    strong = "x" * 40
    settings = make_settings(
        sqlite_url,
        hub={"host": "0.0.0.0"},
        api={"tokens": {"head": {"token": strong, "role": "head"}}},
    )
    settings.plugins = {
        "email_notify": {
            "host": "smtp.yandex.ru",
            "user": "crm@example.ru",
            "password": "abcdefghijklmnop",
            "sender": "crm@example.ru",
        }
    }
    PluginHost(settings, load_entry_points=False, extra={"email_notify": EmailNotifier}).configure(
        None
    )
