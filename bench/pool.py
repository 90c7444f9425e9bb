"""Many clients at once: connect, hello and join with bounded concurrency, spread over gateways."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from picows import WSError, ws_connect

from bench.client import BenchClient, HandshakeError, Hub

log = logging.getLogger(__name__)

PROGRESS_S = 2.0
PORTS_PER_SOURCE = 20_000
SOURCES = 50


@dataclass
class Connected:
    clients: list[BenchClient]
    seconds: float
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def per_s(self) -> float:
        return len(self.clients) / self.seconds if self.seconds > 0 else 0.0


async def connect_many(
    hub: Hub,
    urls: list[str],
    indexes: range,
    *,
    channel_of: Callable[[int], int],
    token_of: Callable[[int], str | None] = lambda _: None,
    concurrency: int = 100,
    timeout_s: float = 30.0,
    deadline_s: float | None = None,
    label: str = "clients",
) -> Connected:
    """Client ``i`` goes to ``urls[i % len(urls)]`` and joins ``channel_of(i)``.

    Failures are counted by reason, not raised: a bench reports what the stack refused. No new
    client starts after ``deadline_s``. Beyond ``PORTS_PER_SOURCE`` clients per gateway, clients
    connect from several loopback addresses (one address has ~28,000 ephemeral ports).
    """
    clients: list[BenchClient] = []
    failures: Counter[str] = Counter()
    todo = iter(indexes)
    total = len(indexes)
    started = time.perf_counter()
    next_log = started + PROGRESS_S
    stop_at = started + deadline_s if deadline_s is not None else float("inf")
    spread = total / len(urls) > PORTS_PER_SOURCE

    async def one(i: int) -> None:
        def factory() -> BenchClient:
            return BenchClient(i, hub)

        try:
            _, client = await ws_connect(
                factory,
                urls[i % len(urls)],
                websocket_handshake_timeout=timeout_s,
                read_buffer_init_size=2048,
                enable_auto_pong=True,
                local_addr=(f"127.0.0.{2 + i % SOURCES}", 0) if spread else None,
            )
        except (OSError, WSError, TimeoutError) as exc:
            failures[f"connect: {type(exc).__name__}"] += 1
            return
        client = cast(BenchClient, client)
        try:
            await client.handshake(token_of(i), channel_of(i), timeout_s)
        except HandshakeError as exc:
            failures[str(exc)] += 1
            client.close()
            return
        clients.append(client)

    async def worker() -> None:
        nonlocal next_log
        for i in todo:
            if time.perf_counter() >= stop_at:
                failures["not started: deadline"] += 1
                continue
            await one(i)
            now = time.perf_counter()
            if now >= next_log:
                next_log = now + PROGRESS_S
                log.info(
                    "%s: %d/%d joined (%.0f/s), %d failed",
                    label,
                    len(clients),
                    total,
                    len(clients) / (now - started),
                    sum(failures.values()),
                )

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, total)))))
    seconds = time.perf_counter() - started
    if failures:
        log.warning("%s: failures %s", label, dict(failures))
    return Connected(clients=clients, seconds=seconds, failures=failures)


async def close_all(clients: list[BenchClient], timeout_s: float = 10.0) -> None:
    for client in clients:
        client.close()
    transports = [c.transport for c in clients if c.transport is not None]
    if not transports:
        return
    waits = [asyncio.ensure_future(t.wait_disconnected()) for t in transports]
    _, pending = await asyncio.wait(waits, timeout=timeout_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
        log.warning("%d connections did not close within %.0fs", len(pending), timeout_s)
