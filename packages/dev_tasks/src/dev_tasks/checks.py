"""``invoke test`` and ``invoke lint``."""

import shutil
import sys

from invoke.context import Context
from invoke.tasks import task
from shared_db.provision import project_root

SOURCES = "packages/*/src"


@task(
    help={
        "k": "only tests matching this expression (pytest -k)",
        "args": "extra pytest arguments",
    }
)
def test(c: Context, k: str = "", args: str = "") -> None:
    """Run the whole test suite; it provisions its own Postgres."""
    selection = f" -k '{k}'" if k else ""
    with c.cd(str(project_root())):
        c.run(f"{sys.executable} -m pytest{selection} {args}", pty=False)


@task
def lint(c: Context) -> None:
    """ruff (lint + format check), mypy --strict, and the lock file's freshness."""
    with c.cd(str(project_root())):
        c.run(f"{sys.executable} -m ruff check .")
        c.run(f"{sys.executable} -m ruff format --check .")
        c.run(f"{sys.executable} -m mypy {SOURCES} tasks.py tests")
        if shutil.which("poetry"):
            c.run("poetry check --lock")
        else:
            print("poetry not on PATH: lock freshness not checked here (.ci/run checks it)")
