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
from shared_db.history import read_history
from shared_db.records import file_checksum
from shared_db.urls import where
from shared_db.web import health, problem_details
from shared_db.web.hints import one_line
from shared_db.web.middleware import BodyLimit, RequestContext
from shared_db.web.settings import DEFAULT_MAX_BODY_BYTES, ServiceSettings

log = logging.getLogger("signalmarket.startup")


class StartupFailed(RuntimeError):
    """The service cannot serve; the message is the one line to act on, ``code`` the exit
    code (see ``shared_db.exit_codes``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def prepare_database(settings: ServiceSettings, config: DbConfig) -> None:
    """The startup migration; with SKIP_MIGRATIONS, a bounded wait until a migrate step
    elsewhere has brought the database to a revision this code can serve on."""
    service = settings.service
    if settings.skip_migrations:
        state = runner.wait_until_compatible(
            config, service, settings.migration_wait_timeout, settings.migration_phases
        )
        log.info("%s: not migrating (SKIP_MIGRATIONS): the database is %s", service, state.state)
        return
    result = runner.migrate_to_head(config, service, phases=settings.migration_phases)
    before, after = ", ".join(result.before) or "base", ", ".join(result.after)
    if result.action == "upgraded":
        log.info("%s: migrated %s -> %s", service, before, after)
    elif result.action == "migrated elsewhere":
        log.info("%s: another process migrated %s -> %s", service, before, after)
    elif result.action == "ahead":
        log.info(
            "%s: the database is ahead of this code, compatible (%s: expand); serving on it "
            "without migrating",
            service,
            ", ".join(result.ahead),
        )
    else:
        log.info("%s: database at head %s, no migration needed", service, after)


def start(
    settings_class: type[ServiceSettings], *, migrate_only: bool = False
) -> tuple[ServiceSettings, DbConfig]:
    """Read the settings and prepare the database (``migrate_only``: migrate, whatever
    SKIP_MIGRATIONS says, as a deployment's migrate step); raises ``StartupFailed``
    after logging one line."""
    service = settings_class.service
    settings: ServiceSettings | None = None
    doing = "migration failed" if migrate_only else "startup failed"
    try:
        settings = settings_class.load()
        if migrate_only:
            settings = settings.model_copy(update={"skip_migrations": False})
        config = settings.db_config(caller="job" if migrate_only else "startup")
        prepare_database(settings, config)
    except SharedDbError as exc:
        # Settings that failed to load still say where the service runs.
        in_container = settings.in_container if settings else settings_class.running_in_container()
        message = one_line(exc, in_container=in_container)
        log.error("%s: %s: %s", service, doing, message.removeprefix(f"{service}: "))
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
        health.quiet_probes()
        url = config.parsed_url(service)
        # Short waits: a request (or a probe) that cannot get a connection in 2 s fails
        # then, instead of piling up behind a stalled database.
        engine = make_engine(
            url,
            connect_timeout_s=health.READY_TIMEOUT_S,
            application_name=service,
            pooled=True,
        )
        history = read_history(config, service)
        app.state.settings, app.state.db_config = settings, config
        app.state.sessions = sessionmaker(engine, expire_on_commit=False)
        app.state.readiness = health.ReadinessProbe(
            service,
            engine,
            history,
            {rev: file_checksum(r.path) for rev, r in history.revisions.items()},
            where(url),
            settings.migration_phases,
        )
        try:
            if resources is None:
                yield
            else:
                async with resources(app):
                    yield
        finally:
            app.state.readiness.close()
            engine.dispose()

    app = FastAPI(title=service, lifespan=lifespan, **fastapi_options)  # type: ignore[arg-type]
    app.state.service = service
    problem_details.install(app)
    # The last added runs first: the request id is set before the body is counted.
    app.add_middleware(BodyLimit, max_bytes=lambda: _max_body_bytes(app))
    app.add_middleware(RequestContext)
    app.include_router(health.router)
    for router in routers:
        app.include_router(router, responses=problem_details.PROBLEM_RESPONSES)
    return app


def _max_body_bytes(app: FastAPI) -> int:
    settings: ServiceSettings | None = getattr(app.state, "settings", None)
    return settings.max_body_bytes if settings else DEFAULT_MAX_BODY_BYTES


def session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: a session on the service's own database."""
    with request.app.state.sessions() as db:
        yield db
