"""[plugins.telephony_ami]: a mistake is refused at start-up, naming the key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from plugins.telephony_ami.config import AmiConfig

REQUIRED = {"username": "crm-hub", "secret": "s3cret"}


def test_only_username_and_secret_are_required_and_the_rest_has_working_defaults() -> None:
    config = AmiConfig.model_validate(REQUIRED)
    assert (config.host, config.port, config.extension_pattern) == ("127.0.0.1", 5038, r"^\d{2,5}$")
    assert "s3cret" not in repr(config)


def test_an_extension_pattern_that_is_not_a_regular_expression_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"(?s)extension_pattern.*not a regular expression"):
        AmiConfig.model_validate({**REQUIRED, "extension_pattern": "^(\\d{2,5}$"})


def test_a_reconnect_min_longer_than_reconnect_max_is_refused() -> None:
    with pytest.raises(ValidationError, match="reconnect_min must not be longer"):
        AmiConfig.model_validate({**REQUIRED, "reconnect_min": "2m", "reconnect_max": "1m"})
