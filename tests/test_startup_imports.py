"""A service whose database is at head imports only what serving needs: neither Alembic
(nor Mako, which Alembic brings) nor the development tooling.

Read from the real entry point, ``python -X importtime -m scoring_engine``, after the
service answers ``/ready``; the same start on an empty database is the control (it
migrates, so it does import Alembic), so the check can fail.
"""

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from db_devtools.provisioning.ports import free_port
from dev_tasks.readiness import Target, wait_ready
from helpers import head, raw, sql
from sqlalchemy.engine import URL

SERVICE = "scoring_engine"
NOT_AT_HEAD = ("alembic", "mako", "db_devtools", "dev_tasks", "invoke")


def _environment(database: URL) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("DATABASE_URL")
        and k not in ("SKIP_MIGRATIONS", "PYTHONPROFILEIMPORTTIME")
    }
    return {**env, "DATABASE_URL": raw(database)}


def _exited(process: subprocess.Popen[bytes], log: Path) -> str | None:
    return None if process.poll() is None else log.read_text()[-2000:]


def _imported(log: Path) -> set[str]:
    """Top-level packages named in ``-X importtime`` output."""
    names = set()
    for line in log.read_text().splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name.split(".")[0])
    return names


def test_a_start_at_head_imports_neither_alembic_nor_the_dev_tooling(
    migrated_database: Callable[[str], URL], empty_database: URL, tmp_path: Path
) -> None:
    at_head = migrated_database(SERVICE)
    starts = {"at_head": at_head, "empty": empty_database}
    processes, targets = {}, []
    for label, database in starts.items():
        port, log = free_port(), tmp_path / f"{label}.log"
        with log.open("wb") as stderr:
            processes[label] = process = subprocess.Popen(
                [sys.executable, "-X", "importtime", "-m", SERVICE, "--port", str(port)],
                env=_environment(database),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        url = f"http://127.0.0.1:{port}/ready"
        targets.append(Target(label, url, functools.partial(_exited, process, log)))
    try:
        wait_ready(targets, timeout=120)
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(timeout=30)
    imported = {label: _imported(tmp_path / f"{label}.log") for label in starts}
    assert "shared_db" in imported["at_head"] and "fastapi" in imported["at_head"]
    assert not imported["at_head"] & set(NOT_AT_HEAD), sorted(imported["at_head"])
    # The control: the start that migrated imported Alembic (and Mako with it).
    assert {"alembic", "mako"} <= imported["empty"], sorted(imported["empty"])
    table = f"alembic_version_{SERVICE}"
    assert sql(empty_database, f"SELECT version_num FROM {table}") == [(head(SERVICE)[0],)]
