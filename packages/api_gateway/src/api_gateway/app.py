"""The api_gateway app: ``uvicorn api_gateway.app:app``."""

import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from shared_db.web.app import create_service_app

from api_gateway.api import router
from api_gateway.settings import ApiGatewaySettings


@functools.cache
def _tls() -> ssl.SSLContext:
    """The CA bundle, read once per process: a client reads it again (30 ms of CPU) at
    every start of the app (the test suite starts it dozens of times)."""
    return httpx.create_ssl_context()


@asynccontextmanager
async def http_client(app: FastAPI) -> AsyncIterator[None]:
    """The HTTP client every forwarded request shares (``app.state.http_client``)."""
    settings: ApiGatewaySettings = app.state.settings
    async with httpx.AsyncClient(timeout=settings.upstream_timeout, verify=_tls()) as client:
        app.state.http_client = client
        yield


app = create_service_app(ApiGatewaySettings, [router], resources=http_client)
