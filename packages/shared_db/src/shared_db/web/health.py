"""``/health`` (liveness) and ``/ready`` (the database revision equals the code's head)."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from shared_db.checksums import modified_at
from shared_db.errors import SharedDbError
from shared_db.overview import status
from shared_db.urls import mask

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.service}


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    service: str = request.app.state.service
    try:
        current = status(service, request.app.state.database_url)
        modified = modified_at(service, request.app.state.database_url)
    except SharedDbError as exc:
        return JSONResponse(
            {"status": "unavailable", "service": service, "detail": str(exc)}, status_code=503
        )
    body = {
        "service": service,
        "database_revision": list(current.database),
        "head": list(current.head),
        "pending": current.pending,
        "state": current.state,
        "database": mask(request.app.state.database_url),
        # Applied revisions whose file changed since: reported, not a readiness failure.
        "modified_since_applied": [m.revision for m in modified],
    }
    if current.pending == 0 and not current.unknown:
        return JSONResponse({"status": "ready", **body})
    return JSONResponse({"status": "not ready", **body}, status_code=503)
