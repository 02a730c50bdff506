"""The api_gateway API: ``/admin/keys`` to manage API keys, and ``/<service>/<path>``
forwarded to a service for callers whose API key has the scope it needs."""

import hmac
import logging
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Path, Request, Response, Security
from fastapi.responses import StreamingResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field, field_validator
from shared_db.models.api_gateway import ApiKey
from shared_db.web.app import session
from shared_db.web.inputs import BIGINT_MAX, RequestBody, StorableText
from shared_db.web.problem_details import HttpProblem, request_id
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from api_gateway import keys
from api_gateway.settings import UPSTREAMS, ApiGatewaySettings

log = logging.getLogger("signalmarket.api_gateway")
Db = Annotated[Session, Depends(session)]

SCOPES = tuple(f"{service}:{action}" for service in UPSTREAMS for action in ("read", "write"))
READ_METHODS = ("GET", "HEAD")
FORWARDED_METHODS = (*READ_METHODS, "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
FORWARDED_HEADERS = ("content-type", "accept")
"""The only request headers passed on: never the caller's X-API-Key or X-Admin-Token."""
RETURNED_HEADERS = ("content-type", "link", "retry-after", "location")
"""The upstream's response headers passed back (its request id is the gateway's)."""
KeyId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]  # a BIGINT identity

admin_token_header = APIKeyHeader(name="X-Admin-Token", scheme_name="AdminToken", auto_error=False)
api_key_header = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False)


# 401 answers say how to authenticate (RFC 9110 WWW-Authenticate).
KEY_CHALLENGE = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'}
ADMIN_CHALLENGE = {"WWW-Authenticate": 'ApiKey header="X-Admin-Token"'}


def _settings(request: Request) -> ApiGatewaySettings:
    settings: ApiGatewaySettings = request.app.state.settings
    return settings


# --- Admin: API keys ---------------------------------------------------------------------


def require_admin(
    request: Request, token: Annotated[str | None, Security(admin_token_header)]
) -> None:
    """403 while ``ADMIN_TOKEN`` is unset, 401 unless ``X-Admin-Token`` equals it."""
    expected = _settings(request).admin_token_value()
    if expected is None:
        raise HttpProblem(403, "admin API disabled: set ADMIN_TOKEN")
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HttpProblem(401, "missing or wrong X-Admin-Token header", ADMIN_CHALLENGE)


admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class KeyIn(RequestBody):
    name: StorableText = Field(min_length=1, max_length=128)
    scopes: list[StorableText] = Field(description=f"Scopes to grant, among: {', '.join(SCOPES)}")

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {', '.join(unknown)}; valid: {', '.join(SCOPES)}")
        return sorted(set(scopes))


class KeyOut(BaseModel):
    id: int
    name: str
    key_prefix: str
    scopes: list[str]

    @classmethod
    def of(cls, key: ApiKey) -> "KeyOut":
        return cls(
            id=key.id,
            name=key.name,
            key_prefix=key.key_prefix,
            scopes=sorted(scope.scope for scope in key.scopes),
        )


class CreatedKey(KeyOut):
    key: str = Field(description="The API key itself: shown in this response only.")


class RevokedKey(KeyOut):
    revoked_at: datetime


@admin.post("/keys", status_code=201, response_model=CreatedKey)
def create_key(body: KeyIn, db: Db) -> CreatedKey:
    """Create an API key; its plaintext is in this response and nowhere else."""
    key, plaintext = keys.create_key(db, body.name, body.scopes)
    log.info("created API key %s (%s) with scopes %s", key.id, key.name, body.scopes)
    return CreatedKey(**KeyOut.of(key).model_dump(), key=plaintext)


@admin.delete("/keys/{key_id}", response_model=RevokedKey)
def revoke_key(key_id: KeyId, db: Db) -> RevokedKey:
    """Revoke an API key: it is refused from now on (its row is kept)."""
    key = keys.revoke(db, key_id)
    if key is None or key.revoked_at is None:
        raise HttpProblem(404, f"no API key {key_id}")
    log.info("revoked API key %s (%s)", key.id, key.name)
    return RevokedKey(**KeyOut.of(key).model_dump(), revoked_at=key.revoked_at)


# --- Forwarding to the services ---------------------------------------------------------


def upstream(service: str) -> str:
    """``service`` from the path; 404 unless the gateway forwards to it."""
    if service not in UPSTREAMS:
        raise HttpProblem(
            404,
            f"no service {service!r}; valid: {', '.join(UPSTREAMS)}",
            services=list(UPSTREAMS),
        )
    return service


Upstream = Annotated[str, Depends(upstream)]


def required_scope(service: str, method: str) -> str:
    """``<service>:read`` for GET and HEAD, ``<service>:write`` for any other method."""
    return f"{service}:{'read' if method in READ_METHODS else 'write'}"


def authorize(
    request: Request,
    service: Upstream,
    db: Db,
    api_key: Annotated[str | None, Security(api_key_header)],
) -> None:
    """401 without a valid, unrevoked ``X-API-Key``; 403 if it lacks the needed scope."""
    if not api_key:
        raise HttpProblem(401, "missing X-API-Key header", KEY_CHALLENGE)
    key = keys.authenticate(db, api_key)
    if key is None:
        raise HttpProblem(401, "unknown or revoked API key", KEY_CHALLENGE)
    needed = required_scope(service, request.method)
    if needed not in {scope.scope for scope in key.scopes}:
        raise HttpProblem(403, f"the API key lacks scope {needed}", required_scope=needed)


async def forward(request: Request, service: Upstream, path: str) -> Response:
    """Send the request on to ``service`` and stream back its status, body and type.

    The request body is read first (bounded by MAX_BODY_BYTES); the answer is streamed,
    never held whole. ``UPSTREAM_TIMEOUT`` bounds the connect and each read.
    """
    settings = _settings(request)
    client: httpx.AsyncClient = request.app.state.http_client
    url = httpx.URL(
        f"{settings.upstream_url(service)}/{quote(path)}", query=request.scope["query_string"]
    )
    headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
    headers["x-request-id"] = request_id(request.scope) or ""
    outgoing = client.build_request(
        request.method, url, headers=headers, content=await request.body()
    )
    try:
        answer = await client.send(outgoing, stream=True)
    except httpx.TimeoutException as exc:
        log.warning("%s %s/%s: %s timed out: %r", request.method, service, path, service, exc)
        raise HttpProblem(
            504,
            f"{service} did not answer within {settings.upstream_timeout:g} s",
            service=service,
        ) from None
    except httpx.RequestError as exc:
        log.warning("%s %s/%s: %s unreachable: %r", request.method, service, path, service, exc)
        raise HttpProblem(
            502, f"{service} is unreachable ({type(exc).__name__})", service=service
        ) from None
    returned = {name: answer.headers[name] for name in RETURNED_HEADERS if name in answer.headers}
    return StreamingResponse(
        # Failing mid-answer ends the response early (the status is sent already);
        # RequestContext logs it.
        answer.aiter_bytes(),
        status_code=answer.status_code,
        headers=returned,
        background=BackgroundTask(answer.aclose),
    )


forwarding = APIRouter(tags=["forwarding"])
for _method in FORWARDED_METHODS:
    forwarding.add_api_route(
        "/{service}/{path:path}",
        forward,
        methods=[_method],
        name=f"forward_{_method.lower()}",
        summary=f"Forward {_method} /<service>/<path> to the service",
        dependencies=[Depends(authorize)],
    )

router = APIRouter()
router.include_router(admin)  # before forwarding: /{service}/{path} would match /admin/...
router.include_router(forwarding)
