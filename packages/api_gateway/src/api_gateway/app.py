"""The api_gateway app: ``uvicorn api_gateway.app:app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from shared_db.web.app import create_service_app

from api_gateway.api import router
from api_gateway.settings import ApiGatewaySettings


@asynccontextmanager
async def http_client(app: FastAPI) -> AsyncIterator[None]:
    """The HTTP client every forwarded request shares (``app.state.http_client``)."""
    settings: ApiGatewaySettings = app.state.settings
    async with httpx.AsyncClient(timeout=settings.upstream_timeout) as client:
        app.state.http_client = client
        yield


app = create_service_app(ApiGatewaySettings, [router], resources=http_client)
