"""docker-compose.yml and the Dockerfile match what the CLI and the settings offer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from mozaiks_bus.cli import cli
from mozaiks_bus.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def check_command(args: list[str]) -> None:
    """Every word of a container command is a real CLI command or option of it."""
    words = args[1:] if args and args[0] == "mozaiks-bus" else list(args)
    group: click.Command = cli
    while isinstance(group, click.Group) and words and not words[0].startswith("-"):
        group = group.commands[words.pop(0)]  # KeyError: no such command
    offered = {opt for param in group.params for opt in getattr(param, "opts", [])}
    for word in words:
        if word.startswith("--"):
            assert word in offered, f"{group.name} has no option {word}"


def test_services_commands_and_health_checks_match_the_cli(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "api", "worker"}
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert services["redis"]["volumes"]
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    check_command(services["api"]["command"])
    check_command(services["worker"]["command"])
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    worker_check = services["worker"]["healthcheck"]["test"]
    check_command(worker_check[worker_check.index("mozaiks-bus"):])
    assert "ports" not in services["worker"]
    ports = services["api"]["ports"]
    assert ports == ["8080-8089:8080"]  # replicas share a documented host port range


def test_the_environment_only_configuration_loads(compose: dict[str, Any]) -> None:
    # compose interpolates ${VAR:-default}; with VAR unset the default is what arrives
    env = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
           for k, v in compose["x-bus-env"].items()}
    env["MOZAIKS_API_TOKEN"] = "not-a-real-token"
    settings = load_settings(env=env)
    assert settings.amqp_url is None  # an empty MOZAIKS_AMQP_URL: the bridge stays off
    assert settings.broker_url == "redis://redis:6379/0"
    assert [token.name for token in settings.api_tokens] == ["ops"]
    assert settings.api_tokens[0].token_env == "MOZAIKS_API_TOKEN"


def test_the_image_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mozaiks-bus"]' in dockerfile
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]' in dockerfile
    check_command(["serve", "--host", "0.0.0.0", "--port", "8080"])


def test_docker_compose_config_validates_the_file() -> None:
    if shutil.which("docker-compose"):
        command = ["docker-compose", "config", "-q"]
    elif shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode == 0:
        command = ["docker", "compose", "config", "-q"]
    else:
        pytest.skip("no docker-compose / docker compose client to validate with")
    env = dict(os.environ, MOZAIKS_API_TOKEN="x")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60,
                             check=False, env={k: v for k, v in os.environ.items()
                                               if k != "MOZAIKS_API_TOKEN"})
    assert missing.returncode != 0  # a token is mandatory for a non-loopback API
    assert "MOZAIKS_API_TOKEN" in missing.stderr
