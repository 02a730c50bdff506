"""Wall-clock timing of whole commands and of services becoming ready."""

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import httpx

INVOKE = [sys.executable, "-m", "invoke"]


def run(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Seconds one command takes; raises with its output when it fails."""
    start = time.perf_counter()
    result = subprocess.run(
        list(command), env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {(result.stderr or result.stdout)[-500:]}")
    return elapsed


def median(
    measure: Callable[[], float], runs: int, prepare: Callable[[], None] | None = None
) -> float:
    """Median of ``runs`` measurements (``prepare`` runs untimed before each)."""
    samples = []
    for _ in range(runs):
        if prepare is not None:
            prepare()
        samples.append(measure())
    return statistics.median(samples)


def until_ready(
    processes: list[tuple[subprocess.Popen[str], int]], path: str, timeout: float
) -> float:
    """Seconds until every ``(process, port)`` answers 200 on ``path`` (from now)."""
    start = time.perf_counter()
    pending = {port for _process, port in processes}
    while pending:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"not ready after {timeout} s: ports {sorted(pending)}")
        for process, port in processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"service on port {port} exited: {process.communicate()[0][-500:]}"
                )
            if port in pending:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                        pending.discard(port)
                except httpx.HTTPError:
                    pass
        time.sleep(0.005)
    return time.perf_counter() - start
