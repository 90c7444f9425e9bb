"""Gateway discovery, OpenAPI, CORS, health, metrics and the error shape, on real servers."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar import Litestar

from dashboard_service import create_app
from justchat.keys import Keys
from justchat.settings import Settings

# The types of the ``serve`` and ``serve_app`` fixtures (see conftest.py).
Serve = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]
ServeApp = Callable[[Litestar], AbstractAsyncContextManager[httpx.AsyncClient]]
AssertError = Callable[..., str]  # the conftest fixtures' types

GATEWAY = "/api/v1/gateway"
JSON = {"content-type": "application/json"}
ROUTES = {
    ("/api/v1/auth/signup", "post"),
    ("/api/v1/auth/login", "post"),
    ("/api/v1/auth/me", "get"),
    ("/api/v1/gateway", "get"),
    ("/health", "get"),
    ("/metrics", "get"),
    ("/api/v1/dashboard/users", "get"),
    ("/api/v1/dashboard/users/{user_id}", "get"),
    ("/api/v1/dashboard/users/{user_id}", "patch"),
    ("/api/v1/dashboard/users/{user_id}", "delete"),
    ("/api/v1/dashboard/users/{user_id}/messages", "get"),
    ("/api/v1/dashboard/channels/active", "get"),
    ("/api/v1/dashboard/channels/members/{channel_id}", "get"),
    ("/api/v1/dashboard/channels/{channel_id}/sanctions", "get"),
    ("/api/v1/dashboard/channels/{channel_id}/sanctions", "post"),
    ("/api/v1/dashboard/channels/{channel_id}/sanctions/{kind}/{username}", "delete"),
    ("/api/v1/dashboard/audit", "get"),
    ("/api/v1/dashboard/dead-letters", "get"),
    ("/api/v1/dashboard/dead-letters/summary", "get"),
    ("/api/v1/channels/{channel_id}/messages", "get"),
}


@pytest.fixture
async def no_gateways(redis: aioredis.Redis, keys: Keys) -> AsyncIterator[None]:
    await redis.delete(keys.gateways, keys.gateway_urls, keys.gateway_rr)
    yield
    await redis.delete(keys.gateways, keys.gateway_urls, keys.gateway_rr)


async def add_gateway(
    redis: aioredis.Redis, keys: Keys, gateway_id: str, url: str, ttl_ms: int
) -> None:
    await redis.zadd(keys.gateways, {gateway_id: int(time.time() * 1000) + ttl_ms})
    await redis.hset(keys.gateway_urls, gateway_id, url)


# -- gateway -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_gateways")
async def test_gateway_round_robin_skips_expired(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys
) -> None:
    await add_gateway(redis, keys, "gw-b", "ws://b.test/ws", 60_000)
    await add_gateway(redis, keys, "gw-a", "ws://a.test/ws", 60_000)
    await add_gateway(redis, keys, "gw-0-dead", "ws://dead.test/ws", -1_000)
    urls = []
    for _ in range(6):
        response = await client.get(GATEWAY)
        assert response.status_code == 200, response.text
        assert list(response.json()) == ["url"]
        urls.append(response.json()["url"])
    assert set(urls) == {"ws://a.test/ws", "ws://b.test/ws"}
    assert all(first != second for first, second in itertools.pairwise(urls))
    assert int(await redis.get(keys.gateway_rr) or 0) == 6


@pytest.mark.usefixtures("no_gateways")
async def test_gateway_without_live_gateways_is_503(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
    keys: Keys,
    assert_nonempty_error: AssertError,
) -> None:
    assert_nonempty_error(await client.get(GATEWAY), 503, "No gateway available")
    await add_gateway(redis, keys, "gw-dead", "ws://dead.test/ws", -1_000)
    assert_nonempty_error(await client.get(GATEWAY), 503, "No gateway available")


@pytest.mark.usefixtures("no_gateways")
async def test_gateway_without_a_url_is_skipped(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
    keys: Keys,
    assert_nonempty_error: AssertError,
) -> None:
    await redis.zadd(keys.gateways, {"gw-nourl": int(time.time() * 1000) + 60_000})
    assert_nonempty_error(await client.get(GATEWAY), 503, "No gateway available")
    await add_gateway(redis, keys, "gw-ok", "ws://ok.test/ws", 60_000)
    assert (await client.get(GATEWAY)).json() == {"url": "ws://ok.test/ws"}


@pytest.mark.usefixtures("no_gateways")
async def test_public_ws_url_overrides_discovery(
    settings: Settings, serve: Serve, redis: aioredis.Redis, keys: Keys
) -> None:
    await add_gateway(redis, keys, "gw-a", "ws://a.test/ws", 60_000)
    public = "wss://chat.example.com/ws"
    async with serve(msgspec.structs.replace(settings, public_ws_url=public)) as http:
        for _ in range(3):
            assert (await http.get(GATEWAY)).json() == {"url": public}
    assert await redis.get(keys.gateway_rr) is None


# -- OpenAPI and CORS ----------------------------------------------------------------------------


async def test_openapi_lists_every_route_with_summary_and_examples(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operations = {
        (path, method): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) == ROUTES
    for key, operation in operations.items():
        assert operation.get("summary"), key
        # Litestar's own 400 shape is never sent: validation failures are 422 {"detail"}.
        assert "400" not in operation["responses"], key
    signup = operations[("/api/v1/auth/signup", "post")]
    assert set(signup["responses"]) == {"201", "409", "422"}
    conflict = signup["responses"]["409"]["content"]["application/json"]
    assert [e["value"] for e in conflict["examples"].values()] == [
        {"detail": "Username already exists."}
    ]
    login = operations[("/api/v1/auth/login", "post")]
    assert "application/x-www-form-urlencoded" in login["requestBody"]["content"]
    user_schema = schema["components"]["schemas"]["UserPublic"]
    assert all(field.get("examples") for field in user_schema["properties"].values())


async def test_cors_preflight_for_patch_with_authorization(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/v1/auth/me",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:5173")
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PATCH", "DELETE", "OPTIONS"} <= methods
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed


async def test_cors_only_allows_configured_origins(settings: Settings, serve: Serve) -> None:
    restricted = msgspec.structs.replace(
        settings, cors_origins="https://app.example.com, https://admin.example.com"
    )
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    async with serve(restricted) as http:
        good = await http.options(
            "/api/v1/auth/me", headers={"Origin": "https://admin.example.com", **preflight}
        )
        bad = await http.options(
            "/api/v1/auth/me", headers={"Origin": "https://evil.example.com", **preflight}
        )
    assert good.headers["access-control-allow-origin"] == "https://admin.example.com"
    assert bad.headers.get("access-control-allow-origin") != "https://evil.example.com"
    assert bad.status_code >= 400


# -- health and metrics --------------------------------------------------------------------------


async def test_health_is_ok_when_backends_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_health_and_gateway_are_503_without_redis(
    settings: Settings, serve: Serve, assert_nonempty_error: AssertError
) -> None:
    # Port 1 refuses connections at once: a Redis that is down, not one that is slow.
    broken = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with serve(broken) as http:
        health = await http.get("/health")
        gateway = await http.get(GATEWAY)
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert health.json()["detail"].startswith("redis: ")
    assert_nonempty_error(gateway, 503, "No gateway available")


def counter(text: str, method: str, route: str, status: int) -> float:
    line = re.search(
        rf'^justchat_dashboard_http_requests_total\{{method="{method}",route="{re.escape(route)}",'
        rf'status="{status}"\}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(line.group(1)) if line else 0.0


async def test_metrics_count_requests_by_route_and_status(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    await client.get("/api/v1/auth/me")
    await client.get("/api/v1/auth/me")
    await client.get("/no/such/route")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = response.text
    assert "# TYPE justchat_dashboard_http_requests_total counter" in after
    me = ("GET", "/api/v1/auth/me", 401)
    assert counter(after, *me) == counter(before, *me) + 2
    unmatched = ("GET", "unmatched", 404)
    assert counter(after, *unmatched) == counter(before, *unmatched) + 1


# -- the error shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/api/v1/nowhere", {}, 404),
        ("GET", "/api/v1/auth/nowhere/deeper", {}, 404),
        ("GET", "/nowhere", {}, 404),
        ("DELETE", "/api/v1/gateway", {}, 405),
        ("GET", "/api/v1/auth/signup", {}, 405),
        ("POST", "/api/v1/auth/signup", {"json": {"username": ["a"]}}, 422),
        ("POST", "/api/v1/auth/signup", {"json": {"username": "ab", "password": "x"}}, 422),
        ("POST", "/api/v1/auth/signup", {"content": b"x" * 100_000}, 413),
        ("POST", "/api/v1/auth/signup", {"content": b"{", "headers": JSON}, 400),
        ("POST", "/api/v1/auth/login", {"data": {"username": "nobody", "password": "x"}}, 401),
        ("GET", "/api/v1/auth/me", {"headers": {"Authorization": "Bearer x"}}, 401),
    ],
)
async def test_every_error_is_a_detail_string(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    assert_nonempty_error: AssertError,
) -> None:
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert_nonempty_error(response, status)
    assert response.headers["content-type"].startswith("application/json")


async def test_internal_errors_are_500_with_a_detail_string(
    settings: Settings, serve_app: ServeApp, assert_nonempty_error: AssertError
) -> None:
    app = create_app(settings)
    async with serve_app(app) as http:
        # A real failure, not a mock: the pool is closed while the app still serves.
        await app.state["services"].pool.close()
        response = await http.post("/api/v1/auth/login", data={"username": "a", "password": "b"})
        health = await http.get("/health")
    assert_nonempty_error(response, 500, "Internal server error")
    assert health.status_code == 503
    assert health.json()["detail"].startswith("postgres: ")
