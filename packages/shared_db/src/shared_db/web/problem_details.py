"""Errors as RFC 9457 problem responses (``application/problem+json``).

Every error a service answers is a problem with the request's id: the routes' own
(``HttpProblem``), invalid input (422), and the database's errors mapped to what the
client can do about them: unavailable → 503 with ``Retry-After``, a conflict with
stored rows → 409, a value the database refuses → 422 naming the column. Anything else
is answered 500 by ``middleware.RequestContext``.
"""

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa
from starlette.exceptions import HTTPException
from starlette.types import Scope

from shared_db.config import DbConfig
from shared_db.errors import DatabaseError
from shared_db.urls import scrub

PROBLEM = "application/problem+json"
REQUEST_ID_KEY = "signalmarket.request_id"
RETRY_AFTER_S = 5
"""What a 503 tells clients to wait before retrying, in seconds."""

log = logging.getLogger("signalmarket.requests")

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string", "description": "Quote it when reporting an error."},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_DOCUMENTED = {"content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "The request cannot be served as sent (a problem).", **_DOCUMENTED},
    "5XX": {"description": "The service or its database failed (a problem).", **_DOCUMENTED},
}
"""``responses=`` of every route: errors are problems (this replaces FastAPI's 422 shape)."""


class HttpProblem(HTTPException):
    """Raise in a route: ``raise HttpProblem(404, "no score 42")``."""

    def __init__(
        self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(status, detail, headers)
        self.extra = extra


def request_id(scope: Scope) -> str | None:
    """The id ``middleware.RequestContext`` gave the request in ``scope``."""
    value = scope.get(REQUEST_ID_KEY)
    return str(value) if value else None


class ProblemResponse(JSONResponse):
    media_type = PROBLEM

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode()
        except UnicodeEncodeError:
            # A client's lone surrogate, quoted back in a message: written as a JSON escape.
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def problem_response(
    status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **{key: value for key, value in extra.items() if value is not None},
    }
    return ProblemResponse(body, status_code=status, headers=headers)


def describe(exc: BaseException, app: Any = None) -> str:
    """``Type: first line`` of an error, for a log line: a driver's own error when
    SQLAlchemy wraps one (whose text would go on with the SQL and its parameters), with
    any secret of ``app``'s database URL masked."""
    origin = getattr(exc, "orig", None) or exc
    lines = str(origin).strip().splitlines()
    if not lines:
        return type(origin).__name__
    line = lines[0][:300]
    config = getattr(getattr(app, "state", None), "db_config", None)
    if isinstance(config, DbConfig):
        line = scrub(line, config.url_for(app.state.service) or "")
    return f"{type(origin).__name__}: {line}"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        # FastAPI's body parsing gave up on JSON nested beyond Python's recursion limit.
        return _problem(request, 422, "the JSON body is nested too deeply")
    extra = getattr(exc, "extra", {})
    return _problem(request, exc.status_code, str(exc.detail), exc.headers, **extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    fields = sorted({".".join(str(part) for part in error["loc"]) for error in errors})
    detail = f"invalid {', '.join(fields)}" if fields else "the request is invalid"
    return _problem(request, 422, detail, errors=errors)


def _problem(
    request: Request,
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return problem_response(status, detail, headers, **extra, request_id=request_id(request.scope))


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "%s %s: request %s: the database is unavailable: %s",
        request.method,
        request.url.path,
        request_id(request.scope),
        describe(exc, request.app),
    )
    return _problem(
        request,
        503,
        "the database is unavailable; retry later",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


def _diagnostic(exc: Exception) -> Any:
    origin = getattr(exc, "orig", None)
    return origin.diag if isinstance(origin, psycopg.Error) else None


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database error: unavailable (503), a conflict (409), a refused value (422)."""
    origin = getattr(exc, "orig", exc)
    if isinstance(exc, sa.TimeoutError | sa.DisconnectionError) or isinstance(
        origin, psycopg.OperationalError | psycopg.InterfaceError
    ):
        # Down, restarting, unreachable, out of connections, or a query cancelled by a
        # timeout: a retry may succeed.
        return _unavailable(request, exc)
    if isinstance(exc, DatabaseError):
        if exc.kind == "database_unreachable":
            return _unavailable(request, exc)
        raise exc
    diag = _diagnostic(exc)
    column = getattr(diag, "column_name", None)
    constraint = getattr(diag, "constraint_name", None)
    if isinstance(origin, psycopg.errors.UniqueViolation | psycopg.errors.ForeignKeyViolation):
        where = f" ({constraint})" if constraint else ""
        detail = f"the request conflicts with stored data{where}"
        return _problem(request, 409, detail, constraint=constraint)
    if isinstance(origin, psycopg.IntegrityError | psycopg.DataError):
        primary = getattr(diag, "message_primary", None) or str(origin).splitlines()[0]
        where = f" ({column})" if column else (f" ({constraint})" if constraint else "")
        return _problem(
            request,
            422,
            f"the database refused a value{where}: {primary}",
            field=column,
            constraint=constraint,
        )
    raise exc  # anything else: RequestContext answers 500


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in (sa.DBAPIError, sa.TimeoutError, sa.DisconnectionError, DatabaseError):
        app.add_exception_handler(error, _database_error)
