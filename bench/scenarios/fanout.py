"""One channel of ``--members``: saturated deliveries/s (closed loop), then latency at half."""

from __future__ import annotations

import logging
from typing import Any

from bench import load
from bench.phase import Phase
from bench.pool import close_all, connect_many
from bench.scenarios._context import Context

log = logging.getLogger(__name__)

DRAIN_S = 30.0


async def fanout(ctx: Context) -> dict[str, Any]:
    args, hub = ctx.args, ctx.hub
    channel = ctx.channel(0)
    joined = await connect_many(
        hub,
        ctx.target.gateway_urls,
        range(args.members),
        channel_of=lambda _: channel,
        concurrency=args.concurrency,
        timeout_s=args.handshake_timeout,
        label="fanout: members",
    )
    clients = joined.clients
    out: dict[str, Any] = {
        "members": len(clients),
        "senders": min(args.senders, len(clients)),
        "join_s": round(joined.seconds, 2),
        "failures": dict(joined.failures),
    }
    try:
        await load.settle(hub)
        senders = clients[: args.senders]
        members = {channel: [c.index for c in clients]}
        body = load.body(args.content_bytes)

        saturated = Phase("fanout saturated", args.window)
        hub.phase = saturated
        async with ctx.meter("fanout-saturated") as meter:
            await load.closed_loop(saturated, senders, args.in_flight, body)
        await load.drain(saturated, senders, DRAIN_S)
        out["saturated"] = {**saturated.report(members), "processes": meter.rows}
        log.info("fanout: saturated at %.0f deliveries/s", out["saturated"]["deliveries_per_s"])

        half_rate = out["saturated"]["deliveries_per_s"] / 2 / max(1, len(clients))
        load.reset(senders)
        half = Phase("fanout half rate", args.window)
        hub.phase = half
        async with ctx.meter("fanout-half") as meter:
            await load.paced(half, senders, half_rate, body)
        await load.drain(half, senders, DRAIN_S)
        out["half"] = {
            **half.report(members),
            "offered_msgs_per_s": round(half_rate, 1),
            "processes": meter.rows,
        }
    finally:
        hub.phase = None
        await close_all(clients)
    out["closes"] = dict(hub.closes)
    return out
