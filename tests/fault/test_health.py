"""``/health`` on every service: one body shape, 200 when its dependencies answer, and 503 within
a second when one is down or hangs (a probe with a 1 s timeout, compose's 3 s, always gets an
answer). Redis and PostgreSQL are this module's private servers (see conftest.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from justchat.stack import Stack

# The fixtures of conftest.py: ``await make_stack()`` and the private ``servers``.
StackFactory = Callable[..., Awaitable[Stack]]
Servers = Any

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# The rule is "answers within 1 s"; the client waits a little longer for a loaded machine.
CLIENT_TIMEOUT_S = 1.5
RECOVERY_S = 60.0


async def health(stack: Stack) -> dict[str, httpx.Response]:
    """Every service's ``/health``, asked at once; a slow answer fails the test (ReadTimeout)."""
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S) as http:
        answers = await asyncio.gather(*(http.get(s.health_url) for s in stack.services))
    return {service.name: answer for service, answer in zip(stack.services, answers, strict=True)}


def assert_shape(name: str, answer: httpx.Response, status: str) -> object:
    """The one body shape; returns its ``detail``."""
    body = answer.json()
    assert set(body) == {"status", "detail"}, (name, body)
    assert body["status"] == status, (name, body)
    assert answer.status_code == (200 if status == "ok" else 503), (name, answer.text)
    return body["detail"]


async def all_ok_eventually(stack: Stack) -> None:
    deadline = time.monotonic() + RECOVERY_S
    while True:
        try:
            answers = await health(stack)
        except httpx.TimeoutException:
            answers = {}
        if answers and all(a.status_code == 200 for a in answers.values()):
            return
        assert time.monotonic() < deadline, {n: a.text for n, a in answers.items()}
        await asyncio.sleep(0.2)


def unavailable(answers: dict[str, httpx.Response], names: Callable[[str], bool]) -> list[str]:
    """The details of the chosen services' answers, each checked to be a 503 of the one shape."""
    details = []
    for name, answer in answers.items():
        if names(name):
            detail = assert_shape(name, answer, "unavailable")
            assert isinstance(detail, str) and detail, (name, detail)
            details.append(detail)
    return details


async def test_every_service_answers_health_in_one_shape(make_stack: StackFactory) -> None:
    stack = await make_stack()
    answers = await health(stack)
    assert set(answers) == {"dashboard", "chat", "presence", "gateway-0", "gateway-1"}
    for name, answer in answers.items():
        detail = assert_shape(name, answer, "ok")
        assert isinstance(detail, dict), (name, detail)
    assert assert_shape("dashboard", answers["dashboard"], "ok") == {
        "postgres": "ok",
        "redis": "ok",
    }
    assert assert_shape("chat", answers["chat"], "ok") == {"partitions": list(range(8))}


async def test_health_is_503_at_once_when_redis_is_down(
    make_stack: StackFactory, servers: Servers
) -> None:
    stack = await make_stack()
    await servers.stop_redis()
    answers = await health(stack)
    details = unavailable(answers, lambda _: True)
    assert all("redis" in detail.lower() for detail in details), details
    assert answers["dashboard"].json()["detail"].startswith("redis: "), details

    await servers.start_redis()
    await all_ok_eventually(stack)


async def test_health_is_503_within_a_second_when_redis_hangs(
    make_stack: StackFactory, servers: Servers
) -> None:
    stack = await make_stack()
    assert servers.redis is not None and servers.redis.pid is not None
    pid = servers.redis.pid
    os.kill(pid, signal.SIGSTOP)  # up, port open, answering nothing
    try:
        answers = await health(stack)
    finally:
        os.kill(pid, signal.SIGCONT)
    details = unavailable(answers, lambda _: True)
    assert answers["dashboard"].json()["detail"] == "redis: no answer within 0.8s", details
    await all_ok_eventually(stack)


async def test_health_is_503_at_once_when_postgres_is_down(
    make_stack: StackFactory, servers: Servers
) -> None:
    stack = await make_stack()
    await servers.stop_postgres()
    answers = await health(stack)
    # Only the dashboard and chat-service use PostgreSQL.
    unavailable(answers, lambda name: name in ("dashboard", "chat"))
    assert answers["dashboard"].json()["detail"].startswith("postgres: ")
    for name in ("presence", "gateway-0", "gateway-1"):
        assert_shape(name, answers[name], "ok")

    await servers.start_postgres()
    await all_ok_eventually(stack)
