"""Service start figures: one start at head, and replicas starting together.

Besides the wall time, each start's CPU seconds are read from ``/proc/<pid>/stat`` once
it answers and before it is stopped (Linux; elsewhere they are not reported), and one
extra start with ``python -X importtime`` says which packages its imports cost.
"""

import functools
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from db_devtools.provisioning.databases import drop_database, ensure_database
from db_devtools.provisioning.ports import free_port
from sqlalchemy.engine import URL

from dev_tasks.bench.figures import SERVICE, Figure
from dev_tasks.readiness import Target, wait_ready

Process = subprocess.Popen[str]


def _start(
    port: int, env: dict[str, str], log_level: str = "warning", python_flags: tuple[str, ...] = ()
) -> Process:
    return subprocess.Popen(
        [sys.executable, *python_flags, "-m", SERVICE, "--port", str(port),
         "--log-level", log_level],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _start_logged(
    port: int, env: dict[str, str], log: Path, python_flags: tuple[str, ...]
) -> Process:
    """A start whose output goes to ``log`` (``-X importtime`` writes more than a pipe holds)."""
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, *python_flags, "-m", SERVICE, "--port", str(port)],
            env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def _stop(processes: list[Process]) -> list[str]:
    for process in processes:
        process.terminate()
    return [process.communicate(timeout=30)[0] for process in processes]


