"""``--users`` in channels of ``--room-size``, ``--rate`` messages/s offered in total: every
message stored and delivered?"""

from __future__ import annotations

import logging
from typing import Any

from bench import load
from bench.phase import Phase
from bench.pool import close_all, connect_many
from bench.scenarios._context import Context
from bench.target import stored_messages

log = logging.getLogger(__name__)

DRAIN_S = 30.0


async def rooms(ctx: Context) -> dict[str, Any]:
    args, hub = ctx.args, ctx.hub
    size = max(1, args.room_size)

    def channel_of(i: int) -> int:
        return ctx.channel(100_000 + i // size)

    joined = await connect_many(
        hub,
        ctx.target.gateway_urls,
        range(args.users),
        channel_of=channel_of,
        concurrency=args.concurrency,
        timeout_s=args.handshake_timeout,
        label="rooms: users",
    )
    clients = joined.clients
    members: dict[int, list[int]] = {}
    for client in clients:
        members.setdefault(client.channel, []).append(client.index)
    out: dict[str, Any] = {
        "users": len(clients),
        "channels": len(members),
        "offered_msgs_per_s": args.rate,
        "join_s": round(joined.seconds, 2),
        "failures": dict(joined.failures),
    }
    try:
        await load.settle(hub)
        # Consecutive sends go to different channels, each user sends at rate / users.
        senders = sorted(clients, key=lambda c: (c.index % size, c.index // size))
        phase = Phase("rooms", args.window)
        hub.phase = phase
        async with ctx.meter("rooms") as meter:
            await load.paced(phase, senders, args.rate, load.body(args.content_bytes))
        out["drain_s"] = round(await load.drain(phase, senders, DRAIN_S), 2)
        out.update(phase.report(members))
        out["stored"] = await stored_messages(ctx.target.database_url, sorted(members))
        out["processes"] = meter.rows
    finally:
        hub.phase = None
        await close_all(clients)
    out["closes"] = dict(hub.closes)
    return out
