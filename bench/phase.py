"""One measured phase: every receipt and refusal between its start and the end of its drain.

The window is when senders send; deliveries received inside it give the rate. Late arrivals
(after the window, during the drain) still count for loss and latency.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol

from bench import frames, stats

# Message numbers are unique in a run (the server keeps one message per client_msg_id).
_BASES = itertools.count(0, 1_000_000_000)


class Member(Protocol):
    index: int
    in_flight: int


class Phase:
    def __init__(self, name: str, window_s: float) -> None:
        self.name = name
        self.window_s = window_s
        self.start_ns = 0
        self.end_ns = 0
        self.last_receipt_ns = 0
        self.in_window = 0  # deliveries received inside the window (all receivers, echoes too)
        self.received = 0  # deliveries received in the phase
        self.tallies: dict[int, stats.Tally] = {}
        self.latency_us: list[int] = []  # send -> receipt at the other receivers
        self.ack_us: list[int] = []  # send -> the sender's own echo
        self.sends = stats.Sends()
        self.sent_to: dict[int, int] = {}  # channel -> messages sent to it
        # Message base + i was sent by senders[i] at sent_ns[i]: receivers look it up by number.
        self.base = next(_BASES)
        self.senders: list[int] = []
        self.sent_ns: list[int] = []
        self.on_ack: Callable[[Any], None] | None = None  # closed-loop senders send again here

    def begin(self, now_ns: int | None = None) -> None:
        self.start_ns = time.perf_counter_ns() if now_ns is None else now_ns
        self.end_ns = self.start_ns + int(self.window_s * 1e9)

    def tally(self, index: int) -> stats.Tally:
        tally = self.tallies.get(index)
        if tally is None:
            tally = self.tallies[index] = stats.Tally()
        return tally

    def sent(self, sender: int, channel: int, now_ns: int | None = None) -> int:
        """Record a message about to be sent; returns its number (its client_msg_id)."""
        self.sends.sent += 1
        self.sent_to[channel] = self.sent_to.get(channel, 0) + 1
        self.senders.append(sender)
        self.sent_ns.append(time.perf_counter_ns() if now_ns is None else now_ns)
        return self.base + len(self.sent_ns) - 1

    def on_chat(self, member: Member, payload: frames.ChatPayload, now_ns: int) -> None:
        i = frames.parse_msg_id(payload.client_msg_id) - self.base
        if not 0 <= i < len(self.sent_ns):
            return  # another phase's straggler
        sender, sent_ns = self.senders[i], self.sent_ns[i]
        self.last_receipt_ns = now_ns
        self.received += 1
        if now_ns <= self.end_ns:
            self.in_window += 1
        self.tally(member.index).add(payload.seq, sender, i)
        if sender == member.index:
            self.ack_us.append((now_ns - sent_ns) // 1000)
            self.sends.acked += 1
            member.in_flight -= 1
            if self.on_ack is not None:
                self.on_ack(member)
        else:
            self.latency_us.append((now_ns - sent_ns) // 1000)

    def on_error(self, member: Member, payload: frames.ErrorPayload) -> None:
        """After the handshake a bench client only sends messages: an error refuses one."""
        kind = "too fast" if payload.detail == frames.TOO_FAST else payload.detail
        self.sends.errors[kind] = self.sends.errors.get(kind, 0) + 1
        member.in_flight -= 1
        if self.on_ack is not None:
            self.on_ack(member)

    def in_flight(self, members: list[Any]) -> int:
        return sum(max(0, m.in_flight) for m in members)

    def report(self, channels: dict[int, list[int]]) -> dict[str, Any]:
        """Figures of the phase; ``channels``: channel -> receiver indexes (all of its members)."""
        seconds = self.window_s
        got = stats.delivery(
            [self.tallies.get(i) or stats.Tally() for i in members] for members in channels.values()
        )
        lat = stats.latency(self.latency_us)
        ack = stats.latency(self.ack_us)
        sends = self.sends
        offered = sum(n * len(channels.get(c, ())) for c, n in self.sent_to.items())
        return {
            "window_s": seconds,
            "sent": sends.sent,
            "sent_per_s": round(sends.sent / seconds, 1),
            "acked": sends.acked,
            "errors": dict(sends.errors),
            "too_fast": sends.errors.get("too fast", 0),
            "unanswered": sends.unanswered,
            "deliveries_in_window": self.in_window,
            "deliveries_per_s": round(self.in_window / seconds, 1),
            "deliveries": got.received,
            "expected": got.expected,
            "offered_deliveries": offered,  # every message sent, times its channel's members
            "delivered_pct": round(100.0 * got.received / offered, 2) if offered else 0.0,
            "lost": got.lost,
            "duplicates": got.duplicates,
            "reordered": got.reordered,
            "sender_reordered": got.sender_reordered,
            "messages": got.messages,
            "latency_ms": _ms(lat),
            "ack_ms": _ms(ack),
        }


def _ms(lat: stats.Latency) -> dict[str, float]:
    return {
        "count": lat.count,
        "p50": round(lat.p50_ms, 2),
        "p95": round(lat.p95_ms, 2),
        "p99": round(lat.p99_ms, 2),
        "max": round(lat.max_ms, 2),
    }
