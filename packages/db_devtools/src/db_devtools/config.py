"""The development configuration: the runtime's ``DbConfig`` plus where Postgres comes
from and where the project lives. Built once by a front end with ``from_environ``."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from shared_db.config import DbConfig
from shared_db.errors import ConfigurationError
from shared_db.services import SERVICES, env_prefix

BACKENDS = ("auto", "docker", "local")
PARENT_DEATH = ("auto", "prctl", "watchdog")
COMPOSE_PG_PORT = 54329


def find_project_root(cwd: Path) -> Path:
    """The checkout holding this package (a develop install), else ``cwd``."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "packages" / "shared_db").is_dir() and (parent / "pyproject.toml").exists():
            return parent
    return cwd


@dataclass(frozen=True)
class DevConfig(DbConfig):
    project_root: Path = Path(".")
    # Where Postgres comes from when no URL is configured: auto = Docker if an engine
    # answers, else the local server.
    backend: str = "auto"
    docker_host: str = "unix:///var/run/docker.sock"
    compose_pg_port: int = COMPOSE_PG_PORT
    compose_password: str = "postgres"
    # <SERVICE>_DB_PASSWORD: the service roles' passwords on the compose Postgres (the
    # same variables docker/compose.yaml reads; default: the service's name).
    compose_role_passwords: tuple[tuple[str, str], ...] = ()
    pg_user: str | None = None  # the account the local server runs as, when we are root
    pg_bin: Path | None = None  # a PostgreSQL bin folder to use instead of the wheel's
    # How a throwaway server dies with the test run: prctl (Linux) or a watchdog process.
    parent_death: str = "auto"
    main_branch: str | None = None  # the branch that holds released revisions
    cache_dir: Path | None = None  # the history cache; None: no cache

    @property
    def state_dir(self) -> Path:
        """The local server's state (git-ignored)."""
        return self.project_root / ".postgres"

    @property
    def run_dir(self) -> Path:
        """``invoke up``'s pid files and logs (git-ignored)."""
        return self.project_root / ".run"

    def compose_role_password(self, service: str) -> str:
        return dict(self.compose_role_passwords).get(service) or service

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: Any) -> Self:
        values: dict[str, Any] = {
            "project_root": Path(environ["SIGNALMARKET_ROOT"])
            if environ.get("SIGNALMARKET_ROOT")
            else find_project_root(Path.cwd()),
            "backend": _choice("SIGNALMARKET_POSTGRES", environ, BACKENDS),
            "parent_death": _choice("SIGNALMARKET_PARENT_DEATH", environ, PARENT_DEATH),
            "docker_host": environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock",
            "compose_password": environ.get("POSTGRES_PASSWORD") or "postgres",
            "compose_role_passwords": tuple(
                (service, environ[f"{env_prefix(service)}_DB_PASSWORD"])
                for service in SERVICES
                if environ.get(f"{env_prefix(service)}_DB_PASSWORD")
            ),
            "pg_user": environ.get("SIGNALMARKET_PG_USER") or None,
            "main_branch": environ.get("SIGNALMARKET_MAIN_BRANCH") or None,
        }
        if environ.get("SIGNALMARKET_PG_BIN"):
            values["pg_bin"] = Path(environ["SIGNALMARKET_PG_BIN"])
        port = environ.get("SIGNALMARKET_PG_PORT")
        if port:
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError(
                    f"SIGNALMARKET_PG_PORT={port!r} is not a TCP port", kind="invalid_setting"
                )
            values["compose_pg_port"] = int(port)
        cache = environ.get("XDG_CACHE_HOME")
        values["cache_dir"] = (Path(cache) if cache else Path.home() / ".cache") / "signalmarket"
        values.update(overrides)
        return super().from_environ(environ, **values)


def _choice(variable: str, environ: Mapping[str, str], choices: tuple[str, ...]) -> str:
    value = (environ.get(variable) or choices[0]).lower()
    if value not in choices:
        raise ConfigurationError(
            f"{variable}={value!r} is not one of {', '.join(choices)}", kind="invalid_setting"
        )
    return value
