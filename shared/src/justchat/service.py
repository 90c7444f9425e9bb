"""What every service process shares: Redis clients, health and metrics routes, running uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis
import uvicorn
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from justchat import logs
from justchat.aio import cancel_and_wait
from justchat.errors import ConfigError
from justchat.metrics import Registry
from justchat.settings import Settings, from_env

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
# Under a second, so that a probe with a 1 s timeout (and compose's 3 s) always gets an answer.
HEALTH_TIMEOUT_S: Final = 0.8


def redis_client(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """A pooled client with timeouts on every wait (never hang on a dead server).

    The pool blocks (up to 5 s) when all its connections are busy instead of failing, so a burst
    of commands queues for a connection rather than erroring.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=15,
    )
    return aioredis.Redis.from_pool(pool)


@contextlib.asynccontextmanager
async def background(**coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run the named coroutines as tasks while the block runs; cancel and await them after."""
    tasks = [asyncio.create_task(coro, name=name) for name, coro in coroutines.items()]
    try:
        yield
    finally:
        await cancel_and_wait(tasks)


def ops_routes(registry: Registry, check: HealthCheck) -> list[Route]:
    """``/health`` and ``/metrics``.

    ``/health`` answers ``{"status": "ok", "detail": {what check returned}}`` with 200, or
    ``{"status": "unavailable", "detail": "why"}`` with 503 (every service's shape), within
    ``HEALTH_TIMEOUT_S`` even when a dependency hangs.
    """

    async def health(_: Request) -> Response:
        try:
            detail = await asyncio.wait_for(check(), timeout=HEALTH_TIMEOUT_S)
        except TimeoutError:
            reason = f"no answer from Redis or PostgreSQL within {HEALTH_TIMEOUT_S}s"
            return _unavailable(reason)
        except Exception as exc:  # every failure is an unhealthy answer, never a crash
            return _unavailable(_reason(exc))
        return JSONResponse({"status": "ok", "detail": detail})

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(registry.render(), media_type="text/plain; version=0.0.4")

    return [Route("/health", health), Route("/metrics", metrics)]


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "detail": reason}, status_code=503)


def _reason(exc: Exception) -> str:
    """``"redis: ConnectionError: ..."``: which dependency failed, and how."""
    if isinstance(exc, RedisError):
        source = "redis: "
    elif isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        source = "postgres: "
    else:
        source = ""
    text = str(exc)
    return f"{source}{type(exc).__name__}" + (f": {text}" if text else "")


def main(service: str, build: Callable[[Settings], Any], **uvicorn_options: Any) -> None:
    """Settings from the environment, logging, then serve ``build(settings)`` until SIGTERM."""
    try:
        settings = from_env()
    except ConfigError as exc:
        sys.stderr.write(f"{service}: configuration error: {exc}\n")
        raise SystemExit(2) from exc
    logs.setup(service, fmt=settings.log_format, level=settings.log_level)
    config = uvicorn.Config(
        build(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=10,
        ws_max_size=settings.max_frame_bytes,
        **uvicorn_options,
    )
    server = uvicorn.Server(config)
    log.info("%s starting on %s:%s", service, settings.host, settings.port)
    # uvicorn installs its own SIGINT/SIGTERM handlers that begin a graceful shutdown.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    server.run()
    if not server.started:
        raise SystemExit(1)
