"""PROTOCOL.md section 5: the per-user send rate, with its documented defaults
(JUSTCHAT_SEND_RATE_PER_S=5, JUSTCHAT_SEND_BURST=20), on a stack of this module's own (the
session stack raises both so that other tests can send in bursts)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest

from justchat import wire
from justchat.client import Client
from justchat.stack import Stack, StackConfig

RATE_PER_S = 5
BURST = 20
TOO_FAST = "You are sending messages too fast."
RATE_VARS = ("JUSTCHAT_SEND_RATE_PER_S", "JUSTCHAT_SEND_BURST")


@pytest.fixture(scope="module")
async def rate_stack(
    tmp_path_factory: pytest.TempPathFactory,
    make_stack_config: Callable[..., StackConfig],
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
) -> AsyncIterator[Stack]:
    config = make_stack_config(
        tmp_path_factory.mktemp("rate-stack"),
        redis_url=redis_url,
        database_url=database_url,
        redis_prefix=f"{redis_prefix}r{uuid.uuid4().hex[:8]}:",
        jwt_secret=jwt_secret,
    )
    # The defaults, not the session's raised limits.
    env = {k: v for k, v in config.env.items() if k not in RATE_VARS}
    async with Stack(dataclasses.replace(config, env=env)) as stack:
        yield stack


@pytest.fixture
async def clients(rate_stack: Stack) -> AsyncIterator[Callable[..., object]]:
    opened: list[Client] = []

    async def connect(gateway: int, token: str | None = None) -> Client:
        client = await Client.connect(rate_stack.gateway_urls[gateway], token=token)
        opened.append(client)
        return client

    yield connect
    await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)


async def joined(client: Client, channel_id: int) -> None:
    await client.join(channel_id)
    await client.expect("channel_join", where=lambda f: f.payload.user == client.user)


async def outcomes(client: Client, count: int) -> tuple[list[wire.ChatSendFrame], list]:
    """The answers to ``count`` sends from ``client``: its own broadcasts and its errors."""
    sent: list[wire.ChatSendFrame] = []
    errors: list[wire.ErrorOut] = []
    while len(sent) + len(errors) < count:
        frame = await client.recv()
        if isinstance(frame, wire.ErrorFrame):
            errors.append(frame.payload)
        elif isinstance(frame, wire.ChatSendFrame) and frame.payload.sender == client.user:
            sent.append(frame)
    return sent, errors


def bound(elapsed_s: float) -> int:
    """The most sends a full bucket allows within ``elapsed_s``."""
    return BURST + math.ceil(elapsed_s * RATE_PER_S) + 1


async def test_rate_limit_burst_then_too_fast(clients, channel_id: int) -> None:
    sender = await clients(0)
    await joined(sender, channel_id)
    started = time.monotonic()
    for i in range(BURST + 10):
        await sender.send(channel_id, f"m{i}")
    sent, errors = await outcomes(sender, BURST + 10)
    elapsed = time.monotonic() - started
    assert BURST <= len(sent) <= bound(elapsed), (len(sent), elapsed)
    assert errors
    for error in errors:
        assert error.detail == TOO_FAST
        assert isinstance(error.retry_after_ms, int)
        assert 0 < error.retry_after_ms <= math.ceil(1000 / RATE_PER_S) + 50


async def test_rate_limit_refused_sends_are_not_broadcast_nor_stored(
    clients, channel_id: int, database_url: str
) -> None:
    sender, watcher = await clients(0), await clients(1)
    await joined(watcher, channel_id)
    await joined(sender, channel_id)
    for i in range(BURST + 10):
        await sender.send(channel_id, f"m{i}")
    sent, errors = await outcomes(sender, BURST + 10)
    assert errors
    seen = []
    while len(seen) < len(sent):
        frame = await watcher.recv()
        if isinstance(frame, wire.ChatSendFrame):
            seen.append(frame.payload.seq)
    assert seen == list(range(1, len(sent) + 1))
    with pytest.raises(TimeoutError):
        while True:
            frame = await watcher.recv(0.5)
            assert not isinstance(frame, wire.ChatSendFrame), frame
    db = await asyncpg.connect(database_url)
    try:
        stored = await db.fetchval(
            "SELECT count(*) FROM messages WHERE channel_id = $1", channel_id
        )
    finally:
        await db.close()
    assert stored == len(sent)


async def test_rate_limit_retry_after_is_enough(clients, channel_id: int) -> None:
    sender = await clients(1)
    await joined(sender, channel_id)
    for i in range(BURST + 3):
        await sender.send(channel_id, f"m{i}")
    _, errors = await outcomes(sender, BURST + 3)
    assert errors
    await asyncio.sleep(max(e.retry_after_ms for e in errors) / 1000 + 0.05)
    await sender.send(channel_id, "after waiting")
    frame = await sender.recv()
    assert isinstance(frame, wire.ChatSendFrame), frame
    assert frame.payload.content == "after waiting"


async def test_rate_limit_refills_at_the_rate(clients, channel_id: int) -> None:
    sender = await clients(0)
    await joined(sender, channel_id)
    for i in range(BURST + 5):
        await sender.send(channel_id, f"m{i}")
    _, errors = await outcomes(sender, BURST + 5)
    assert errors
    await asyncio.sleep(1.0)
    started = time.monotonic()
    for i in range(3 * RATE_PER_S):
        await sender.send(channel_id, f"later {i}")
    sent, errors = await outcomes(sender, 3 * RATE_PER_S)
    elapsed = time.monotonic() - started
    assert RATE_PER_S - 1 <= len(sent) <= RATE_PER_S + math.ceil(elapsed * RATE_PER_S) + 2
    assert errors


async def test_rate_limit_is_per_user_across_connections(
    clients, rate_stack: Stack, channel_id: int
) -> None:
    username = f"rl{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=f"{rate_stack.api_url}/api/v1", timeout=10) as api:
        created = await api.post(
            "/auth/signup", json={"username": username, "password": "Secret-pass1"}
        )
        assert created.status_code == 201
        login = await api.post(
            "/auth/login", data={"username": username, "password": "Secret-pass1"}
        )
    token = login.json()["access_token"]
    tabs = [await clients(0, token), await clients(1, token)]
    for tab in tabs:
        await joined(tab, channel_id)
    per_tab = 14  # 28 in all: more than the burst, though each tab alone stays under it
    started = time.monotonic()

    async def blast(tab: Client) -> None:
        for i in range(per_tab):
            await tab.send(channel_id, f"{id(tab)}-{i}")

    await asyncio.gather(*(blast(tab) for tab in tabs))

    async def own_answers(tab: Client) -> tuple[int, list]:
        sent = errors = 0
        texts = []
        while sent + errors < per_tab:
            frame = await tab.recv()
            if isinstance(frame, wire.ErrorFrame):
                errors += 1
                texts.append(frame.payload.detail)
            elif isinstance(frame, wire.ChatSendFrame) and frame.payload.content.startswith(
                f"{id(tab)}-"
            ):
                sent += 1
        return sent, texts

    results = await asyncio.gather(*(own_answers(tab) for tab in tabs))
    elapsed = time.monotonic() - started
    accepted = sum(sent for sent, _ in results)
    refused = [text for _, texts in results for text in texts]
    assert BURST <= accepted <= bound(elapsed), (accepted, elapsed)
    assert refused and set(refused) == {TOO_FAST}
    # Another user is not held back by this one.
    other = await clients(0)
    await joined(other, channel_id)
    await other.send(channel_id, "someone else")
    frame = await other.expect("chat_send", where=lambda f: f.payload.sender == other.user)
    assert frame.payload.content == "someone else"
