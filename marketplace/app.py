"""The composition root: builds the Litestar app from the domains in marketplace.registry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from arq import create_pool
from litestar import Litestar, MediaType, get
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from sqlalchemy import text

from marketplace import registry
from marketplace.core import cache
from marketplace.core.db import make_engine, make_sessionmaker, provide_db_session
from marketplace.core.errors import EXCEPTION_HANDLERS, ServiceUnavailable
from marketplace.core.logging import configure_logging
from marketplace.core.middleware import IdempotencyMiddleware, RequestContextMiddleware
from marketplace.core.openapi import document_problems
from marketplace.core.redis import arq_settings, make_redis, queue_name
from marketplace.settings import get_settings

HERE = Path(__file__).parent
log = structlog.get_logger("marketplace")


@get("/health", tags=["system"], operation_id="health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", tags=["system"], operation_id="ready", summary="Readiness: PostgreSQL and Redis answer")
async def ready(state: State) -> dict[str, str]:
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("select 1"))
        await state.redis.ping()
    except Exception as exc:
        raise ServiceUnavailable(f"Not ready: {type(exc).__name__}. Check DATABASE_URL and REDIS_URL.") from exc
    return {"status": "ready", "database": "ok", "redis": "ok"}


@get("/docs", include_in_schema=False)
async def docs_redirect() -> Redirect:
    return Redirect("/schema")


@get("/", include_in_schema=False, media_type=MediaType.HTML)
async def home() -> Redirect:
    return Redirect("/catalog")


@contextlib.asynccontextmanager
async def core_lifespan(app: Litestar) -> AsyncIterator[None]:
    settings = get_settings()
    state = app.state
    state.engine = make_engine(settings.database_url or "")
    state.sessionmaker = make_sessionmaker(state.engine)
    state.redis = make_redis()
    cache.set_publisher(state.redis)
    state.arq = await create_pool(arq_settings(), default_queue_name=queue_name())
    worker_task = None
    if settings.run_worker_in_process:
        from marketplace.worker import build_worker

        worker = build_worker(state.arq)
        worker_task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        if worker_task is not None:
            await worker.close()
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker_task
        await state.arq.aclose()
        await state.redis.aclose()
        await state.engine.dispose()


def create_app() -> Litestar:
    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    registry.import_models()
    from marketplace.accounts.routes import provide_principal

    return Litestar(
        route_handlers=[health, ready, docs_redirect, home,
                        create_static_files_router(path="/static", directories=[HERE / "static"]),
                        *registry.collect("routes", "ROUTES")],
        dependencies={"db_session": Provide(provide_db_session), "principal": Provide(provide_principal)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[RequestContextMiddleware, IdempotencyMiddleware],
        lifespan=[core_lifespan, *registry.collect("routes", "LIFESPANS")],
        template_config=TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine),
        openapi_config=OpenAPIConfig(
            title="API Marketplace",
            version="1.0.0",
            description="Publish, sell and call HTTP APIs. Errors are RFC 9457 problem+json.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", description="A personal access token or OAuth access token"),
            }),
            security=[{"bearer": []}],
        ),
        on_startup=[document_problems],
        debug=False,
    )
