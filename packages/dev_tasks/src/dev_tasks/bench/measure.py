"""Wall-clock timing of whole commands and of services becoming ready."""

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

INVOKE = [sys.executable, "-m", "invoke"]


def run(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Seconds one command takes; raises with its output when it fails."""
    return run_timed(command, env)[0]


def children_cpu() -> float:
    """CPU seconds (user + system) of every child process reaped so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def loop_seconds(rounds: int = 3) -> float:
    """CPU seconds of a fixed pure-Python loop (the median of ``rounds``): how fast this
    machine runs Python at the moment. On a shared machine it varied up to twofold
    (0.16-0.46 s) within an hour, and every figure in seconds with it."""
    times = []
    for _ in range(rounds):
        started, total = time.process_time(), 0
        for i in range(5_000_000):
            total += i
        times.append(time.process_time() - started)
    return sorted(times)[len(times) // 2]


def run_timed(command: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command's processes) of one command."""
    before = children_cpu()
    start = time.perf_counter()
    result = subprocess.run(
        list(command), env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    cpu = children_cpu() - before
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {(result.stderr or result.stdout)[-500:]}")
    return elapsed, cpu


def run_output(command: Sequence[str], env: dict[str, str] | None = None) -> str:
    """The output (stdout and stderr) of one command; raises with it when it fails."""
    result = subprocess.run(
        list(command), env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {output[-500:]}")
    return output


def bytecode(paths: Sequence[Path]) -> None:
    """Write the bytecode caches of ``paths`` (folders or files) now, as an installed
    package has them: with PYTHONDONTWRITEBYTECODE set (common in containers and CI)
    every measured process would otherwise compile the same modules again."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *map(str, paths)],
        capture_output=True,
        check=True,
    )


def interleaved(
    measures: dict[str, Callable[[], float]], runs: int, prepare: Callable[[], None]
) -> dict[str, float]:
    """The median of each measure over ``runs`` rounds, one of each per round (so a
    machine busier for a while weighs on all of them alike); ``prepare`` runs untimed
    before each measurement."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(runs):
        for name, measure in measures.items():
            prepare()
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


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
