"""Pure ASGI middleware of every service: a request id on each request, a bound on the
request body, and the last resort that turns any unhandled error into a 500 problem.

Pure ASGI (not ``BaseHTTPMiddleware``) so that streamed responses stay streamed and
nothing is buffered here.
"""

import logging
import re
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared_db.web.problem_details import (
    REQUEST_ID_KEY,
    HttpProblem,
    describe,
    problem_response,
    request_id,
)

log = logging.getLogger("signalmarket.requests")

REQUEST_ID_HEADER = "x-request-id"
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestContext:
    """Gives each request an id (the caller's ``X-Request-Id`` when it is a sane token,
    else a new one), echoes it in the response, and answers any error that escaped the
    exception handlers with a 500 problem: one log line with the id, the traceback
    only at DEBUG, never a traceback in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        rid = given if _CALLER_ID.fullmatch(given) else uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), rid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.error(
                "%s %s: request %s failed: %s",
                scope["method"],
                scope["path"],
                rid,
                describe(exc, scope.get("app")),
            )
            log.debug("request %s: traceback", rid, exc_info=exc)
            if started:
                return  # the status is sent; the server ends the connection
            detail = f"internal error; quote request id {rid} when reporting it"
            response = problem_response(500, detail, request_id=rid)
            await response(scope, receive, send_with_id)


class BodyLimit:
    """Refuses request bodies over ``max_bytes()`` with a 413 problem: at once when
    ``Content-Length`` says so, else as soon as the bytes read pass the bound. (A
    callable: the settings holding the bound are read after the app is built.)"""

    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes()
        rid = request_id(scope)
        detail = f"the request body is larger than {limit} bytes, the most this service accepts"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and not declared.isdigit():
            response = problem_response(400, "Content-Length is not a number", request_id=rid)
            await response(scope, receive, send)
            return
        if declared is not None and int(declared) > limit:
            response = problem_response(413, detail, max_bytes=limit, request_id=rid)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException: FastAPI's body parsing re-raises it and the
                    # problem handler answers it.
                    raise HttpProblem(413, detail, max_bytes=limit)
            return message

        await self.app(scope, limited_receive, send)