def until_ready(processes: list[tuple[Process, int]], path: str, timeout: float) -> float:
    """Seconds until every ``(process, port)`` answers 200 on ``path``."""

    def exited(process: Process) -> str | None:
        if process.poll() is None:
            return None
        return (process.communicate()[0] or f"exit code {process.returncode}")[-500:]

    targets = [
        Target(str(port), f"http://127.0.0.1:{port}{path}", functools.partial(exited, process))
        for process, port in processes
    ]
    return wait_ready(targets, timeout)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (``None`` without ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _migrated(url: URL) -> None:
    from shared_db import runner
    from shared_db.config import DbConfig

    drop_database(url)
    ensure_database(url)
    config = DbConfig(database_urls={SERVICE: url.render_as_string(hide_password=False)})
    runner.upgrade(config, SERVICE, report=lambda _progress: None)


def startup_at_head(server_url: URL, runs: int) -> Figure:
    database = server_url.set(database="bench_startup")
    _migrated(database)
    url = database.render_as_string(hide_password=False)

    def start_once(extra: dict[str, str]) -> tuple[float, float | None]:
        port = free_port()
        process = _start(port, {"DATABASE_URL": url, **extra})
        try:
            return until_ready([(process, port)], "/health", 60), cpu_seconds(process.pid)
        finally:
            _stop([process])

    # Interleaved, and more runs than elsewhere: a process start varies by ~0.1 s here,
    # as much as the difference being measured.
    pairs = [(start_once({}), start_once({"SKIP_MIGRATIONS": "1"})) for _ in range(3 * runs)]
    at_head = statistics.median(a[0] for a, _ in pairs)
    skipped = statistics.median(b[0] for _, b in pairs)
    cpu = _median([a[1] for a, _ in pairs])
    cpu_skipped = _median([b[1] for _, b in pairs])
    imports = import_profile({"DATABASE_URL": url})
    drop_database(database)
    return Figure(
        "startup_at_head", "service startup with the database at head (to /health 200)",
        at_head, skipped, "the same with SKIP_MIGRATIONS=1", "<= +100 ms",
        at_head - skipped <= 0.1,
        note=f"difference {1000 * (at_head - skipped):+.0f} ms; CPU per start "
        f"{_seconds(cpu)} (with SKIP_MIGRATIONS {_seconds(cpu_skipped)}); where the time "
        f"goes: imports (python -X importtime, self time by package) {imports}; an at-head "
        "start imports neither Alembic nor the dev tooling (tests/test_startup_imports.py)",
        extra={"cpu_per_start_s": cpu or 0.0, "cpu_per_start_skip_s": cpu_skipped or 0.0},
    )  # fmt: skip


def concurrent_starts(server_url: URL, runs: int = 3, replicas: int = 16) -> Figure:
    """``replicas`` starts on an empty database (one migrates, the others wait for its
    lock and find the database at head) against as many with ``SKIP_MIGRATIONS=1`` on a
    database at head: the same imports, no migration. Interleaved, medians."""
    empty = server_url.set(database="bench_concurrent")
    at_head = server_url.set(database="bench_concurrent_head")
    _migrated(at_head)

    def batch(database: URL, extra: dict[str, str]) -> tuple[float, int, list[float]]:
        env = {
            "DATABASE_URL": database.render_as_string(hide_password=False),
            "MIGRATION_LOCK_TIMEOUT": "120",
            **extra,
        }
        ports = [free_port() for _ in range(replicas)]
        processes = [_start(port, env, "info") for port in ports]
        try:
            elapsed = until_ready(list(zip(processes, ports, strict=True)), "/ready", 300)
            cpus = [cpu_seconds(process.pid) for process in processes]
        finally:
            outputs = _stop(processes)
        # "another process migrated base -> ..." is a replica that waited: not counted.
        upgrades = sum(f"{SERVICE}: migrated base -> " in output for output in outputs)
        return elapsed, upgrades, [c for c in cpus if c is not None]

    migrating, skipping = [], []
    for _ in range(runs):
        drop_database(empty)
        ensure_database(empty)
        migrating.append(batch(empty, {}))
        skipping.append(batch(at_head, {"SKIP_MIGRATIONS": "1"}))
    drop_database(empty)
    drop_database(at_head)
    ours = statistics.median(m[0] for m in migrating)
    baseline = statistics.median(s[0] for s in skipping)
    upgrades = sorted({m[1] for m in migrating})
    cpu_all = [c for m in migrating for c in m[2]]
    cpu_skip = [c for s in skipping for c in s[2]]
    most = max(cpu_all, default=0.0)
    return Figure(
        "concurrent_starts",
        f"{replicas} concurrent starts of one service, empty database (to /ready 200)",
        ours, baseline,
        f"{replicas} concurrent starts with SKIP_MIGRATIONS=1 on a database at head",
        "<= 1.2x, exactly one upgrade", ours / baseline <= 1.2 and upgrades == [1],
        note=f"upgrades per run: {', '.join(map(str, upgrades))} (the advisory lock lets "
        "one process migrate; the others wait for it on the server and find the database "
        f"at head); where the time goes: CPU per start {_seconds(_median(cpu_all))} "
        f"(SKIP_MIGRATIONS at head: {_seconds(_median(cpu_skip))}; the start that migrated: "
        f"{most:.2f} s), so {replicas} starts need about {replicas} x that of CPU on "
        f"{os.cpu_count()} cores: the wall time is mostly imports, alike in both",
        extra={
            "upgrades": float(upgrades[0]) if len(upgrades) == 1 else float("nan"),
            "cpu_per_start_s": _median(cpu_all) or 0.0,
            "cpu_per_start_skip_s": _median(cpu_skip) or 0.0,
            "cpu_migrating_start_s": most,
        },
    )  # fmt: skip


def import_profile(env: dict[str, str], top: int = 5) -> str:
    """One start under ``python -X importtime``: the packages whose imports cost most."""
    with tempfile.TemporaryDirectory(prefix="signalmarket-bench-") as scratch:
        log, port = Path(scratch) / "importtime.log", free_port()
        process = _start_logged(port, env, log, ("-X", "importtime"))
        try:
            until_ready([(process, port)], "/health", 60)
        finally:
            process.terminate()
            process.wait(timeout=30)
        return summarize_importtime(log.read_text(), top)


def summarize_importtime(output: str, top: int = 5) -> str:
    """``fastapi 0.31 s, ...``: self time summed by top-level package, largest first."""
    totals: Counter[str] = Counter()
    for line in output.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            self_us, _cumulative, name = line.removeprefix("import time:").split("|")
            if self_us.strip().isdigit():
                totals[name.strip().split(".")[0]] += int(self_us)
    whole = sum(totals.values()) / 1e6
    parts = [f"{name} {us / 1e6:.2f} s" for name, us in totals.most_common(top)]
    return f"{whole:.2f} s in all: {', '.join(parts)}"


def _median(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _seconds(value: float | None) -> str:
    return "not measured (no /proc)" if value is None else f"{value:.2f} s"
