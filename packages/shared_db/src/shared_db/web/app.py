"""Build a service's FastAPI app: startup migration in the lifespan, shared routes."""

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from shared_db import runner
from shared_db.config import DbConfig
from shared_db.connections import engine as make_engine
from shared_db.errors import SharedDbError
from shared_db.exit_codes import exit_code
from shared_db.status import status
from shared_db.web import health, problem_details
from shared_db.web.hints import one_line
from shared_db.web.settings import ServiceSettings

log = logging.getLogger("signalmarket.startup")


class StartupFailed(RuntimeError):
    """The service cannot serve; the message is the one line to act on, ``code`` the exit
    code (see ``shared_db.exit_codes``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def prepare_database(settings: ServiceSettings, config: DbConfig) -> None:
    """The startup migration (or, with SKIP_MIGRATIONS, a warning when not at head)."""
    service = settings.service
    if settings.skip_migrations:
        log.warning("%s: SKIP_MIGRATIONS is set: not migrating", service)
        try:
            current = status(config, service)
        except SharedDbError as exc:
            log.warning("%s: cannot read the database revision: %s", service, exc.message)
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
    result = runner.migrate_to_head(config, service)
    before, after = ", ".join(result.before) or "base", ", ".join(result.after)
    if result.action == "upgraded":
        log.info("%s: migrated %s -> %s", service, before, after)
    elif result.action == "migrated elsewhere":
        log.info("%s: another process migrated %s -> %s", service, before, after)
    else:
        log.info("%s: database at head %s, no migration needed", service, after)


def start(settings_class: type[ServiceSettings]) -> tuple[ServiceSettings, DbConfig]:
    """Read the settings and prepare the database; raises ``StartupFailed`` with one line."""
    service = settings_class.service
    settings: ServiceSettings | None = None
    try:
        settings = settings_class.load()
        config = settings.db_config()
        prepare_database(settings, config)
    except SharedDbError as exc:
        # Settings that failed to load still say where the service runs.
        in_container = settings.in_container if settings else settings_class.running_in_container()
        message = one_line(exc, in_container=in_container)
        log.error("%s: startup failed: %s", service, message.removeprefix(f"{service}: "))
        raise StartupFailed(message, exit_code(exc)) from None
    return settings, config


def create_service_app(
    settings_class: type[ServiceSettings],
    routers: list[APIRouter],
    resources: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    **fastapi_options: str,
) -> FastAPI:
    """The app of a service; nothing is read or migrated until the lifespan starts.

    ``resources``, if given, is entered after the migration and exited at shutdown
    (e.g. the gateway's HTTP client); ``app.state.settings`` is set by then.
    """
    service = settings_class.service

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Done by `python -m <service>` before serving, else here.
        prepared: tuple[ServiceSettings, DbConfig] | None = getattr(app.state, "prepared", None)
        if prepared is None:
            prepared = await run_in_threadpool(start, settings_class)
        settings, config = prepared
        logging.getLogger("signalmarket").setLevel(settings.log_level.upper())
        engine = make_engine(
            config.require_url(service),
            connect_timeout_s=config.connect_timeout_s,
            application_name=service,
            pooled=True,
        )
        app.state.settings, app.state.db_config = settings, config
        app.state.sessions = sessionmaker(engine, expire_on_commit=False)
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
    problem_details.install(app)
    app.include_router(health.router)
    for router in routers:
        app.include_router(router)
    return app


def session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: a session on the service's own database."""
    with request.app.state.sessions() as db:
        yield db
