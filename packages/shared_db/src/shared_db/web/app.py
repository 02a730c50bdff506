"""Build a service's FastAPI app: startup migration in the lifespan, shared routes."""

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from shared_db.errors import SharedDbError
from shared_db.overview import status
from shared_db.startup import migrate_to_head
from shared_db.urls import mask
from shared_db.web import health, problems
from shared_db.web.settings import ServiceSettings

log = logging.getLogger("signalmarket.startup")


class StartupFailed(RuntimeError):
    """The service cannot serve; the message is the one line to act on."""


def prepare_database(settings: ServiceSettings, url: URL) -> None:
    """The startup migration (or, with SKIP_MIGRATIONS, a warning when not at head)."""
    service = settings.service
    if settings.skip_migrations:
        log.warning("%s: SKIP_MIGRATIONS is set: not migrating %s", service, mask(url))
        try:
            current = status(service, url)
        except SharedDbError as exc:
            log.warning("%s: cannot read the database revision: %s", service, exc)
            return
        if current.pending != 0 or current.unknown:
            log.warning(
                "%s: database is %s (at %s, code head %s); /ready answers 503 until it is",
                service,
                current.state,
                ", ".join(current.database) or "base",
                ", ".join(current.head),
            )
        return
    result = migrate_to_head(
        service,
        url,
        lock_timeout_s=settings.migration_lock_timeout,
        wait_timeout_s=settings.database_wait_timeout,
    )
    before, after = ", ".join(result.before) or "base", ", ".join(result.after)
    if result.action == "upgraded":
        log.info("%s: migrated %s -> %s", service, before, after)
    elif result.action == "migrated elsewhere":
        log.info("%s: another process migrated %s -> %s", service, before, after)
    else:
        log.info("%s: database at head %s, no migration needed", service, after)


def create_service_app(
    service: str,
    settings_factory: Callable[[], ServiceSettings],
    routers: list[APIRouter],
    resources: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    **fastapi_options: str,
) -> FastAPI:
    """The app of ``service``; nothing is read or migrated until the lifespan starts.

    ``resources``, if given, is entered after the migration and exited at shutdown
    (e.g. the gateway's HTTP client); ``app.state.settings`` is set by then.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = settings_factory()
        logging.getLogger("signalmarket").setLevel(settings.log_level.upper())
        try:
            app.state.database_url = settings.resolved_database_url()
            if not getattr(app.state, "database_prepared", False):  # done by `python -m`
                await run_in_threadpool(prepare_database, settings, app.state.database_url)
        except SharedDbError as exc:
            log.error("%s: startup failed: %s", service, exc)
            raise StartupFailed(str(exc)) from None
        engine = create_engine(app.state.database_url, pool_pre_ping=True)
        app.state.sessions = sessionmaker(engine, expire_on_commit=False)
        app.state.settings = settings
        try:
            if resources is None:
                yield
            else:
                async with resources(app):
                    yield
        finally:
            engine.dispose()

    app = FastAPI(title=service, lifespan=lifespan, **fastapi_options)  # type: ignore[arg-type]
    app.state.service = service
    problems.install(app)
    app.include_router(health.router)
    for router in routers:
        app.include_router(router)
    return app


def session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: a session on the service's own database."""
    with request.app.state.sessions() as db:
        yield db
