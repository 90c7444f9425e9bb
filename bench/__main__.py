"""``make bench``: throughput and latency through the whole stack, with figures to quote.

Starts the system (private servers unless REDIS_URL / DATABASE_URL are set), then runs:

1. fan-out: ``--members`` clients in one channel, spread over the gateways; ``--senders`` of them
   send ``--messages`` each at a paced rate; every delivery's latency (send -> receipt) is kept.
2. throughput: ``--pairs`` channels with two clients each; every client sends as fast as its own
   echoes come back (a window of ``--window`` in flight) for ``--seconds``.

Prints the figures and each service's resident memory. Never fails on time: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from justchat import logs, wire
from justchat.client import Client
from justchat.devservers import find_free_port_run
from justchat.stack import Stack, StackConfig

log = logging.getLogger("bench")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def connect_all(urls: list[str], count: int) -> list[Client]:
    clients = []
    for i in range(count):
        clients.append(await Client.connect(urls[i % len(urls)]))
        if (i + 1) % 100 == 0:
            log.info("connected %s/%s", i + 1, count)
    return clients


async def fan_out(
    urls: list[str], members: int, senders: int, messages: int, rate: float
) -> dict[str, float]:
    channel = 1
    clients = await connect_all(urls, members)
    for i, client in enumerate(clients):
        await client.join(channel)
        await client.expect(
            "channel_join", where=lambda f, c=client: f.payload.user == c.user, timeout_s=60
        )
        if (i + 1) % 100 == 0:
            log.info("joined %s/%s", i + 1, members)
    expected = senders * messages
    latencies: list[float] = []

    async def receive(client: Client) -> None:
        got = 0
        while got < expected:
            frame = await client.recv(60)
            if isinstance(frame, wire.ChatSendFrame):
                got += 1
                latencies.append(time.perf_counter() - float(frame.payload.content))

    async def send(client: Client) -> None:
        for _ in range(messages):
            await client.send(channel, repr(time.perf_counter()))
            await asyncio.sleep(1 / rate)

    log.info("fan-out: %s senders x %s messages to %s members", senders, messages, members)
    started = time.perf_counter()
    receivers = [asyncio.create_task(receive(c)) for c in clients]
    await asyncio.gather(*(send(c) for c in clients[:senders]))
    await asyncio.gather(*receivers)
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.close()
    ms = [x * 1000 for x in latencies]
    return {
        "deliveries": len(ms),
        "deliveries_per_s": len(ms) / elapsed,
        "p50_ms": statistics.median(ms),
        "p95_ms": percentile(ms, 0.95),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
    }


async def throughput(urls: list[str], pairs: int, seconds: float, window: int) -> dict[str, float]:
    clients = await connect_all(urls, pairs * 2)
    for i, client in enumerate(clients):
        await client.join(1000 + i // 2)
        await client.expect("channel_join", where=lambda f, c=client: f.payload.user == c.user)
    stored = 0
    deadline = time.perf_counter() + seconds

    async def run(client: Client, channel: int) -> None:
        nonlocal stored
        in_flight = 0
        while time.perf_counter() < deadline or in_flight:
            while in_flight < window and time.perf_counter() < deadline:
                await client.send(channel, "x" * 64)
                in_flight += 1
            frame = await client.recv(30)
            if isinstance(frame, wire.ChatSendFrame) and frame.payload.sender == client.user:
                in_flight -= 1
                stored += 1

    started = time.perf_counter()
    await asyncio.gather(*(run(c, 1000 + i // 2) for i, c in enumerate(clients)))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.close()
    return {"messages": stored, "messages_per_s": stored / elapsed}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="justchat-bench-") as run_dir:
        base = find_free_port_run(args.gateways + 3)
        config = StackConfig(
            gateways=args.gateways,
            api_port=base,
            gateway_port=base + 3,
            chat_port=base + 1,
            presence_port=base + 2,
            run_dir=Path(run_dir),
            redis_url=os.environ.get("REDIS_URL", ""),
            database_url=os.environ.get("DATABASE_URL", ""),
            env={
                "JUSTCHAT_REDIS_PREFIX": f"bench{os.getpid()}:",
                "JUSTCHAT_LOG_LEVEL": "WARNING",
                # Measure the system, not the per-user send limit.
                "JUSTCHAT_SEND_RATE_PER_S": "100000",
                "JUSTCHAT_SEND_BURST": "100000",
            },
        )
        stack = Stack(config)
        await stack.start()
        try:
            fan = await fan_out(
                stack.gateway_urls, args.members, args.senders, args.messages, args.rate
            )
            put = await throughput(stack.gateway_urls, args.pairs, args.seconds, args.window)
            memory = {s.name: rss_mb(s.process.pid) for s in stack.services if s.process}
        finally:
            await stack.stop()
    lines = [
        f"fan-out  {args.members} members on {args.gateways} gateways, {args.senders} senders x "
        f"{args.messages} msgs at {args.rate}/s each:",
        f"  {fan['deliveries']:.0f} deliveries, {fan['deliveries_per_s']:.0f}/s; latency p50 "
        f"{fan['p50_ms']:.1f} ms, p95 {fan['p95_ms']:.1f} ms, p99 {fan['p99_ms']:.1f} ms, "
        f"max {fan['max_ms']:.1f} ms",
        f"throughput  {args.pairs} channels x 2 clients, window {args.window}, {args.seconds}s:",
        f"  {put['messages']:.0f} messages stored and echoed, {put['messages_per_s']:.0f}/s",
        "resident memory after the run (MB): "
        + ", ".join(f"{name} {mb:.0f}" for name, mb in memory.items()),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s per sender")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    logs.setup("bench")
    asyncio.run(main(parser.parse_args()))
