"""Where a measured command's time goes: one pyinstrument run, summed into named buckets.

A bucket is a predicate on a stack frame. The profile's call tree is walked from the
top; the first bucket a frame matches takes the frame's whole time (its callees are not
looked at again), so the buckets never count a second twice. What no bucket takes is
"the rest". The summary is one line for docs/benchmarks.md.
"""

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyinstrument.frame import Frame
    from pyinstrument.session import Session


@dataclass(frozen=True)
class Bucket:
    label: str
    matches: Callable[["Frame"], bool]


def function(name: str, path_part: str = "") -> Callable[["Frame"], bool]:
    """Frames of the function ``name`` (or ``Class.method``) in a file whose path
    contains ``path_part``."""
    owner, _dot, func = name.rpartition(".")

    def matches(frame: "Frame") -> bool:
        return (
            frame.function == func
            and (not owner or frame.class_name == owner)
            and path_part in (frame.file_path or "")
        )

    return matches


def in_files(path_part: str) -> Callable[["Frame"], bool]:
    return lambda frame: path_part in (frame.file_path or "")


def importing(frame: "Frame") -> bool:
    """A module body running (an import), except the program's own ``__main__`` and
    the profiler's ``<string>`` wrapper."""
    path = frame.file_path or ""
    return frame.function == "<module>" and not path.endswith(("__main__.py", "<string>"))


def profile_command(command: Sequence[str], env: dict[str, str], output: Path) -> "Session":
    """Run ``[python, -m, module, args...]`` under pyinstrument; its session."""
    from pyinstrument.session import Session

    python, flag, *rest = command
    if flag != "-m":
        raise ValueError(f"expected [python, -m, module, ...], got {list(command)}")
    profiled = [python, "-m", "pyinstrument", "-r", "pyisession", "-o", str(output), "-m", *rest]
    result = subprocess.run(profiled, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"profiling {' '.join(rest)} failed: {result.stderr[-500:]}")
    return Session.load(str(output))


def profile_call(call: Callable[[], object]) -> "Session":
    """``call()`` under pyinstrument, in this process."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        call()
    finally:
        session = profiler.stop()
    return session


def summarize(session: "Session", buckets: Sequence[Bucket]) -> list[tuple[str, float]]:
    """(label, seconds) per bucket, largest first, then ``the rest``."""
    totals = dict.fromkeys((b.label for b in buckets), 0.0)
    root = session.root_frame()
    if root is None:
        return []
    stack = [root]
    while stack:
        frame = stack.pop()
        bucket = next((b for b in buckets if b.matches(frame)), None)
        if bucket is not None:
            totals[bucket.label] += frame.time
        else:
            stack.extend(frame.children)
    found = sorted(((label, s) for label, s in totals.items() if s > 0), key=lambda x: -x[1])
    rest = root.time - sum(totals.values())
    return [*found, ("the rest", max(0.0, rest))]


def line(summary: list[tuple[str, float]], total: float | None = None) -> str:
    """``label 0.42 s (31%), ...`` of a summary."""
    whole = total if total is not None else sum(seconds for _label, seconds in summary)
    parts = [
        f"{label} {seconds:.2f} s ({100 * seconds / whole:.0f}%)" if whole else label
        for label, seconds in summary
    ]
    return ", ".join(parts)
