"""The three ways to run the project: Poetry, the Nix shell, and containers.

No Docker engine is needed: the compose file, the Dockerfile and the init script are
checked as files (and the init script is run against a real Postgres); the flake is
parsed and evaluated with Nix where ``nix-instantiate`` exists.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from db_devtools.config import COMPOSE_PG_PORT, DevConfig
from db_devtools.errors import ProvisioningError
from db_devtools.provisioning import docker
from db_devtools.provisioning.binaries import find_bin_dir
from db_devtools.provisioning.resolve import local_server
from helpers import ROOT, invoke, sql
from shared_db.services import PORTS, SERVICES
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, make_url

COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
INIT_SCRIPT = ROOT / "docker" / "initdb" / "10-service-databases.sh"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
HOST_PORTS = {
    "api_gateway": 8000,
    "signal_ingestion": 8001,
    "scoring_engine": 8002,
    "marketplace_publisher": 8003,
}
SYSTEMS = ("x86_64-linux", "aarch64-linux", "x86_64-darwin", "aarch64-darwin")


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` with nothing set in the environment."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


# -- docker/compose.yaml ------------------------------------------------------------


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "docker" / "schema" / "compose-spec.json").read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert errors == []


def test_postgres_is_what_the_docker_resolution_connects_to(compose: dict[str, Any]) -> None:
    postgres = compose["services"][docker.COMPOSE_SERVICE]
    # db_devtools.provisioning.docker connects to postgres:<POSTGRES_PASSWORD or "postgres">
    # @127.0.0.1:<SIGNALMARKET_PG_PORT or 54329> as the superuser.
    assert postgres["ports"] == ["127.0.0.1:${SIGNALMARKET_PG_PORT:-54329}:5432"]
    assert interpolate(postgres["ports"][0]) == f"127.0.0.1:{COMPOSE_PG_PORT}:5432"
    environment = postgres["environment"]
    assert environment["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-postgres}"
    assert environment.get("POSTGRES_USER", "postgres") == "postgres"
    # The same defaults in the development configuration, and the same variables.
    expected = docker.compose_url(DevConfig.from_environ({}))
    assert (expected.username, expected.password) == ("postgres", "postgres")
    assert (expected.host, expected.port) == ("127.0.0.1", COMPOSE_PG_PORT)
    configured = docker.compose_url(
        DevConfig.from_environ({"SIGNALMARKET_PG_PORT": "6000", "POSTGRES_PASSWORD": "pw"})
    )
    assert (configured.port, configured.password) == (6000, "pw")
    assert docker.compose_file(ROOT) == COMPOSE


def test_postgres_has_a_healthcheck_a_volume_and_the_init_scripts(
    compose: dict[str, Any],
) -> None:
    postgres = compose["services"]["postgres"]
    test = postgres["healthcheck"]["test"]
    assert "pg_isready" in " ".join(test)
    # Over TCP: the init phase's temporary server listens on the socket only.
    assert "-h 127.0.0.1" in " ".join(test)
    volumes = postgres["volumes"]
    # The data folder's parent from PostgreSQL 18's images on (they keep versioned
    # folders below it), the data folder itself before.
    assert postgres["image"] == "${SIGNALMARKET_POSTGRES_IMAGE:-postgres:18}"
    major = int(interpolate(postgres["image"]).split(":")[1].split(".")[0])
    data = "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"
    named = [v.split(":")[0] for v in volumes if v.endswith(f":{data}")]
    assert named and named[0] in compose["volumes"]
    assert "./initdb:/docker-entrypoint-initdb.d:ro" in volumes
    assert (COMPOSE.parent / "initdb").is_dir()


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_own_database_role_and_port(
    compose: dict[str, Any], service: str
) -> None:
    spec = compose["services"][service]
    assert spec["depends_on"]["postgres"] == {"condition": "service_healthy"}
    url = make_url(interpolate(spec["environment"]["DATABASE_URL"]))
    assert (url.drivername, url.host, url.port) == ("postgresql+psycopg", "postgres", 5432)
    assert url.username == service and url.database == service
    # Its role's password is the one the init script gives that role.
    password_var = f"{service.upper()}_DB_PASSWORD"
    assert f"${{{password_var}:-" in spec["environment"]["DATABASE_URL"]
    assert password_var in compose["services"]["postgres"]["environment"]
    assert spec["environment"]["SKIP_MIGRATIONS"] == "${SKIP_MIGRATIONS:-0}"
    assert spec["environment"]["LOG_LEVEL"] == "${LOG_LEVEL:-info}"
    # Host ports: <SERVICE>_PORT, defaulting to the one port map.
    assert spec["ports"] == [f"127.0.0.1:${{{service.upper()}_PORT:-{PORTS[service]}}}:8000"]
    assert interpolate(spec["ports"][0]) == f"127.0.0.1:{HOST_PORTS[service]}:8000"
    assert PORTS[service] == HOST_PORTS[service]
    build = {
        "context": "..",
        "dockerfile": "docker/Dockerfile",
        "args": {
            "SERVICE": service,
            "PYTHON_IMAGE": "${SIGNALMARKET_PYTHON_IMAGE:-python:3.12-slim}",
            "PIP_INDEX_URL": "${PIP_INDEX_URL:-}",
        },
    }
    assert spec["build"] == build
    assert "/ready" in " ".join(spec["healthcheck"]["test"])
    # It comes back after a crash or an engine restart, and Postgres's absence.
    assert spec["restart"] == "unless-stopped"
    # Its migrate step runs first, once: a service with SKIP_MIGRATIONS=1 on a fresh
    # volume finds its database migrated.
    migrate = compose["services"][f"migrate_{service}"]
    assert spec["depends_on"][f"migrate_{service}"] == {
        "condition": "service_completed_successfully"
    }
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    assert migrate["image"] == spec["image"] and migrate["build"] == build
    assert migrate["environment"]["DATABASE_URL"] == spec["environment"]["DATABASE_URL"]
    assert "profiles" not in migrate


def test_the_gateway_reaches_the_three_others_inside_the_compose_network(
    compose: dict[str, Any],
) -> None:
    gateway = compose["services"]["api_gateway"]
    for upstream in ("signal_ingestion", "scoring_engine", "marketplace_publisher"):
        url = gateway["environment"][f"{upstream.upper()}_URL"]
        aliases = compose["services"][upstream]["networks"]["default"]["aliases"]
        assert url == f"http://{aliases[0]}:8000"
        assert gateway["depends_on"][upstream] == {"condition": "service_healthy"}
    # Empty by default (the admin API is off); never a baked-in token.
    assert gateway["environment"]["ADMIN_TOKEN"] == "${ADMIN_TOKEN:-}"


def test_compose_holds_no_literal_secret(compose: dict[str, Any]) -> None:
    """Every password or token comes from the environment (with a dev default)."""
    for name, spec in compose["services"].items():
        for key, value in spec.get("environment", {}).items():
            if re.search("PASSWORD|SECRET|TOKEN", key):
                assert str(value).startswith("${"), f"{name}.{key} is a literal"


# -- docker/initdb ------------------------------------------------------------------


def test_init_script_creates_exactly_the_four_databases() -> None:
    script = INIT_SCRIPT.read_text()
    created = re.findall(r"^create_service_database (\w+)$", script, flags=re.M)
    assert sorted(created) == sorted(SERVICES)
    assert 'CREATE ROLE :"service" LOGIN PASSWORD' in script
    assert 'CREATE DATABASE :"service" OWNER :"service"' in script
    assert 'REVOKE CONNECT, TEMPORARY ON DATABASE :"service" FROM PUBLIC' in script
    # The postgres image executes executable *.sh files; others it would source.
    assert os.access(INIT_SCRIPT, os.X_OK) and os.access(ENTRYPOINT, os.X_OK)


@pytest.fixture(scope="module")
def fresh_server() -> Iterator[URL]:
    """A server of its own: the script creates cluster-wide roles named after services."""
    config = DevConfig.from_environ(os.environ)
    try:
        server = local_server(config).throwaway()
    except ProvisioningError as exc:
        pytest.skip(f"no local Postgres server for the init script: {exc}")
    try:
        yield server.url()
    finally:
        server.stop()


def test_init_script_gives_each_service_a_database_only_its_role_opens(
    fresh_server: URL,
) -> None:
    bin_dir = find_bin_dir(DevConfig.from_environ(os.environ).pg_bin)
    if not (bin_dir / "psql").exists():
        pytest.skip(f"no psql next to the server binaries in {bin_dir}")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PGHOST": str(fresh_server.host),
        "PGPORT": str(fresh_server.port),
        "PGPASSWORD": str(fresh_server.password),
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "postgres",
        "SCORING_ENGINE_DB_PASSWORD": "not-the-default",
    }
    result = subprocess.run(
        [str(INIT_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    owners = sql(
        fresh_server,
        "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(:names)",
        names=list(SERVICES),
    )
    assert sorted(owners) == sorted((s, s) for s in SERVICES)

    def as_role(service: str, database: str) -> URL:
        password = "not-the-default" if service == "scoring_engine" else service
        return fresh_server.set(username=service, password=password, database=database)

    # Its own database: it connects and can create tables (it owns the schema too).
    engine = create_engine(as_role("scoring_engine", "scoring_engine"), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE probe (id int)"))
    finally:
        engine.dispose()
    assert sql(as_role("signal_ingestion", "signal_ingestion"), "SELECT current_user") == [
        ("signal_ingestion",)
    ]
    # Another service's database: CONNECT was revoked from PUBLIC.
    with pytest.raises(Exception, match="permission denied for database"):
        sql(as_role("scoring_engine", "signal_ingestion"), "SELECT 1")


# -- docker/Dockerfile --------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    built = stages(dockerfile_instructions(DOCKERFILE))
    assert len(built) >= 2
    assert all(" AS " in stage[0][1].upper() for stage in built)
    runtime = built[-1]
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    keywords = [keyword for keyword, _ in runtime]
    assert "ENTRYPOINT" in keywords or "CMD" in keywords
    # No Poetry, no compiler in what runs: only the builder's virtualenv is copied over.
    runtime_text = " ".join(arguments for _, arguments in runtime)
    assert "poetry" not in runtime_text.lower() and "apt-get" not in runtime_text
    assert "COPY --from=builder /opt/venv /opt/venv" in [
        f"{keyword} {arguments}" for keyword, arguments in runtime
    ]


def test_dockerfile_installs_the_locked_dependencies_before_copying_sources() -> None:
    builder = stages(dockerfile_instructions(DOCKERFILE))[0]
    install = next(
        i for i, (keyword, arguments) in enumerate(builder) if "poetry install" in arguments
    )
    # The main group only: the dev tooling (db_devtools, dev_tasks) is a dev dependency.
    assert "--only main" in builder[install][1] and "--no-directory" in builder[install][1]
    copies = [(i, arguments) for i, (keyword, arguments) in enumerate(builder) if keyword == "COPY"]
    sources = [i for i, arguments in copies if "/src" in arguments]
    assert sources and min(sources) > install
    before = " ".join(arguments for i, arguments in copies if i < install)
    assert "poetry.lock" in before
    # Poetry reads every path dependency's pyproject.toml to read the workspace (the dev
    # group's too, though it installs none of them), so all must be there already.
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        assert str(pyproject.relative_to(ROOT)) in before, f"{pyproject.parent.name} is missing"


def test_the_image_holds_shared_db_and_its_one_service_only() -> None:
    builder, runtime = stages(dockerfile_instructions(DOCKERFILE))[-2:]
    copied = [
        arguments.split()[0]
        for keyword, arguments in builder
        if keyword == "COPY" and "/src" in arguments
    ]
    assert copied == ["packages/shared_db/src", "packages/${SERVICE}/src"]
    installs = [
        arguments
        for keyword, arguments in builder
        if keyword == "RUN" and "pip install" in arguments and "./packages/" in arguments
    ]
    assert len(installs) == 1
    installed = re.findall(r'"?\./packages/([^"\s]+)"?', installs[0])
    assert installed == ["shared_db", "${SERVICE}"]
    assert "--no-deps" in installs[0] and "pip check" in installs[0]
    everything = " ".join(arguments for _, arguments in builder + runtime)
    for dev_only in ("db_devtools", "dev_tasks", "embedded"):
        sources_or_installs = [a for a in copied + installs if dev_only in a]
        assert not sources_or_installs, f"{dev_only} would be in the image"
    assert "invoke" not in everything
    # Errors in a container give the container's hints (shared_db.web.hints).
    environment = " ".join(arguments for keyword, arguments in runtime if keyword == "ENV")
    assert "SIGNALMARKET_CONTAINER=1" in environment


def test_dockerfile_bakes_no_secret() -> None:
    for keyword, arguments in dockerfile_instructions(DOCKERFILE):
        if keyword not in {"ENV", "ARG"}:
            continue
        for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", arguments):
            assert not (re.search("PASSWORD|SECRET|TOKEN", name.upper()) and value), name


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch(prefix, pattern)
        for pattern in patterns
        for prefix in prefixes
    )


def test_dockerignore_keeps_local_state_out_but_not_what_the_build_copies() -> None:
    patterns = dockerignore_patterns()
    for local_state in (".venv", ".postgres", ".git", ".run", ".env"):
        assert ignored(local_state, patterns), local_state
    assert ignored("packages/shared_db/src/shared_db/__pycache__/x.pyc", patterns)
    for keyword, arguments in dockerfile_instructions(DOCKERFILE):
        if keyword != "COPY" or "--from=" in arguments:
            continue
        words = [w for w in arguments.split() if not w.startswith("--")]
        for source in words[:-1]:
            source = source.replace("${SERVICE}", "scoring_engine")
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not ignored(source.rstrip("/"), patterns), f"COPY {source} is dockerignored"


# -- invoke docker.* ------------------------------------------------------------------


@pytest.mark.parametrize("task", ["docker.up", "docker.build", "docker.down"])
def test_docker_tasks_without_an_engine_exit_1_with_one_line(task: str, tmp_path: Path) -> None:
    missing = f"unix://{tmp_path / 'docker.sock'}"
    line = invoke(task, env={"DOCKER_HOST": missing}).one_line_error()
    assert line == (
        f"error: no Docker engine answers on {missing}: start Docker (or point DOCKER_HOST "
        "at one), or run without containers: invoke up"
    )


def test_docker_build_of_an_unknown_service_is_one_line(tmp_path: Path) -> None:
    missing = f"unix://{tmp_path / 'docker.sock'}"
    result = invoke("docker.build", "--service", "billing", env={"DOCKER_HOST": missing})
    line = result.one_line_error()
    assert line.startswith("error: unknown service 'billing'")
    assert line.endswith("; pass one of them with --service")


# -- flake.nix / flake.lock -----------------------------------------------------------


def test_flake_declares_the_dev_shell_for_the_four_systems() -> None:
    flake = (ROOT / "flake.nix").read_text()
    for system in SYSTEMS:
        assert f'"{system}"' in flake
    for tool in ("python3", "poetry", "postgresql", "docker-client"):
        assert tool in flake, tool
    assert "devShells" in flake and "shellHook" in flake
    assert "poetry2nix" not in flake


def nix_instantiate() -> str:
    tool = shutil.which("nix-instantiate")
    if tool is None:
        pytest.skip("nix-instantiate is not installed (Debian: apt-get install nix-bin)")
    return tool


def test_flake_parses() -> None:
    result = subprocess.run(
        [nix_instantiate(), "--store", "dummy://", "--parse", str(ROOT / "flake.nix")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# A stand-in for nixpkgs: enough of lib, mkShell and the packages for the flake's outputs
# to evaluate without fetching anything.
STUB_NIXPKGS = """
let
  pkg = name: { inherit name; outPath = "/nix/store/stub-" + name; version = "18.0"; };
  systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
  pkgsFor = system: {
    python312 = pkg "python3"; poetry = pkg "poetry"; git = pkg "git"; zlib = pkg "zlib";
    postgresql_17 = pkg "postgresql-17"; postgresql_18 = pkg "postgresql-18";
    docker-client = pkg "docker-client";
    stdenv = { isLinux = builtins.match ".*-linux" system != null; cc.cc.lib = pkg "gcc-lib"; };
    lib = {
      optionalString = cond: s: if cond then s else "";
      makeLibraryPath = ps: builtins.concatStringsSep ":" (map (p: p.outPath + "/lib") ps);
    };
    mkShell = attrs: attrs // { packages = map (p: p.name) attrs.packages; };
  };
  nixpkgs = {
    lib.genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    legacyPackages = builtins.listToAttrs (map (s: { name = s; value = pkgsFor s; }) systems);
  };
