"""``/health`` (liveness) and ``/ready`` (the database serves this code), probes that
never hang and log nothing.

``/health`` is async and touches no database: it answers while the database is stalled,
so a liveness probe never restarts a healthy process. ``/ready`` compares the database
with the history read once at startup (a new file on disk changes nothing until a
restart): one short check on the app's own pool, in a small executor of its own, under
a timeout; when the database does not answer in time, or earlier checks are still
stuck, it answers 503 at once instead of queueing.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine

from shared_db import records
from shared_db.errors import SharedDbError
from shared_db.history import History
from shared_db.status import Status, status_of

router = APIRouter(tags=["health"])
PROBE_PATHS = ("/health", "/ready")
READY_TIMEOUT_S = 2.0
IN_FLIGHT = 2  # checks that may wait on the database at once; more are refused


@dataclass
class ReadinessProbe:
    """What ``/ready`` needs, made once at startup."""

    service: str
    engine: Engine
    history: History
    checksums: dict[str, str]  # revision -> sha256 of its file, read at startup
    where: str  # host:port/database, nothing secret
    phases: str = "all"  # MIGRATION_PHASES: "expand" serves behind by contract revisions
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="ready")
    )
    in_flight: int = 0

    def check(self) -> tuple[Status, list[str]]:
        """(status, applied revisions whose file changed since), on one pooled connection."""
        with self.engine.connect() as connection:
            connection.execute(text(f"SET LOCAL statement_timeout = {int(READY_TIMEOUT_S * 1000)}"))
            current, applied = (
                records.current_revisions(connection, self.service),
                records.applied(connection, self.service),
            )
            connection.rollback()
        state = status_of(self.service, self.history, current, applied)
        modified = [
            rev
            for rev, record in applied.items()
            if rev in self.checksums and self.checksums[rev] != record.checksum
        ]
        return state, modified

    def done(self, future: "asyncio.Future[Any]") -> None:
        self.in_flight -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a check abandoned after its timeout logs nothing

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class QuietProbes(logging.Filter):
    """Drops the access-log lines of ``/health`` and ``/ready`` (every few seconds from
    an orchestrator); failures still show in the probe's own answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        path = str(args[2]).split("?", 1)[0] if len(args) > 2 else ""
        return path not in PROBE_PATHS


def quiet_probes() -> None:
    """Install ``QuietProbes`` on uvicorn's access log (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QuietProbes) for f in access.filters):
        access.addFilter(QuietProbes())


@router.get("/health")
async def health(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.service}


def _unavailable(probe: ReadinessProbe, detail: str) -> JSONResponse:
    body = {"status": "unavailable", "service": probe.service, "database": probe.where}
    return JSONResponse({**body, "detail": detail}, status_code=503)


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Not ready: ``status`` and ``detail`` or ``state`` say why.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.get("/ready", responses=NOT_READY)
async def ready(request: Request) -> JSONResponse:
    probe: ReadinessProbe = request.app.state.readiness
    if probe.in_flight >= IN_FLIGHT:
        return _unavailable(probe, "the database has not answered earlier checks yet")
    # Counted until the check itself ends (not the request): a check stuck on a stalled
    # database keeps its slot, so stuck checks never pile up.
    probe.in_flight += 1
    future = asyncio.get_running_loop().run_in_executor(probe.executor, probe.check)
    future.add_done_callback(probe.done)
    try:
        state, modified = await asyncio.wait_for(asyncio.shield(future), READY_TIMEOUT_S)
    except TimeoutError:
        return _unavailable(probe, f"the database did not answer within {READY_TIMEOUT_S:g} s")
    except SharedDbError as exc:
        return _unavailable(probe, exc.message)
    except Exception as exc:  # a driver error: say which, never the URL
        return _unavailable(probe, type(exc).__name__)
    body: dict[str, Any] = {
        "service": probe.service,
        "database_revision": list(state.database),
        "head": list(state.head),
        "pending": state.pending,
        "state": state.state,
        "compatible": state.compatible,
        "ahead": list(state.ahead),
        "database": probe.where,
        # Applied revisions whose file changed since: reported, not a readiness failure.
        "modified_since_applied": modified,
    }
    if state.serves(probe.phases):
        return JSONResponse({"status": "ready", **body})
    return JSONResponse({"status": "not ready", **body}, status_code=503)
