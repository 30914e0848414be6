"""docker-compose.yml, its sinks override and the Dockerfiles match what the CLI and the
settings offer, and the stack starts with only the documented variables."""

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
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.server.serve import check_bind
from mozaiks_bus.settings import BusSettings, load_settings
from mozaiks_bus.settings.env_names import find_misspellings, known_env_names
from mozaiks_bus.sinks.config import check_sinks
from mozaiks_bus.sinks.worker import WorkerOptions

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SINKS = ROOT / "worker" / "compose.sinks.yml"
EXAMPLE_TOML = ROOT / "worker" / "mozaiks-bus.example.toml"
TOKEN = "a-long-random-token-0123456789abcdef"  # what .env holds
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` with ``env``."""
    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        found = env.get(name, "")
        if kind == "?" and not found:
            raise ConfigError(name, f"compose refuses to start: {rest}")
        return found or (rest if kind == "-" else "")
    return _VAR.sub(one, value)


def container_env(files: list[dict[str, Any]], service: str,
                  env: dict[str, str]) -> dict[str, str]:
    """The environment a service's container gets (files merged in order)."""
    merged: dict[str, str] = {}
    for data in files:
        merged.update({k: str(v) for k, v in
                       (data["services"].get(service, {}).get("environment") or {}).items()})
    return {name: interpolate(value, env) for name, value in merged.items()}


def check_command(args: list[str]) -> None:
    """Every word of a container command is a real CLI command or option of it."""
    words = args[1:] if args and args[0] == "mozaiks-bus" else list(args)
    group: click.Command = cli
    while isinstance(group, click.Group) and words and not words[0].startswith("-"):
        group = group.commands[words.pop(0)]  # KeyError: no such command
    offered = {opt for param in group.params for opt in getattr(param, "opts", [])}
    for word in words:
        if word.startswith("-"):
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
    # a liveness probe of the worker itself (doctor passed with the worker dead)
    assert worker_check[worker_check.index("mozaiks-bus"):] == [
        "mozaiks-bus", "worker", "--check"]
    check_command(worker_check[worker_check.index("mozaiks-bus"):])
    assert services["worker"]["healthcheck"]["start_period"]
    assert "ports" not in services["worker"]
    assert services["api"]["ports"] == ["8080-8089:8080"]  # replicas share a port range
    assert services["worker"]["image"] == services["api"]["image"]
    assert "build" in services["worker"]  # never pulled from a registry


def test_redis_fsyncs_every_write_unless_switched(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    fsync = command[command.index("--appendfsync") + 1]
    assert interpolate(fsync, {}) == "always"
    assert interpolate(fsync, {"REDIS_APPENDFSYNC": "everysec"}) == "everysec"


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, SINKS]], ids=["base", "sinks"])
def test_every_mozaiks_variable_is_a_real_setting(files: list[Path]) -> None:
    """Each MOZAIKS_* name a service gets is read by the settings (a field, the config
    path) or named by them (a token's token_env, a sink's *_env); nothing else."""
    datas = [load(path) for path in files]
    known = known_env_names(BusSettings.model_fields)
    example = load_settings(config_path=EXAMPLE_TOML, env={})
    named_by_sinks = {str(getattr(sink, key)) for sink in example.sinks
                      for key in ("auth_bearer_env", "api_key_env", "signing_secret_env")
                      if getattr(sink, key)}
    env = {"MOZAIKS_API_TOKEN": TOKEN, **dict.fromkeys(named_by_sinks, "s3cret")}
    for service in ("api", "worker"):
        names = container_env(datas, service, env)
        settings = load_settings(env={k: v for k, v in names.items()  # tokens only
                                      if k in known and k != "MOZAIKS_BUS_CONFIG"})
        named = {token.token_env for token in settings.api_tokens}
        for name in names:
            if name.startswith("MOZAIKS_"):
                assert name in known | named | named_by_sinks, f"{service}: {name}"
            else:  # a secret only a sink of the example names
                assert name in named_by_sinks, f"{service}: {name}"


def test_the_worker_and_api_start_with_only_the_documented_variables(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exactly what the containers would load: .env holds only the token; the working
    directory (/app in the image) has no mozaiks-bus.toml. No ConfigError, no sink,
    nothing that looks misspelled, and the API may bind 0.0.0.0."""
    monkeypatch.chdir(tmp_path)
    for service in ("worker", "api"):
        env = container_env([compose], service, {"MOZAIKS_API_TOKEN": TOKEN})
        settings = load_settings(env=env)
        assert settings.config_file is None  # the example sinks are not loaded
        assert settings.sinks == []
        assert settings.amqp_url is None  # an empty MOZAIKS_AMQP_URL: no bridge
        assert settings.broker_url == "redis://redis:6379/0"
        assert settings.queue_redis_url == "redis://redis:6379/0"
        assert find_misspellings(settings, env) == []
        check_sinks(settings, environ=env)  # what the worker checks first
        assert [token.name for token in settings.api_tokens] == ["ops"]
    processes = compose["services"]["worker"]["command"]
    WorkerOptions(processes=int(processes[processes.index("--processes") + 1]))
    for name in [k for k in os.environ if k.startswith("MOZAIKS_")]:
        monkeypatch.delenv(name)
    for name, value in container_env([compose], "api", {"MOZAIKS_API_TOKEN": TOKEN}).items():
        monkeypatch.setenv(name, value)
    assert check_bind(load_settings(), "0.0.0.0") is None


def test_sinks_load_only_through_the_override_with_their_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """worker/compose.sinks.yml mounts ./mozaiks-bus.toml (here: a copy of the example)
    and passes every secret the example's sinks name; without one, compose stops."""
    datas = [load(COMPOSE), load(SINKS)]
    mounted = tmp_path / "mozaiks-bus.toml"
    shutil.copyfile(EXAMPLE_TOML, mounted)
    [volume] = datas[1]["services"]["worker"]["volumes"]
    assert volume.split(":")[0] == "./mozaiks-bus.toml"
    inside = volume.split(":")[1]
    secrets = {"EMAIL_SERVICE_API_KEY": "a", "MOZAIKS_PLATFORM_TOKEN": "b",
               "INSIGHTS_INTERNAL_API_KEY": "c"}
    env = container_env(datas, "worker", {"MOZAIKS_API_TOKEN": TOKEN, **secrets})
    assert env["MOZAIKS_BUS_CONFIG"] == inside
    settings = load_settings(env={**env, "MOZAIKS_BUS_CONFIG": str(mounted)})
    assert {sink.name for sink in settings.sinks} >= {"email", "usage-ingest"}
    check_sinks(settings, environ=env)  # every secret the example names is passed
    with pytest.raises(ConfigError) as refused:
        container_env(datas, "worker", {"MOZAIKS_API_TOKEN": TOKEN})
    assert refused.value.field == "EMAIL_SERVICE_API_KEY"


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(),
                                re.MULTILINE))
    used = {match.group(1) for match in _VAR.finditer(COMPOSE.read_text())}
    assert used <= documented, used - documented
    assert "MOZAIKS_API_TOKEN" in documented


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", ".env", ".mozaiks-bus", "**/__pycache__"} <= ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for path in copied.split():
            assert path not in ignored, f"the Dockerfile copies {path}, which is ignored"


def test_the_image_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mozaiks-bus"]' in dockerfile
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]' in dockerfile
    check_command(["serve", "--host", "0.0.0.0", "--port", "8080"])
    worker_image = (ROOT / "worker" / "Dockerfile").read_text()
    check = re.search(r'HEALTHCHECK .*\n\s*CMD \[(.*)\]', worker_image)
    assert check is not None
    check_command([word.strip(' "') for word in check.group(1).split(",")])


def _compose_client() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("no docker-compose / docker compose client to validate with")


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_docker_compose_config_validates_the_files(tmp_path: Path) -> None:
    client = _compose_client()
    bare = {k: v for k, v in os.environ.items()
            if not k.startswith("MOZAIKS_") and k != "REDIS_APPENDFSYNC"}
    missing = _run([*client, "config", "-q"], bare)
    assert missing.returncode != 0  # a token is mandatory for a non-loopback API
    assert "MOZAIKS_API_TOKEN" in missing.stderr
    # the README's way: the token kept in an env file, read by every later command
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"MOZAIKS_API_TOKEN={TOKEN}\n")
    for command in (["config", "-q"], ["config", "--services"]):
        result = _run([*client, "--env-file", str(dotenv), *command], bare)
        assert result.returncode == 0, result.stderr
    sinks = [*client, "--env-file", str(dotenv), "-f", "docker-compose.yml",
             "-f", "worker/compose.sinks.yml", "config", "-q"]
    assert _run(sinks, bare).returncode != 0  # the sinks' secrets are required
    secrets = {"EMAIL_SERVICE_API_KEY": "a", "MOZAIKS_PLATFORM_TOKEN": "b",
               "INSIGHTS_INTERNAL_API_KEY": "c"}
    result = _run(sinks, {**bare, **secrets})
    assert result.returncode == 0, result.stderr
