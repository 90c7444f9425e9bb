"""Operations: ``/health`` and ``/metrics`` at the root, request counting, the OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import anyio
from litestar import MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import Message, Scope
from msgspec import Struct

from dashboard_service.deps import services_of
from dashboard_service.routes._docs import ok
from justchat.metrics import Registry

# Both probes run at once, each bounded: /health answers within a second whatever hangs.
CHECK_TIMEOUT_S: Final = 0.8
METRICS_MEDIA_TYPE: Final = "text/plain; version=0.0.4"  # Litestar adds the charset
# Label values must stay few: any other method (clients may send anything) counts as "OTHER".
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Health(Struct, frozen=True, kw_only=True):
    """The ``/health`` body of every justchat service."""

    status: Literal["ok", "unavailable"]
    detail: dict[str, Any] | str  # what the service reports when ok, else why it is not


HEALTHY: Final = Health(status="ok", detail={"postgres": "ok", "redis": "ok"})


class RequestCounter:
    """A ``before_send`` hook: it sees every response, including 404s and 405s from routing."""

    def __init__(self, registry: Registry) -> None:
        self.requests = registry.counter(
            "dashboard_http_requests", "HTTP requests answered, by route template and status"
        )

    async def __call__(self, message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        method = scope.get("method", "")
        self.requests.inc(
            route=scope.get("path_template") or "unmatched",
            method=method if method in _METHODS else "OTHER",
            status=str(message["status"]),
        )


async def _check(name: str, probe: Callable[[], Awaitable[Any]]) -> str | None:
    """None when ``probe`` answers in time, else why not."""
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S):
            await probe()
    except TimeoutError:
        return f"{name}: no answer within {CHECK_TIMEOUT_S}s"
    except Exception as exc:  # every failure is an unhealthy answer, never a crash
        reason = str(exc)
        return f"{name}: {type(exc).__name__}" + (f": {reason}" if reason else "")
    return None


def ops_routes(registry: Registry) -> list[HTTPRouteHandler]:
    @get(
        "/health",
        tags=["ops"],
        summary="Readiness",
        description=(
            "200 when PostgreSQL and Redis both answer, 503 with the reason otherwise, within a"
            f" second ({CHECK_TIMEOUT_S}s per backend, probed together). Every justchat service"
            " answers this shape."
        ),
        responses={
            200: ok("Both backends answer", HEALTHY),
            503: ok(
                "A backend does not answer",
                Health(status="unavailable", detail="redis: ConnectionError: ..."),
            ),
        },
        cache=False,
    )
    async def health(state: State) -> Response[Health]:
        if "services" not in state:
            return Response(
                Health(status="unavailable", detail="starting"),
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        services = services_of(state)
        results: dict[str, str | None] = {}

        async def probe(name: str, call: Callable[[], Awaitable[Any]]) -> None:
            results[name] = await _check(name, call)

        async with anyio.create_task_group() as group:
            group.start_soon(probe, "postgres", lambda: services.pool.fetchval("SELECT 1"))
            group.start_soon(probe, "redis", services.redis.ping)
        problems = [problem for _, problem in sorted(results.items()) if problem is not None]
        if problems:
            return Response(
                Health(status="unavailable", detail="; ".join(problems)),
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response(HEALTHY)

    @get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        description="Text exposition format 0.0.4.",
        media_type=MediaType.TEXT,
        responses={
            200: ok(
                "Counters and gauges",
                "# TYPE justchat_dashboard_http_requests_total counter\n"
                'justchat_dashboard_http_requests_total{method="GET",route="/health",'
                'status="200"} 3\n',
                data_container=str,
                media_type=MediaType.TEXT,
            )
        },
    )
    async def metrics() -> Response[str]:
        return Response(registry.render(), media_type=METRICS_MEDIA_TYPE)

    return [health, metrics]


@get(
    "/openapi.json",
    include_in_schema=False,
    summary="This API's OpenAPI document",
    media_type=MediaType.JSON,
    cache=False,
)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    # The document Litestar serves under /api/v1/docs (built once); rendering it per call is cheap.
    return request.app.openapi_schema.to_schema()
