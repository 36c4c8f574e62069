"""``[plugins.webhooks]``: a setting that cannot work stops start-up, naming its key."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any

import pytest

from hub.config import ConfigError
from plugins.webhooks import Webhooks
from tests.conftest import make_hub, make_settings
from tests.plugins.webhooks.conftest import SECRET, endpoint

EXAMPLE = "whsec_" + base64.b64encode(b"change-me-0123456789abcdefghij").decode()


def _start(sqlite_url: str, section: dict[str, Any], **hub: Any) -> None:
    settings = make_settings(sqlite_url, plugins={"webhooks": section}, **hub)
    make_hub(settings, extra={"webhooks": Webhooks})


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ("0123456789abcdefghijklmnopqrstuvwxyz", "must start with whsec_"),
        ("whsec_not base64 at all!!", "is not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
    ],
)
def test_a_bad_secret_stops_start_up_naming_its_key(sqlite_url, secret, says):
    section = {"endpoints": [endpoint(secret=secret)]}
    with pytest.raises(ConfigError) as error:
        _start(sqlite_url, section)
    [line] = str(error.value).splitlines()
    assert line.startswith("plugins.webhooks.endpoints.0.secret: ")
    assert says in line
    assert secret not in line  # a secret is never repeated in logs


def test_defaults_follow_the_spec():
    config = Webhooks.Config.model_validate({"endpoints": [endpoint()]})
    assert config.timeout == timedelta(seconds=15)
    assert config.concurrency == 8
    assert config.retry_for == timedelta(days=3)
    assert config.disable_after == timedelta(days=5)
    [first] = config.endpoints
    assert first.events == ["*"]
    assert first.enabled is True
    assert first.secret.get_secret_value() == SECRET
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    ("section", "says"),
    [
        (
            {"endpoints": [endpoint(url="ftp://example.com/x")]},
            "plugins.webhooks.endpoints.0.url: 'ftp://example.com/x' is not an http(s) address",
        ),
        (
            {"endpoints": [endpoint(), endpoint("bad name")]},
            "plugins.webhooks.endpoints.1.name: 'bad name' is not an endpoint name",
        ),
        (
            {"endpoints": [endpoint(events=[])]},
            "plugins.webhooks.endpoints.0.events: subscribe to at least one event type",
        ),
        (
            {"endpoints": [endpoint(events=["deal created"])]},
            "plugins.webhooks.endpoints.0.events: not an event type: 'deal created'",
        ),
        (
            {"endpoints": [endpoint(), endpoint()]},
            "plugins.webhooks: endpoints: more than one endpoint named crm",
        ),
        ({"retry_for": "12h"}, "plugins.webhooks.retry_for: must be at least 24h"),
        ({"disable_after": "10m"}, "plugins.webhooks.disable_after: must be at least 1h"),
        ({"timeout": "0s"}, "plugins.webhooks.timeout: must be between 1s and 2m"),
        ({"concurrency": 0}, "plugins.webhooks.concurrency: "),
        (
            {"endpoints": [{**endpoint(), "secrett": "x"}]},
            "plugins.webhooks.endpoints.0.secrett: unknown key",
        ),
    ],
)
def test_a_setting_that_cannot_work_names_its_key(sqlite_url, section, says):
    with pytest.raises(ConfigError, match="^" + re.escape(says)):
        _start(sqlite_url, section)


def test_the_example_secret_is_refused_where_the_hub_listens_beyond_this_machine(sqlite_url):
    section = {"endpoints": [endpoint(secret=EXAMPLE)]}
    _start(sqlite_url, section)  # 127.0.0.1: fine, for development
    with pytest.raises(ConfigError, match=r"endpoints\.0\.secret: still the example value"):
        _start(sqlite_url, section, hub={"host": "0.0.0.0"})
