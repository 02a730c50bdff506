"""``/health`` (liveness) and ``/ready`` (the database revision equals the code's head)."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from shared_db import records
from shared_db.config import DbConfig
from shared_db.connections import connect
from shared_db.errors import SharedDbError
from shared_db.history import read_history
from shared_db.status import status_of

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.service}


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    service: str = request.app.state.service
    config: DbConfig = request.app.state.db_config
    history = read_history(config, service)
    try:
        with connect(config, service) as connection:
            current = status_of(service, history, records.current_revisions(connection, service))
            modified = records.modified_revisions(service, history, connection)
    except SharedDbError as exc:
        return JSONResponse(
            {"status": "unavailable", "service": service, "detail": exc.message}, status_code=503
        )
    body = {
        "service": service,
        "database_revision": list(current.database),
        "head": list(current.head),
        "pending": current.pending,
        "state": current.state,
        # Applied revisions whose file changed since: reported, not a readiness failure.
        "modified_since_applied": [m.revision for m in modified],
    }
    if current.pending == 0 and not current.unknown:
        return JSONResponse({"status": "ready", **body})
    return JSONResponse({"status": "not ready", **body}, status_code=503)
