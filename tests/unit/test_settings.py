"""mozaiks_bus.settings: sources, priority, validation and error reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from mozaiks_bus import connection
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import (
    DEFAULT_EMIT_BUFFER_SIZE,
    BusSettings,
    RouteRule,
    SinkConfig,
    load_settings,
    redact_url,
)

SINKS_TOML = """\
service = "billing"

[[sinks]]
name = "email"
url = "https://mail.example/hook"
patterns = ["notification.created"]

[[routes]]
pattern = "chat.*"
scopes = ["ui"]

[[sinks]]
# the second sink
name = "usage"
patterns = ["chat.usage_summary"]
url = "ftp://billing.example/usage"
timeout_s = 3
"""



def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def config_error(**kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return info.value


def test_defaults() -> None:
    settings = load_settings()
    assert settings.broker_url is None
    assert settings.service == "mozaiks"
    assert settings.prefix == "mozaiks"
    assert settings.routes == []
    assert settings.sinks == []
    assert settings.emit_buffer_size == DEFAULT_EMIT_BUFFER_SIZE == 10_000
    assert settings.emit_drop_policy == "drop_oldest"
    assert settings.subscriber_queue_size == 10_000
    assert settings.publish_timeout_s == 5.0
    assert settings.health_check_interval_s == 5.0
    assert settings.config_file is None


def test_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOZAIKS_BROKER_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("MOZAIKS_BUS_SERVICE", "api.v1")
    monkeypatch.setenv("MOZAIKS_BUS_PUBLISH_TIMEOUT_S", "2.5")
    settings = BusSettings()
    assert settings.broker_url == "redis://localhost:6379/0"
    assert settings.service == "api.v1"
    assert settings.publish_timeout_s == 2.5


def test_empty_env_var_counts_as_unset() -> None:
    assert load_settings(env={"MOZAIKS_BROKER_URL": ""}).broker_url is None


def test_default_file_is_read_when_present(tmp_path: Path) -> None:
    write(tmp_path / "mozaiks-bus.toml", SINKS_TOML.replace("ftp://", "https://"))
    settings = load_settings()
    assert settings.service == "billing"
    assert settings.config_file == Path("mozaiks-bus.toml")
    assert settings.routes == [RouteRule(pattern="chat.*", scopes=["ui"])]
    assert [sink.name for sink in settings.sinks] == ["email", "usage"]
    usage = settings.sinks[1]
    assert usage.timeout_s == 3.0
    assert usage.attempts == 5
    assert usage.format == "cloudevents"
    assert usage.headers == {}


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bus.toml", 'service = "from-file"\nprefix = "filepfx"\n')
    settings = load_settings(
        env={"MOZAIKS_BUS_CONFIG": str(path), "MOZAIKS_BUS_SERVICE": "from-env"}
    )
    assert settings.service == "from-env"
    assert settings.prefix == "filepfx"


def test_init_overrides_env(tmp_path: Path) -> None:
    path = write(tmp_path / "bus.toml", 'service = "from-file"\n')
    settings = load_settings(
        config_path=path, env={"MOZAIKS_BUS_SERVICE": "from-env"}, service="from-arg"
    )
    assert settings.service == "from-arg"


def test_list_fields_from_env_are_json() -> None:
    env = {"MOZAIKS_BUS_ROUTES": '[{"pattern": "theme_changed", "scopes": ["fanout"]}]'}
    assert load_settings(env=env).routes == [RouteRule(pattern="theme_changed", scopes=["fanout"])]
    error = config_error(env={"MOZAIKS_BUS_ROUTES": "[{"})
    assert (error.field, error.source) == ("routes", "env MOZAIKS_BUS_ROUTES")
    assert "JSON" in error.reason


def test_bad_env_value_names_field_variable_and_rule() -> None:
    error = config_error(env={"MOZAIKS_BUS_PREFIX": "tenant:{a}"})
    assert error.field == "prefix"
    assert error.source == "env MOZAIKS_BUS_PREFIX"
    assert "1-64 characters" in error.reason
    assert "prefix" in str(error)
    assert "env MOZAIKS_BUS_PREFIX" in str(error)


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("MOZAIKS_BUS_EMIT_BUFFER_SIZE", "0", "emit_buffer_size"),
        ("MOZAIKS_BUS_SUBSCRIBER_QUEUE_SIZE", "many", "subscriber_queue_size"),
        ("MOZAIKS_BUS_PUBLISH_TIMEOUT_S", "-1", "publish_timeout_s"),
        ("MOZAIKS_BUS_HEALTH_CHECK_INTERVAL_S", "inf", "health_check_interval_s"),
        ("MOZAIKS_BUS_EMIT_DROP_POLICY", "drop_all", "emit_drop_policy"),
        ("MOZAIKS_BUS_SERVICE", "has space", "service"),
        ("MOZAIKS_BUS_SERVICE", "x" * 65, "service"),
        ("MOZAIKS_BROKER_URL", "http://localhost", "broker_url"),
    ],
)
def test_bad_tunables(var: str, value: str, field: str) -> None:
    error = config_error(env={var: value})
    assert (error.field, error.source) == (field, f"env {var}")
    assert error.reason


def test_broker_url_schemes() -> None:
    for url in (
        "redis://h:6379/0",
        "rediss://h",
        "unix:///tmp/redis.sock",
        "memory://",
        "redis+sentinel://s1:26379/mymaster",
    ):
        assert load_settings(broker_url=url).broker_url == url


def test_bad_toml_value_top_level_key_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bus.toml", '# settings\n\nservice = "ok"\nprefix = "a:b"\n')
    error = config_error(config_path=path)
    assert error.field == "prefix"
    assert error.source == f"{path}:4"
    assert f"{path}:4" in str(error)


def test_bad_toml_value_in_second_sinks_block_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bus.toml", SINKS_TOML)
    error = config_error(config_path=path)
    assert error.field == "sinks.1.url"
    assert error.source == f"{path}:16"
    assert SINKS_TOML.splitlines()[15].startswith("url = ")
    assert "http" in error.reason


def test_bad_route_pattern_line(tmp_path: Path) -> None:
    text = (
        '[[routes]]\npattern = "chat.*"\nscopes = ["ui"]\n\n'
        '[[routes]]\nscopes = ["durable"]\npattern = "chat bad"\n'
    )
    path = write(tmp_path / "bus.toml", text)
    error = config_error(config_path=path)
    assert (error.field, error.source) == ("routes.1.pattern", f"{path}:7")
    assert "^[A-Za-z]" in error.reason


def test_missing_key_points_at_block_header(tmp_path: Path) -> None:
    text = '[[sinks]]\nname = "a"\nurl = "https://h/x"\npatterns = ["*"]\n\n[[sinks]]\nname = "b"\n'
    path = write(tmp_path / "bus.toml", text)
    error = config_error(config_path=path)
    assert error.field == "sinks.1.url"
    assert error.source == f"{path}:6"


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bus.toml", 'service = "ok"\nprefix = = "x"\n')
    error = config_error(config_path=path)
    assert error.field == "config file"
    assert error.source == f"{path}:2"
    assert "line 2" in error.reason


def test_unknown_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "bus.toml", 'service = "ok"\nprefixx = "typo"\n')
    error = config_error(config_path=path)
    assert error.field == "prefixx"
    assert error.source == f"{path}:2"
    assert "unknown key" in error.reason


def test_unknown_key_in_sink_rejected(tmp_path: Path) -> None:
    text = '[[sinks]]\nname = "a"\nurl = "https://h/x"\npatterns = ["*"]\nretries = 3\n'
    path = write(tmp_path / "bus.toml", text)
    error = config_error(config_path=path)
    assert (error.field, error.source) == ("sinks.0.retries", f"{path}:5")


def test_missing_config_env_file_rejected(tmp_path: Path) -> None:
    error = config_error(env={"MOZAIKS_BUS_CONFIG": str(tmp_path / "nope.toml")})
    assert error.field == "config file"
    assert error.source == "env MOZAIKS_BUS_CONFIG"
    assert "nope.toml" in error.reason


def test_missing_config_path_rejected(tmp_path: Path) -> None:
    error = config_error(config_path=tmp_path / "nope.toml")
    assert error.field == "config file"


def test_duplicate_sink_names(tmp_path: Path) -> None:
    sink = '[[sinks]]\nname = "{}"\nurl = "https://h/x"\npatterns = ["*"]\n'
    path = write(tmp_path / "bus.toml", sink.format("a") + sink.format("b") + sink.format("a"))
    error = config_error(config_path=path)
    assert error.field == "sinks.2.name"
    assert error.source == f"{path}:10"
    assert "unique" in error.reason


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Email"}, "name"),
        ({"patterns": ["chat..x"]}, "patterns"),
        ({"patterns": []}, "patterns"),
        ({"format": "bad format"}, "format"),
        ({"attempts": 0}, "attempts"),
        ({"url": "https://user:pw@h/x"}, "url"),
        ({"headers": {"Authorization": "Bearer abc"}}, "headers"),
        ({"headers": {"Idempotency-Key": "x"}}, "headers"),
        ({"api_key_header": "X-Api-Key"}, ""),
    ],
)
def test_bad_sink_fields(changes: dict[str, object], field: str) -> None:
    sink = {"name": "email", "url": "https://h/x", "patterns": ["*"], **changes}
    error = config_error(sinks=[sink])
    assert error.field == f"sinks.0.{field}".rstrip(".")
    assert error.source == "argument"


def test_sink_accepts_named_format_and_env_names() -> None:
    sink = SinkConfig(
        name="dotnet_billing",
        url="http://127.0.0.1:5000/usage",
        patterns=["chat.*"],
        format="billing-usage",
        signing_secret_env="BILLING_SECRET",
        api_key_header="X-Api-Key",
        api_key_env="BILLING_API_KEY",
        headers={"X-Tenant": "acme"},
    )
    assert load_settings(sinks=[sink]).sinks == [sink]


def test_secret_values_never_in_messages(tmp_path: Path) -> None:
    secret = "hunter2-Sup3rS3cret"
    error = config_error(env={"MOZAIKS_BROKER_URL": f"ftp://user:{secret}@host:1/0"})
    assert error.field == "broker_url"
    assert secret not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__

    text = (
        '[[sinks]]\nname = "a"\nurl = "https://h/x"\npatterns = ["*"]\n'
        f'signing_secret_env = "{secret}!"\n'
    )
    path = write(tmp_path / "bus.toml", text)
    error = config_error(config_path=path)
    assert error.field == "sinks.0.signing_secret_env"
    assert error.source == f"{path}:5"
    assert secret not in str(error)

    path = write(tmp_path / "bus.toml", text.replace("signing_secret_env", "signing_secret"))
    error = config_error(config_path=path)
    assert error.field == "sinks.0.signing_secret"
    assert "signing_secret_env" in error.reason
    assert secret not in str(error)


def test_password_masked_in_repr_and_dump() -> None:
    url = "redis://app:hunter2@redis.internal:6380/2?password=hunter3&db=2"
    settings = load_settings(env={"MOZAIKS_BROKER_URL": url})
    assert settings.broker_url == url
    assert settings.redacted_broker_url == "redis://app:***@redis.internal:6380/2?password=***&db=2"
    for text in (repr(settings), str(settings), str(settings.redacted_dump())):
        assert "hunter2" not in text
        assert "hunter3" not in text
        assert "redis.internal:6380" in text


def test_settings_redact_with_the_one_connection_rule() -> None:
    # one rule for the package (connection.redact_url; its cases are in test_connection)
    assert redact_url is connection.redact_url
    assert redact_url("redis://u:p/a@ss@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("unix:///tmp/r.sock?password=pw&db=1") == \
        "unix:///tmp/r.sock?password=***&db=1"
    assert redact_url("redis://h?token=t0k&db=1") == "redis://h?token=***&db=1"
    assert load_settings().redacted_broker_url is None


@pytest.mark.parametrize("url", ["rediss+sentinel://h:26379/m", "redis://h:99999", "http://h"])
def test_settings_reject_a_broker_url_the_connection_layer_rejects(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(broker_url=url)
    assert caught.value.field == "broker_url"
    with pytest.raises(ConfigError):
        connection.parse_broker_url(url)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.service = "other"
    assert settings.model_copy(update={"service": "other"}).service == "other"


def test_keys_follow_the_prefix_of_a_copy() -> None:
    settings = load_settings(prefix="first")
    assert settings.keys.stream("a.b") == "first:stream:{a.b}"
    assert settings.model_copy(update={"prefix": "second"}).keys.prefix == "second"
