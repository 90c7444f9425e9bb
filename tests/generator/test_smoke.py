"""Every scenario, tiny, against a real stack: the generator's counters must agree with each
other and with what chat-service stored. Light load, so nothing may be lost. No timing is
asserted: figures are for ``make bench``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from bench import options
from bench.scenarios import SCENARIOS, Context
from bench.target import LIFTED_RATE, Target

from justchat.stack import Stack, StackConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def bench_stack(
    tmp_path_factory: pytest.TempPathFactory,
    make_stack_config: Callable[..., StackConfig],
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
) -> AsyncIterator[Stack]:
    async with Stack(
        make_stack_config(
            tmp_path_factory.mktemp("bench-stack"),
            redis_url=redis_url,
            database_url=database_url,
            redis_prefix=f"{redis_prefix}b{uuid.uuid4().hex[:8]}:",
            jwt_secret=jwt_secret,
            env=LIFTED_RATE,
        )
    ) as stack:
        yield stack


async def run(stack: Stack, tmp_path: Path, scenario: str, *argv: str) -> dict[str, Any]:
    target = Target(
        gateway_urls=stack.gateway_urls,
        api_url=stack.api_url,
        database_url=stack.database_url,
        stack=stack,
    )
    target.refresh()
    args = options.parse([scenario, "--results", str(tmp_path), *argv])
    return await SCENARIOS[scenario](Context(target=target, args=args, results=tmp_path, stamp="t"))


def consistent(phase: dict[str, Any], members: int) -> None:
    """Every message sent was echoed, stored once and delivered to every member, in order."""
    assert phase["sent"] > 0
    assert phase["errors"] == {}
    assert phase["acked"] == phase["sent"]
    assert phase["unanswered"] == 0
    assert phase["messages"] == phase["sent"]
    assert phase["offered_deliveries"] == phase["sent"] * members
    assert phase["deliveries"] == phase["expected"] == phase["offered_deliveries"]
    assert (phase["lost"], phase["duplicates"]) == (0, 0)
    assert (phase["reordered"], phase["sender_reordered"]) == (0, 0)
    assert phase["delivered_pct"] == 100.0
    assert phase["ack_ms"]["count"] == phase["sent"]
    assert phase["latency_ms"]["count"] == phase["sent"] * (members - 1)


def processes_measured(rows: list[dict[str, Any]]) -> None:
    names = {row["process"] for row in rows}
    assert {"gateway-0", "gateway-1", "chat", "bench (generator)"} <= names
    assert all(row["rss_mb"] > 0 for row in rows)


async def test_fanout_counts_every_delivery(bench_stack: Stack, tmp_path: Path) -> None:
    out = await run(
        bench_stack,
        tmp_path,
        "fanout",
        "--members",
        "20",
        "--senders",
        "2",
        "--in-flight",
        "3",
        "--window",
        "1",
    )
    assert (out["members"], out["failures"]) == (20, {})
    consistent(out["saturated"], 20)
    consistent(out["half"], 20)
    processes_measured(out["saturated"]["processes"])
    assert out["closes"] == {}


async def test_rooms_counts_match_the_stored_rows(bench_stack: Stack, tmp_path: Path) -> None:
    out = await run(
        bench_stack,
        tmp_path,
        "rooms",
        "--users",
        "20",
        "--room-size",
        "5",
        "--rate",
        "40",
        "--window",
        "1",
    )
    assert (out["users"], out["channels"]) == (20, 4)
    consistent(out, 5)
    assert out["stored"] == out["sent"]
    processes_measured(out["processes"])


async def test_connect_joins_guests_tokens_and_one_channel(
    bench_stack: Stack, tmp_path: Path
) -> None:
    out = await run(
        bench_stack,
        tmp_path,
        "connect",
        "--clients",
        "12",
        "--token-users",
        "2",
        "--join-members",
        "15",
    )
    for kind in ("guests", "tokens"):
        assert (out[kind]["joined"], out[kind]["failures"]) == (12, {})
        assert out[kind]["handshakes_per_s"] > 0
    assert out["tokens"]["token_users"] == 2
    one = out["one_channel"]
    assert (one["joined"], one["failures"]) == (15, {})
    assert one["all_joined_s"] == one["seconds"]
    assert out["closes"] == {}


async def test_idle_divides_each_gateways_growth_by_its_connections(
    bench_stack: Stack, tmp_path: Path
) -> None:
    out = await run(bench_stack, tmp_path, "idle", "--idle", "30", "--settle", "0.5")
    assert (out["clients"], out["failures"]) == (30, {})
    gateways = out["gateways"]
    assert [g["connections"] for g in gateways] == [15, 15]
    for g in gateways:
        growth_kb = (g["rss_after_mb"] - g["rss_before_mb"]) * 1024
        assert g["kb_per_connection"] == pytest.approx(growth_kb / 15, abs=0.1 * 1024 / 15 + 0.1)
    processes_measured(out["processes"])
