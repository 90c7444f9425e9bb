"""Handshakes/s (hello + join) for guests and for token users, then many members joining one
channel: how long until every one has its own channel_join."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import httpx

from bench import load
from bench.pool import Connected, close_all, connect_many
from bench.scenarios._context import Context

log = logging.getLogger(__name__)

ROOM = 10  # handshake clients join channels of ten: the join's fan-out stays small
PASSWORD = "Bench-pass-1"


async def connect(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    out: dict[str, Any] = {"clients": args.clients}
    out["guests"] = await _handshakes(ctx, "guests", 0, lambda _: None)
    if ctx.target.api_url:
        tokens = await register(ctx.target.api_url, max(1, args.token_users))
        out["tokens"] = await _handshakes(
            ctx, "tokens", 1, lambda i: tokens[i % len(tokens)], token_users=len(tokens)
        )
    else:
        log.warning("connect: no --api URL, token handshakes skipped")
    if args.join_members > 0:
        out["one_channel"] = await _one_channel(ctx)
    out["closes"] = dict(ctx.hub.closes)
    return out


async def _handshakes(
    ctx: Context, kind: str, block: int, token_of: Any, token_users: int = 0
) -> dict[str, Any]:
    args = ctx.args
    base = 200_000 + block * 100_000
    async with ctx.meter(f"connect-{kind}") as meter:
        done = await connect_many(
            ctx.hub,
            ctx.target.gateway_urls,
            range(block * args.clients, (block + 1) * args.clients),
            channel_of=lambda i: ctx.channel(base + i // ROOM),
            token_of=token_of,
            concurrency=args.concurrency,
            timeout_s=args.handshake_timeout,
            label=f"connect: {kind}",
        )
    result = _summary(done)
    if token_users:
        result["token_users"] = token_users
    result["processes"] = meter.rows
    log.info("connect: %s %.0f handshakes/s", kind, done.per_s)
    await close_all(done.clients)
    await load.settle(ctx.hub, timeout_s=30)
    return result


async def _one_channel(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    channel = ctx.channel(400_000)
    async with ctx.meter("connect-one-channel") as meter:
        done = await connect_many(
            ctx.hub,
            ctx.target.gateway_urls,
            range(10 * args.clients, 10 * args.clients + args.join_members),
            channel_of=lambda _: channel,
            concurrency=args.concurrency,
            timeout_s=min(args.handshake_timeout, args.join_timeout),
            deadline_s=args.join_timeout,
            label="connect: one channel",
        )
    result = {**_summary(done), "members": args.join_members, "processes": meter.rows}
    result["all_joined_s"] = result["seconds"] if len(done.clients) == args.join_members else None
    await close_all(done.clients)
    return result


def _summary(done: Connected) -> dict[str, Any]:
    return {
        "joined": len(done.clients),
        "seconds": round(done.seconds, 2),
        "handshakes_per_s": round(done.per_s, 1),
        "failures": dict(done.failures),
    }


async def register(api_url: str, count: int) -> list[str]:
    """Sign up ``count`` users through the REST API and log each in once: their tokens."""
    tokens = []
    run = secrets.token_hex(3)
    async with httpx.AsyncClient(base_url=f"{api_url}/api/v1", timeout=30) as http:
        for i in range(count):
            name = f"bench{run}u{i}"
            signup = await http.post("/auth/signup", json={"username": name, "password": PASSWORD})
            signup.raise_for_status()
            login = await http.post("/auth/login", data={"username": name, "password": PASSWORD})
            login.raise_for_status()
            tokens.append(str(login.json()["access_token"]))
    log.info("connect: %d users registered for token handshakes", count)
    return tokens
