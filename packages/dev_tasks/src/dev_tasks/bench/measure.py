"""Wall-clock timing of whole commands and of services becoming ready."""

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

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
