"""deploy/ stays in step with the code: every command it runs exists and takes its flags, every
variable it sets is one the settings read, every file it mounts is in the repository."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import get_commands, load_command_class

from otaproject.management.commands.runota import ROLES, _role_list

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SETTINGS_SOURCE = (REPO / "otaproject" / "settings.py").read_text()
SERVER_IMAGE = "ota-server"
# Read by the Python interpreter, not by the settings.
INTERPRETER_VARIABLES = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}


def _yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _shell_commands(argv: list[str]) -> list[list[str]]:
    """The commands of `argv`, looking into `sh -c "a && b"` scripts."""
    if argv[:2] == ["sh", "-c"]:
        script = " ".join(argv[2:])
        return [shlex.split(part) for part in re.split(r"&&|;", script) if part.strip()]
    return [argv]


def _dockerfile() -> tuple[list[list[str]], set[str]]:
    commands, variables = [], set()
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction in ("CMD", "ENTRYPOINT"):
            commands.append(json.loads(rest))
        elif instruction == "ENV":
            variables |= {item.split("=", 1)[0] for item in shlex.split(rest)}
    return commands, variables


def _compose() -> tuple[list[list[str]], set[str], dict[str, Any]]:
    [compose] = _yaml_documents(DEPLOY / "compose.yaml")
    commands, variables = [], set()
    for service in compose["services"].values():
        if not str(service.get("image", "")).startswith(SERVER_IMAGE):
            continue
        command = service.get("command")
        if command:
            commands.extend(
                _shell_commands(command if isinstance(command, list) else shlex.split(command))
            )
        variables |= set(service.get("environment", {}))
    return commands, variables, compose


def _kubernetes() -> tuple[list[list[str]], set[str], list[str]]:
    commands, variables, config_maps = [], set(), {}
    documents = [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in _yaml_documents(f)]
    for doc in documents:
        if doc["kind"] == "ConfigMap":
            config_maps[doc["metadata"]["name"]] = set(doc["data"])
    roles = []
    for doc in documents:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            assert container["image"].startswith(SERVER_IMAGE)
            argv = [*container.get("command", []), *container.get("args", [])]
            commands.extend(_shell_commands(argv))
            if "--role" in argv:
                roles.extend(_role_list(argv[argv.index("--role") + 1]))
            variables |= {item["name"] for item in container.get("env", [])}
            for source in container.get("envFrom", []):
                variables |= config_maps[source["configMapRef"]["name"]]
    return commands, variables, roles


def _manage_commands(commands: list[list[str]]) -> list[list[str]]:
    found = [argv[argv.index("manage.py") + 1 :] for argv in commands if "manage.py" in argv]
    assert found, "no manage.py command found"
    return found


def _check_command(argv: list[str]) -> None:
    name, args = argv[0], argv[1:]
    commands = get_commands()
    assert name in commands, f"manage.py {name}: no such command"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    parser.parse_args(args)  # a CommandError names an unknown flag or subcommand
    if name == "runota" and "--role" in args:
        _role_list(args[args.index("--role") + 1])


def _check_variable(name: str) -> None:
    if name in INTERPRETER_VARIABLES:
        return
    if f'"{name}"' in SETTINGS_SOURCE:
        return
    base = name.removesuffix("_FILE")
    assert name != base and f'env_secret("{base}"' in SETTINGS_SOURCE, (
        f"{name} is set by deploy/ but not read by otaproject/settings.py"
    )


@pytest.mark.parametrize("source", ["Dockerfile", "compose", "kubernetes"])
def test_every_command_exists_and_takes_its_flags(source: str) -> None:
    commands = {"Dockerfile": _dockerfile, "compose": _compose, "kubernetes": _kubernetes}[
        source
    ]()[0]
    for argv in _manage_commands(commands):
        _check_command(argv)


@pytest.mark.parametrize("source", ["Dockerfile", "compose", "kubernetes"])
def test_every_variable_set_is_read_by_the_settings(source: str) -> None:
    variables = {"Dockerfile": _dockerfile, "compose": _compose, "kubernetes": _kubernetes}[
        source
    ]()[1]
    assert variables
    for name in sorted(variables):
        _check_variable(name)


def test_the_check_catches_an_unknown_command_flag_and_variable() -> None:
    with pytest.raises(AssertionError):
        _check_command(["runotta"])
    with pytest.raises(Exception, match="--vehicle-prot"):
        _check_command(["runota", "--vehicle-prot", "1"])
    with pytest.raises(Exception, match="not a role"):
        _check_command(["runota", "--role", "vehicle"])
    with pytest.raises(AssertionError, match="OTA_NOT_A_SETTING"):
        _check_variable("OTA_NOT_A_SETTING")
    with pytest.raises(AssertionError):
        _check_variable("OTA_BIND_HOST_FILE")  # OTA_BIND_HOST is no secret


def test_kubernetes_runs_every_role_and_compose_mounts_files_that_exist() -> None:
    assert set(_kubernetes()[2]) == set(ROLES)
    compose = _compose()[2]
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).resolve().exists(), f"{volume}: no such file"
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")


def test_the_database_password_comes_from_its_secret_file(tmp_path, monkeypatch) -> None:
    import runpy

    secret = tmp_path / "db_password"
    secret.write_text("from-the-secret\n")
    monkeypatch.setenv("OTA_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DATABASE_URL", "postgres://ota@db.internal:5432/ota")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret))
    loaded = runpy.run_path(str(REPO / "otaproject" / "settings.py"))
    database = loaded["DATABASES"]["default"]
    assert (database["USER"], database["HOST"]) == ("ota", "db.internal")
    assert database["PASSWORD"] == "from-the-secret"
