"""Invoke tasks run inside a Python process, as a user would type them.

``run_task`` runs one in the calling process (``helpers.invoke`` wraps it with an
environment and a directory). Run as a script, ``python task_runs.py RESULTS RUNS``
runs each task of ``RUNS`` (a JSON list of argument lists) one after another in this
one process and writes their ``[code, stdout, stderr]`` to the file ``RESULTS``
(``helpers.Repo.invoke_process_runs``: one interpreter start and one set of imports
for several tasks of a copy's own code).

Light on purpose: nothing is imported here that the tasks do not import themselves.
"""

import contextlib
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def run_task(args: Sequence[str]) -> tuple[int, str, str]:
    """``invoke ARGS`` in this process, in its directory and environment: the exit code,
    what it printed to stdout, and to stderr."""
    from dev_tasks import namespace
    from invoke.program import Program

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            Program(namespace=namespace(), version="0").run(["invoke", *args], exit=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


if __name__ == "__main__":
    results, runs = Path(sys.argv[1]), json.loads(sys.argv[2])
    results.write_text(json.dumps([run_task(args) for args in runs]))
