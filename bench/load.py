"""Driving senders: an open-loop pacer (a fixed offered rate) or a closed loop (a window of
messages in flight per sender), then a drain until every answer is in."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from bench import frames
from bench.client import BenchClient, Hub
from bench.phase import Phase

log = logging.getLogger(__name__)

TICK_S: Final = 0.002
PROGRESS_S: Final = 2.0
QUIET_S: Final = 1.0  # no receipt for this long, nothing in flight: the drain is over


def _progress(phase: Phase, now_ns: int) -> None:
    elapsed = (now_ns - phase.start_ns) / 1e9
    log.info(
        "%s: %.0fs sent %d (%.0f/s), acked %d, errors %d, deliveries %d (%.0f/s)",
        phase.name,
        elapsed,
        phase.sends.sent,
        phase.sends.sent / elapsed,
        phase.sends.acked,
        phase.sends.rejected,
        phase.received,
        phase.received / elapsed,
    )


async def paced(phase: Phase, senders: list[BenchClient], rate_per_s: float, body: bytes) -> None:
    """Open loop: ``rate_per_s`` messages a second in total, round-robin over the senders,
    whatever the answers; for the phase's window."""
    live = [s for s in senders if not s.closed]
    if not live or rate_per_s <= 0:
        return
    phase.begin()
    start, end = phase.start_ns, phase.end_ns
    next_log = start + int(PROGRESS_S * 1e9)
    done = 0
    turn = 0
    count = len(live)
    while (now := time.perf_counter_ns()) < end:
        due = int((now - start) * rate_per_s / 1e9) - done
        for _ in range(due):
            sender = live[turn % count]
            turn += 1
            sender.send_chat(body, phase.sent(sender.index, sender.channel))
        done += due
        if now >= next_log:
            next_log = now + int(PROGRESS_S * 1e9)
            _progress(phase, now)
        await asyncio.sleep(TICK_S)


async def closed_loop(phase: Phase, senders: list[BenchClient], window: int, body: bytes) -> None:
    """Each sender keeps ``window`` messages in flight (each echo or refusal frees a slot) for
    the phase's window: the stack always has more to do than it can, without unbounded queues."""

    def again(member: object) -> None:
        if not isinstance(member, BenchClient) or time.perf_counter_ns() >= phase.end_ns:
            return
        while member.in_flight < window and not member.closed:
            member.send_chat(body, phase.sent(member.index, member.channel))

    phase.on_ack = again
    phase.begin()
    for sender in senders:
        again(sender)
    next_log = phase.start_ns + int(PROGRESS_S * 1e9)
    while (now := time.perf_counter_ns()) < phase.end_ns:
        if now >= next_log:
            next_log = now + int(PROGRESS_S * 1e9)
            _progress(phase, now)
        await asyncio.sleep(0.05)
    phase.on_ack = None


async def drain(phase: Phase, senders: list[BenchClient], timeout_s: float) -> float:
    """Wait until nothing is in flight and nothing arrived for ``QUIET_S``; returns seconds
    waited (``timeout_s`` if answers were still missing)."""
    started = time.perf_counter()
    deadline = started + timeout_s
    next_log = started + PROGRESS_S
    while (now := time.perf_counter()) < deadline:
        quiet = (time.perf_counter_ns() - max(phase.last_receipt_ns, phase.end_ns)) / 1e9
        waiting = phase.in_flight([s for s in senders if not s.closed])
        if waiting == 0 and quiet >= QUIET_S:
            return now - started
        if now >= next_log:
            next_log = now + PROGRESS_S
            log.info(
                "%s: draining, %d in flight, %d deliveries", phase.name, waiting, phase.received
            )
        await asyncio.sleep(0.05)
    log.warning("%s: drain gave up after %.0fs", phase.name, timeout_s)
    return timeout_s


def body(size: int) -> bytes:
    return frames.content(size)


async def settle(hub: Hub, quiet_s: float = 1.0, timeout_s: float = 60.0) -> float:
    """Wait until no frame arrived for ``quiet_s`` (the joins' broadcasts are over); returns
    seconds waited."""
    started = time.perf_counter()
    seen, since = hub.frames, started
    while (now := time.perf_counter()) - started < timeout_s:
        if hub.frames != seen:
            seen, since = hub.frames, now
        elif now - since >= quiet_s:
            break
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


def reset(senders: list[BenchClient]) -> None:
    """A new phase: earlier stragglers no longer count as in flight."""
    for sender in senders:
        sender.in_flight = 0
