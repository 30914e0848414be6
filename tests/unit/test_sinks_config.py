"""Sink configuration: new SinkConfig fields, start-up checks, secrets, keys, exports, CLI."""

from __future__ import annotations

import base64
import importlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from mozaiks_bus.cli import cli
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import SinkConfig, load_settings
from mozaiks_bus.sinks import check_sinks, sink_secrets

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
SINK = {"name": "email", "url": "https://email.example/send", "patterns": ["notification.*"]}


def sink(**changes: object) -> SinkConfig:
    return SinkConfig.model_validate({**SINK, **changes})


def config_error(**changes: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(sinks=[{**SINK, **changes}], env={})
    return info.value


def test_new_fields_have_defaults() -> None:
    config = sink()
    assert (config.method, config.format_options) == ("POST", {})
    assert (config.circuit_failures, config.circuit_open_s, config.circuit_ramp_s) == (5, 30, 30)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"method": "GET"}, "method"),
        ({"circuit_failures": -1}, "circuit_failures"),
        ({"circuit_open_s": 0}, "circuit_open_s"),
        ({"format_options": {"api_token": "x"}}, "format_options"),
        ({"format_options": {"App-Id": "x"}}, "format_options"),
        ({"name": "x" * 60}, "name"),
    ],
)
def test_bad_new_fields_name_the_field(changes: dict[str, object], field: str) -> None:
    error = config_error(**changes)
    assert error.field == f"sinks.0.{field}"


def test_check_sinks_rejects_an_unknown_format_naming_the_field() -> None:
    settings = load_settings(sinks=[SINK, {**SINK, "name": "b", "format": "billing_usage"}],
                             env={})
    with pytest.raises(ConfigError) as info:
        check_sinks(settings, {})
    assert info.value.field == "sinks.1.format"
    assert "billing-usage" in info.value.reason


def test_check_sinks_needs_every_named_variable_and_never_shows_values() -> None:
    settings = load_settings(sinks=[{**SINK, "auth_bearer_env": "EMAIL_KEY",
                                     "signing_secret_env": "EMAIL_SECRET"}], env={})
    with pytest.raises(ConfigError) as info:
        check_sinks(settings, {"EMAIL_SECRET": SECRET})
    assert info.value.field == "sinks.0.auth_bearer_env"
    assert "EMAIL_KEY" in info.value.reason
    with pytest.raises(ConfigError) as info:
        check_sinks(settings, {"EMAIL_KEY": "tok", "EMAIL_SECRET": "whsec_%%%"})
    assert info.value.field.startswith("sinks.0.signing_secret_env")
    assert "%%%" not in str(info.value)
    check_sinks(settings, {"EMAIL_KEY": "tok", "EMAIL_SECRET": SECRET})


def test_secrets_are_read_at_call_time_and_hidden_from_repr() -> None:
    config = sink(auth_bearer_env="A", api_key_header="X-Key", api_key_env="B",
                  signing_secret_env="C")
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    secrets = sink_secrets(config, {"A": "tok", "B": "key", "C": f"{SECRET} {other}"})
    assert (secrets.bearer, secrets.api_key) == ("tok", "key")
    assert secrets.signing_keys == (b"s" * 32, b"o" * 32)
    assert "tok" in secrets.values
    assert SECRET.removeprefix("whsec_") in secrets.values
    assert "tok" not in repr(secrets)


def test_sink_keys_share_the_sink_tag_and_job_ids_are_deterministic() -> None:
    keys = Keys("acme")
    assert keys.sink_state("email") == "acme:sink:{email}:state"
    assert keys.sink_circuit("email") == "acme:sink:{email}:circuit"
    assert keys.sink_pending("email") == "acme:sink:{email}:pending"
    assert keys.sink_dead_letters("email") == "acme:sink:{email}:dlq"
    assert keys.sink_since("email") == "acme:sink:{email}:since"
    assert keys.sink_group("email") == "sink.email"
    assert keys.sink_queue() == "acme-sinks"
    assert keys.sink_process("h:1/2") == "acme:sink-proc:{h%3A1%2F2}"
    job = keys.sink_job_id("email", "01J:weird id/{x}")
    assert job == keys.sink_job_id("email", "01J:weird id/{x}")
    assert job.startswith("acme-sink-email-")
    assert job.replace("-", "").isalnum()
    assert job != keys.sink_job_id("email", "01J:weird id/{x}", replay="1-0")
    assert job != Keys("other").sink_job_id("email", "01J:weird id/{x}")
    with pytest.raises(ConfigError):
        keys.sink_state("Email")


@pytest.mark.parametrize("module", ["", ".circuit", ".config", ".dead_letters", ".dispatcher",
                                    ".formats", ".job", ".policy", ".reconcile", ".signing",
                                    ".state", ".worker"])
def test_exported_names_are_sorted_and_exist(module: str) -> None:
    mod = importlib.import_module("mozaiks_bus.sinks" + module)
    names = mod.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert all(hasattr(mod, name) for name in names)


@pytest.fixture
def isolated(tmp_path: Path) -> Path:
    """The test's working directory (tests/unit/conftest.py cleaned MOZAIKS_* and cd'd)."""
    return tmp_path


def test_cli_worker_rejects_bad_sinks_before_connecting(isolated: Path) -> None:
    path = isolated / "bus.toml"
    path.write_text('broker_url = "redis://127.0.0.1:1"\n[[sinks]]\nname = "a"\n'
                    'url = "http://127.0.0.1:9/x"\npatterns = ["a.b"]\nformat = "nope"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "worker"])
    assert result.exit_code == 2
    assert "sinks.0.format" in result.output


def test_cli_worker_needs_a_real_redis(isolated: Path) -> None:
    path = isolated / "bus.toml"
    path.write_text('broker_url = "memory://x"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "worker"])
    assert result.exit_code == 2
    assert "broker_url" in result.output


ROOT = Path(__file__).resolve().parents[2]


def test_the_example_worker_config_is_valid() -> None:
    settings = load_settings(config_path=ROOT / "worker" / "mozaiks-bus.example.toml", env={})
    names = [sink.name for sink in settings.sinks]
    assert names == ["email", "usage-ingest", "billing-usage", "insights"]
    env_names = {var for sink in settings.sinks
                 for var in (sink.auth_bearer_env, sink.api_key_env, sink.signing_secret_env)
                 if var}
    assert env_names == {"EMAIL_SERVICE_API_KEY", "MOZAIKS_PLATFORM_TOKEN",
                         "INSIGHTS_INTERNAL_API_KEY"}
    check_sinks(settings, dict.fromkeys(env_names, "value"))
    assert {rule.pattern for rule in settings.routes} == {"chat.usage_delta"}


def test_the_worker_folder_is_not_a_package() -> None:
    assert not (ROOT / "worker" / "__init__.py").exists()
    assert (ROOT / "worker" / "main.py").is_file()
