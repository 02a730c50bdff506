"""A service whose database is at head imports only what serving needs: neither Alembic
(nor Mako, which Alembic brings) nor the development tooling.

Read from the real entry point, ``python -X importtime -m scoring_engine``, after the
service answers ``/ready``. The control, so the check can fail, is a start on an empty
database: it migrates, so it does import Alembic. That start is one of three replicas
started at once on the same empty database, which shows the startup migration running
exactly once across real processes (test_startup.py has the same race in threads).
"""

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from db_devtools.provisioning.ports import free_port
from dev_tasks.readiness import Target, wait_ready
from helpers import config_for, head, raw, sql
from shared_db import commands
from shared_db.config import DbConfig
from shared_db.history import read_history
from sqlalchemy.engine import URL

SERVICE = "scoring_engine"
HEAD = head(SERVICE)
REVISIONS = len(read_history(DbConfig(), SERVICE).revisions)
NOT_AT_HEAD = ("alembic", "mako", "db_devtools", "dev_tasks", "invoke")


def _environment(database: URL) -> dict[str, str]:
    """This process's environment, with ``database`` as the only URL."""
    unwanted = ("SKIP_MIGRATIONS", "SIGNALMARKET_CONTAINER", "PYTHONPROFILEIMPORTTIME")
    env = {
        k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL") and k not in unwanted
    }
    return {**env, "DATABASE_URL": raw(database)}


def _start(database: URL, log: Path) -> tuple[subprocess.Popen[bytes], Target]:
    """``python -X importtime -m scoring_engine`` on ``database``, its output in ``log``
    (the import times make more than a pipe nobody reads while it runs would hold)."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", SERVICE, "--port", str(port)],
            env=_environment(database),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/ready"
    return process, Target(log.stem, url, functools.partial(_exited, process, log))


def _exited(process: subprocess.Popen[bytes], log: Path) -> str | None:
    return None if process.poll() is None else log.read_text()[-2000:]


def _imported(output: str) -> set[str]:
    """Top-level packages named in ``-X importtime`` output."""
    names = set()
    for line in output.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name.split(".")[0])
    return names


def test_three_replicas_migrate_once_and_a_start_at_head_imports_no_alembic_nor_tooling(
    migrated_database: Callable[[str], URL], empty_database: URL, tmp_path: Path
) -> None:
    """Four processes at once: three replicas on an empty database, one start on a
    database already at head."""
    logs = [tmp_path / f"replica-{n}.log" for n in range(3)]
    at_head_log = tmp_path / "at_head.log"
    started = [_start(empty_database, log) for log in logs]
    started.append(_start(migrated_database(SERVICE), at_head_log))
    try:
        wait_ready([target for _, target in started], timeout=120)
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            process.wait(timeout=30)
    outputs = [log.read_text() for log in logs]
    everything = "\n---\n".join(outputs)
    upgraded = [out for out in outputs if f"{SERVICE}: migrated base -> {HEAD[0]}" in out]
    assert len(upgraded) == 1, everything
    others = [out for out in outputs if out not in upgraded]
    assert all("another process migrated" in out or "no migration needed" in out for out in others)
    # Each revision was applied once, all by the one that migrated.
    first = f"{SERVICE}: 0001 Create the scores table. (1/{REVISIONS}) "
    assert sum(out.count(first) for out in outputs) == 1, everything
    progress = re.compile(rf"{SERVICE}: \S+ .* \(\d+/{REVISIONS}\) \d+\.\d\d s$", re.M)
    assert len(progress.findall(upgraded[0])) == REVISIONS, everything
    assert all(not progress.search(out) for out in others), everything
    # The runner's lines replace Alembic's own.
    assert "Running upgrade" not in everything
    assert commands.current(config_for(empty_database), SERVICE) == HEAD
    table = f"alembic_version_{SERVICE}"
    assert sql(empty_database, f"SELECT version_num FROM {table}") == [(HEAD[0],)]
    # At head: only what serving needs.
    at_head = _imported(at_head_log.read_text())
    assert "shared_db" in at_head and "fastapi" in at_head
    assert not at_head & set(NOT_AT_HEAD), sorted(at_head)
    # The control: the start that migrated imported Alembic (and Mako with it).
    control = _imported(upgraded[0])
    assert {"alembic", "mako"} <= control, sorted(control)
