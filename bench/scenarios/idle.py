"""``--idle`` connected, joined clients doing nothing: each gateway's resident memory per
connection (RSS after minus before, over the connections it holds) and the idle CPU."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from bench import load, procs
from bench.pool import close_all, connect_many
from bench.scenarios._context import Context

log = logging.getLogger(__name__)

ROOM = 10
IDLE_WINDOW_S = 5.0


async def idle(ctx: Context) -> dict[str, Any]:
    args, target = ctx.args, ctx.target
    urls = target.gateway_urls
    before = {w.pid: procs.rss_kb(w.pid) for w in target.gateways}
    done = await connect_many(
        ctx.hub,
        urls,
        range(args.idle),
        channel_of=lambda i: ctx.channel(500_000 + i // ROOM),
        concurrency=args.concurrency,
        timeout_s=args.handshake_timeout,
        label="idle: clients",
    )
    out: dict[str, Any] = {
        "clients": len(done.clients),
        "connect_s": round(done.seconds, 2),
        "handshakes_per_s": round(done.per_s, 1),
        "failures": dict(done.failures),
    }
    try:
        await load.settle(ctx.hub, quiet_s=args.settle)
        async with ctx.meter("idle") as meter:
            await asyncio.sleep(IDLE_WINDOW_S)
        per_gateway = []
        # Gateway i of the stack is urls[i]: client k went to urls[k % len(urls)].
        for i, gateway in enumerate(target.gateways):
            held = sum(1 for c in done.clients if c.index % len(urls) == i and not c.closed)
            after = procs.rss_kb(gateway.pid)
            per_gateway.append(
                {
                    "gateway": gateway.name,
                    "connections": held,
                    "rss_before_mb": round(before[gateway.pid] / 1024, 1),
                    "rss_after_mb": round(after / 1024, 1),
                    "kb_per_connection": round((after - before[gateway.pid]) / held, 1)
                    if held
                    else None,
                }
            )
        out["gateways"] = per_gateway
        out["generator_rss_mb"] = round(procs.rss_kb(os.getpid()) / 1024, 1)
        out["processes"] = meter.rows
    finally:
        await close_all(done.clients, timeout_s=30)
    out["closes"] = dict(ctx.hub.closes)
    return out
