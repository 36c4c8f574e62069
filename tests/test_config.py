"""Configuration: the file, environment overrides, and errors that name the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hub.cli import main
from hub.config import ConfigError, load_settings, parse_duration
from tests.conftest import ROOT

EXAMPLE = ROOT / "config.example.toml"


def test_the_example_config_is_valid_and_documents_every_core_section():
    settings = load_settings(EXAMPLE)
    text = EXAMPLE.read_text()
    for section in (
        "[hub]",
        "[log]",
        "[store]",
        "[intake]",
        "[api]",
        "[[users]]",
        "[catalog]",
        "[pipelines.",
        "[plugins.webforms]",
    ):
        assert section in text
    for key in type(settings.intake).model_fields:
        assert f"\n{key} = " in text, f"intake.{key} is not documented in config.example.toml"
    assert settings.pipelines["sales"].stages[0].name == "Новая сделка"


def test_environment_overrides_the_file(monkeypatch):
    monkeypatch.setenv("HUB__STORE__URL", "postgresql+asyncpg://hub@db/hub")
    monkeypatch.setenv("HUB__INTAKE__BATCH_SIZE", "64")
    monkeypatch.setenv("HUB__PLUGINS__WEBFORMS__FORMS__PARTNER__SECRET", "from-the-environment")
    settings = load_settings(EXAMPLE)
    assert settings.store.url == "postgresql+asyncpg://hub@db/hub"
    assert settings.intake.batch_size == 64
    assert settings.plugins["webforms"]["forms"]["partner"]["secret"] == "from-the-environment"
    assert settings.plugins["webforms"]["forms"]["partner"]["pipeline"] == "wholesale"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[intake]\nbatch_sise = 10\n", "intake.batch_sise: unknown key"),
        ("[intake]\nbatch_size = 0\n", "intake.batch_size: Input should be greater than"),
        ('[hub]\ntimezone = "Moscow"\n', "hub.timezone: unknown timezone 'Moscow'"),
        ('[intake]\ndedupe_window = "ten minutes"\n', "intake.dedupe_window: not a duration"),
        ('[store]\nurl = "mysql://x"\n', "store.url: use sqlite+aiosqlite"),
        ("[hub\n", "config.toml"),
    ],
)
def test_an_invalid_file_names_the_key_and_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text))
    assert message in str(error.value)


def test_config_check_prints_the_error_and_exits_2(tmp_path):
    path = write(
        tmp_path, EXAMPLE.read_text().replace('pipeline = "wholesale"', 'pipeline = "retail"')
    )
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert "plugins.webforms.forms.partner" in result.output
    assert "'retail' is not configured" in result.output


def test_config_check_accepts_the_example():
    result = CliRunner().invoke(main, ["config", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_a_relative_sqlite_path_is_relative_to_the_config_file(tmp_path):
    path = write(tmp_path, '[store]\nurl = "sqlite+aiosqlite:///var/hub.db"\n')
    assert load_settings(path).store_url == f"sqlite+aiosqlite:///{tmp_path}/var/hub.db"


def test_secrets_are_hidden_when_settings_are_printed():
    settings = load_settings(EXAMPLE)
    assert "change-me-head-of-sales-token" not in repr(settings)
    assert "change-me-head-of-sales-token" not in str(settings.model_dump())


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["s", "m", "h", "d"]))
def test_durations_read_as_written(n, unit):
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * n
    assert parse_duration(f"{n}{unit}") == timedelta(seconds=seconds)


def test_compound_durations():
    assert parse_duration("1d 12h") == timedelta(hours=36)
    assert parse_duration("50ms") == timedelta(milliseconds=50)
    assert parse_duration(90) == timedelta(seconds=90)