in (import FLAKE).outputs { self = { }; inherit nixpkgs; }
"""


@pytest.fixture(scope="module")
def dev_shells() -> dict[str, Any]:
    expression = STUB_NIXPKGS.replace("FLAKE", str(ROOT / "flake.nix"))
    command = [nix_instantiate(), "--store", "dummy://", "--eval", "--strict", "--json"]
    result = subprocess.run(
        [*command, "--expr", expression],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shells: dict[str, Any] = json.loads(result.stdout)["devShells"]
    return shells


def test_flake_outputs_a_dev_shell_with_the_tools_on_every_system(
    dev_shells: dict[str, Any],
) -> None:
    assert sorted(dev_shells) == sorted(SYSTEMS)
    for system, shells in dev_shells.items():
        packages = shells["default"]["packages"]
        assert {"python3", "poetry", "docker-client"} <= set(packages), system
        assert any(p.startswith("postgresql-") for p in packages), system
    assert "stub-gcc-lib" in dev_shells["x86_64-linux"]["default"]["LD_LIBRARY_PATH"]
    assert dev_shells["aarch64-darwin"]["default"]["LD_LIBRARY_PATH"] == ""


def test_shell_hook_keeps_the_venv_in_the_project_and_prints_the_next_commands(
    dev_shells: dict[str, Any], tmp_path: Path
) -> None:
    hook = dev_shells["x86_64-linux"]["default"]["shellHook"]
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    report = (
        'echo "IN_PROJECT=$POETRY_VIRTUALENVS_IN_PROJECT"'
        ' "PG_BIN=$SIGNALMARKET_PG_BIN" "PATH=$PATH"'
    )
    env = {k: v for k, v in os.environ.items() if k != "SIGNALMARKET_PG_BIN"}
    result = subprocess.run(
        ["bash", "-c", hook + "\n" + report],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.strip().startswith("./scripts/bootstrap") for line in lines)
    assert any(line.strip().startswith("poetry run invoke test") for line in lines)
    state = lines[-1]
    assert "IN_PROJECT=true" in state
    assert "PG_BIN=/nix/store/stub-postgresql-18/bin" in state
    assert f"PATH={tmp_path}/.venv/bin:" in state


def test_flake_lock_pins_nixpkgs_to_a_revision_and_a_hash() -> None:
    lock = json.loads((ROOT / "flake.lock").read_text())
    assert lock["version"] == 7 and lock["root"] == "root"
    node_name = lock["nodes"]["root"]["inputs"]["nixpkgs"]
    node = lock["nodes"][node_name]
    locked = node["locked"]
    assert (locked["type"], locked["owner"], locked["repo"]) == ("github", "NixOS", "nixpkgs")
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    assert isinstance(locked["lastModified"], int)
    # The lock's original is what flake.nix asks for.
    original = node["original"]
    url = f"github:{original['owner']}/{original['repo']}/{original['ref']}"
    assert f'inputs.nixpkgs.url = "{url}";' in (ROOT / "flake.nix").read_text()


# -- scripts/bootstrap ----------------------------------------------------------------

BOOTSTRAP = ROOT / "scripts" / "bootstrap"


def _which_python(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``scripts/bootstrap --which-python`` (it exits before installing anything), with
    ``python3`` on PATH being this interpreter, linked from ``tmp_path/bin``."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "python3").symlink_to(sys.executable)
    base = {k: v for k, v in os.environ.items() if k not in {"PYTHON", "SYSTEM_PYTHON"}}
    return subprocess.run(
        ["bash", str(BOOTSTRAP), *(args or ("--which-python",))],
        env={**base, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def _too_old(tmp_path: Path) -> str:
    """An interpreter that fails the 3.11 check (as a 3.10 would)."""
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\nexit 1\n")
    old.chmod(0o755)
    return str(old)


def _other_version(tmp_path: Path) -> str:
    """This interpreter, saying it is Python 3.99 (a version other than python3's on PATH)."""
    other = tmp_path / "python3.99"
    pretend = "import sys; sys.version_info = (3, 99, 0); exec(sys.argv[1])"
    other.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{pretend}" "$2"\n')
    other.chmod(0o755)
    return str(other)


@pytest.mark.skipif(sys.platform != "linux", reason="the distribution's python3 is Linux's")
def test_bootstrap_prefers_the_distributions_python_then_python3_on_path(tmp_path: Path) -> None:
    """The distribution's build of the same X.Y as python3 on PATH; else python3 on PATH:
    when the distribution's is missing, older than 3.11, or another version."""
    chosen = _which_python(tmp_path, SYSTEM_PYTHON=sys.executable)
    assert (chosen.returncode, chosen.stdout) == (
        0,
        f"{sys.executable} (the distribution's build)\n",
    )
    on_path = f"{tmp_path}/bin/python3 (python3 on PATH)\n"
    for system in (str(tmp_path / "missing"), _too_old(tmp_path), _other_version(tmp_path)):
        fallback = _which_python(tmp_path, SYSTEM_PYTHON=system)
        assert (fallback.returncode, fallback.stdout) == (0, on_path), system


def test_bootstrap_takes_python_from_the_environment_first(tmp_path: Path) -> None:
    chosen = _which_python(
        tmp_path, PYTHON="/opt/python3.12/bin/python3", SYSTEM_PYTHON=sys.executable
    )
    assert (chosen.returncode, chosen.stdout) == (0, "/opt/python3.12/bin/python3 (PYTHON)\n")


def test_bootstrap_refuses_a_python_older_than_3_11_and_an_unknown_option(tmp_path: Path) -> None:
    old = _too_old(tmp_path)
    refused = _which_python(tmp_path, "--install-only", PYTHON=old)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error: Python 3.11+ is needed"), refused.stderr
    assert refused.stderr.rstrip().endswith("set PYTHON=/path/to/python3.11"), refused.stderr
    missing = _which_python(tmp_path, "--install-only", PYTHON=str(tmp_path / "no python"))
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == (
        f"error: Python 3.11+ is needed (found: none at {tmp_path}/no python); "
        "install it or set PYTHON=/path/to/python3.11\n"
    )
    unknown = _which_python(tmp_path, "--fast")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == (
        "error: unknown option '--fast'; "
        "usage: ./scripts/bootstrap [--install-only | --which-python]\n"
    )
    extra = _which_python(tmp_path, "--which-python", "now")
    assert (extra.returncode, extra.stdout) == (2, ""), "a second argument is not ignored"
