"""[plugins.telephony]: what is refused, and why."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.config import ConfigError
from plugins.telephony import Telephony
from tests.conftest import make_hub
from tests.plugins.telephony.conftest import telephony_settings


def test_defaults_are_route_zero_within_300_ms_and_no_route_without_a_token():
    config = Telephony.Config()
    assert (config.default_route, config.route_deadline, config.route_token) == (
        "0",
        timedelta(milliseconds=300),
        None,
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"route_token": "short"}, "at least 16 characters"),
        ({"default_route": "1 2"}, "not something a PBX dials"),
        ({"route_deadline": "30s"}, "between 10ms and 10s"),
        ({"route_dedline": "1s"}, "route_dedline"),
    ],
)
def test_a_bad_section_names_the_key(sqlite_url: str, section: dict, message: str):
    with pytest.raises(ConfigError) as error:
        make_hub(telephony_settings(sqlite_url, **section), extra={"telephony": Telephony})
    assert "plugins.telephony." in str(error.value)
    assert message in str(error.value)
