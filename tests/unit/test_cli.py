"""The mozaiks-bus command line: --version, --help, config, schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mozaiks_bus._version import __version__
from mozaiks_bus.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mozaiks-bus {__version__}"


def test_help_lists_commands(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "config" in result.stdout
    assert "schema" in result.stdout


def test_config_prints_json_with_masked_password(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOZAIKS_BROKER_URL", "redis://app:hunter2@localhost:6379/0")
    monkeypatch.setenv("MOZAIKS_BUS_SERVICE", "billing")
    result = runner.invoke(cli, ["config"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["broker_url"] == "redis://app:***@localhost:6379/0"
    assert data["service"] == "billing"
    assert data["prefix"] == "mozaiks"
    assert "hunter2" not in result.output


def test_config_reads_file_option(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text('prefix = "tenant_a"\n', encoding="utf-8")
    result = runner.invoke(cli, ["--config", str(path), "config"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prefix"] == "tenant_a"
    assert str(path) in result.stderr


def test_config_bad_file_exits_2_with_field_and_line(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "mozaiks-bus.toml").write_text(
        'service = "ok"\n\nprefix = "has:colon"\n', encoding="utf-8"
    )
    result = runner.invoke(cli, ["config"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "prefix" in result.stderr
    assert "mozaiks-bus.toml:3" in result.stderr


def test_schema(runner: CliRunner, tmp_path: Path) -> None:
    pytest.importorskip("mozaiks_bus.catalog")
    result = runner.invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert "x-mozaiks-events" in json.dumps(schema)

    out = tmp_path / "schema.json"
    result = runner.invoke(cli, ["schema", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8")) == schema


@pytest.mark.parametrize("wrong_id", ["0198c2e4-6f0a-7cc1-9d1e-3f1f0f4e0a11", "not-an-id"])
def test_a_wrong_sink_dead_letter_id_gets_one_line_naming_it_and_no_redis_text(
    runner: CliRunner, tmp_path: Path, memory_url: str, wrong_id: str,
) -> None:
    config = tmp_path / "bus.toml"
    config.write_text(f'broker_url = "{memory_url}"\n[[sinks]]\nname = "email"\n'
                      'url = "https://email.example/hook"\npatterns = ["notification.*"]\n')
    result = runner.invoke(cli, ["--config", str(config), "dlq", "replay", "--sink", "email",
                                 wrong_id])
    assert result.exit_code != 0
    assert wrong_id in result.output
    assert "no dead letter with entry id or event id" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Invalid stream ID" not in result.output
    assert "Traceback" not in result.output
