"""Misspelled MOZAIKS_* variables are reported (settings, ``config``, ``doctor``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from mozaiks_bus.cli import cli
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.ops.doctor import run_checks
from mozaiks_bus.settings import BusSettings, env_names, load_settings
from mozaiks_bus.settings.env_names import Misspelling, find_misspellings, known_env_names

LOGGER = "mozaiks_bus.settings"


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test is a new process as far as 'warn once' goes."""
    monkeypatch.setattr(env_names, "_warned", set())


@pytest.mark.parametrize(("name", "meant"), [
    ("MOZAIKS_BROKR_URL", "MOZAIKS_BROKER_URL"),
    ("MOZAIKS_BROKER_URI", "MOZAIKS_BROKER_URL"),
    ("MOZAIKS_BUS_PREFX", "MOZAIKS_BUS_PREFIX"),
    ("MOZAIKS_QUEUE_URL", "MOZAIKS_BUS_QUEUE_URL"),
    ("MOZAIKS_BUS_API_TOKEN", "MOZAIKS_BUS_API_TOKENS"),
    ("MOZAIKS_AMPQ_URL", "MOZAIKS_AMQP_URL"),
    ("MOZAIKS_BUS_CONFG", "MOZAIKS_BUS_CONFIG"),
    ("MOZAIKS_BUS_HOMEDIR", "MOZAIKS_BUS_HOME"),
    ("mozaiks_broker_url", "MOZAIKS_BROKER_URL"),  # names are case-sensitive
])
def test_a_close_match_names_the_intended_variable(name: str, meant: str) -> None:
    assert find_misspellings(BusSettings, env={name: "x"}) == [Misspelling(name, meant)]
    assert f"did you mean {meant}?" in str(Misspelling(name, meant))


@pytest.mark.parametrize("name", [
    "MOZAIKS_BROKER_URL", "MOZAIKS_BUS_PREFIX", "MOZAIKS_BUS_CONFIG", "MOZAIKS_AMQP_URL",
    "MOZAIKS_BUS_AMQP_URL", "MOZAIKS_BUS_HOME",  # ours
    "MOZAIKS_PLATFORM_TOKEN", "MOZAIKS_PLATFORM_URL", "MOZAIKS_APP_ID", "MOZAIKS_ENV",
    "MOZAIKS_BUS_LOG_LEVEL", "MOZAIKS_TEST_REQUIRE_BROWSER",  # other components'
    "BROKR_URL", "REDIS_URL",  # not ours at all
])
def test_known_and_unrelated_variables_are_left_alone(name: str) -> None:
    assert find_misspellings(BusSettings, env={name: "x"}) == []


def test_every_setting_variable_is_known() -> None:
    known = known_env_names(BusSettings.model_fields)
    assert "MOZAIKS_BROKER_URL" in known
    assert "MOZAIKS_BUS_STREAM_MAX_LEN" in known
    assert find_misspellings(BusSettings, env=dict.fromkeys(known, "1")) == []


def test_an_empty_variable_and_a_name_the_settings_use_are_not_reported() -> None:
    assert find_misspellings(BusSettings, env={"MOZAIKS_BROKR_URL": ""}) == []
    settings = load_settings(env={
        "MOZAIKS_BUS_API_TOKEN": "s3cret-value",  # a close match, but a token names it
        "MOZAIKS_BUS_API_TOKENS": '[{"name": "ops", "token_env": "MOZAIKS_BUS_API_TOKEN", '
                                  '"scopes": ["admin"]}]',
    })
    assert find_misspellings(settings, env={"MOZAIKS_BUS_API_TOKEN": "s3cret-value"}) == []


def test_loading_logs_one_warning_per_variable_without_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"MOZAIKS_BROKR_URL": "redis://:hunter2@redis:6379/0"}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        settings = load_settings(env=env)
        load_settings(env=env)  # once per process, not per load
    assert settings.broker_url is None  # the misspelled variable really is ignored
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert warnings == ["MOZAIKS_BROKR_URL is not a mozaiks-bus variable and is ignored; "
                        "did you mean MOZAIKS_BROKER_URL?"]
    assert "hunter2" not in caplog.text


def test_a_failing_load_still_names_the_misspelling(caplog: pytest.LogCaptureFixture) -> None:
    env = {"MOZAIKS_BUS_PREFX": "p", "MOZAIKS_BUS_EMIT_BUFFER_SIZE": "zero"}
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(ConfigError):
        load_settings(env=env)
    assert "did you mean MOZAIKS_BUS_PREFIX?" in caplog.text


def test_config_command_lists_the_misspelling_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./mozaiks-bus.toml
    monkeypatch.setenv("MOZAIKS_BROKR_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 0, result.output
    line = ("warning: MOZAIKS_BROKR_URL is not a mozaiks-bus variable and is ignored; "
            "did you mean MOZAIKS_BROKER_URL?")
    assert result.stderr.count("did you mean MOZAIKS_BROKER_URL?") == 1
    assert line in result.stderr.splitlines()
    assert '"broker_url": null' in result.stdout


def test_doctor_warns_about_the_misspelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOZAIKS_BUS_PREFX", "p")
    checks = run_checks(load_settings(env={"MOZAIKS_BROKER_URL": "memory://doctor"}))
    [found] = [check for check in checks if check.name == "environment"]
    assert found.status == "warn"
    assert "MOZAIKS_BUS_PREFIX" in found.found
    assert found.hint == "rename it to MOZAIKS_BUS_PREFIX"
