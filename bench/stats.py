"""Counting what arrived: per-receiver loss, duplicates and reordering, and latency percentiles.

Pure bookkeeping (no I/O), so the generator's own correctness is unit-tested apart from sockets.

A channel's messages carry a gap-free ``seq``. Each receiver keeps one ``Tally``: the seqs it got,
in arrival order. A phase's expected range for a channel is the lowest to the highest seq any of
its receivers saw; a receiver that misses one of them lost it. A seq at or below the highest seen
is either a late arrival filling a gap (reordered) or a second copy (duplicate). Senders' own
counters must also increase at every receiver (``sender_reordered``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class Tally:
    """What one receiver got from one channel in one phase."""

    __slots__ = (
        "duplicates",
        "first",
        "gaps",
        "last",
        "last_counter",
        "received",
        "reordered",
        "sender_reordered",
    )

    def __init__(self) -> None:
        self.first = 0  # lowest seq received (0: none yet)
        self.last = 0  # highest seq received
        self.received = 0  # distinct seqs
        self.duplicates = 0
        self.reordered = 0  # seqs that arrived after a higher one
        self.sender_reordered = 0  # a sender's counter that did not increase
        self.gaps: list[list[int]] = []  # [lo, hi] seqs missing between first and last
        self.last_counter: dict[int, int] = {}

    def add(self, seq: int, sender: int = -1, counter: int = 0) -> None:
        if sender >= 0:
            if counter > self.last_counter.get(sender, -1):
                self.last_counter[sender] = counter
            else:
                self.sender_reordered += 1
        if seq == self.last + 1 and self.first:  # the usual case, first
            self.last = seq
            self.received += 1
        elif seq > self.last:
            if self.last and seq > self.last + 1:
                self.gaps.append([self.last + 1, seq - 1])
            if not self.first:
                self.first = seq
            self.last = seq
            self.received += 1
        elif seq < self.first:
            if seq < self.first - 1:
                self.gaps.insert(0, [seq + 1, self.first - 1])
            self.first = seq
            self.received += 1
            self.reordered += 1
        elif self._fill(seq):
            self.received += 1
            self.reordered += 1
        else:
            self.duplicates += 1

    def _fill(self, seq: int) -> bool:
        """Take ``seq`` out of the gaps; False if it was not missing (a duplicate)."""
        for i, (lo, hi) in enumerate(self.gaps):
            if lo <= seq <= hi:
                if lo == hi:
                    del self.gaps[i]
                elif seq == lo:
                    self.gaps[i][0] = seq + 1
                elif seq == hi:
                    self.gaps[i][1] = seq - 1
                else:
                    self.gaps[i : i + 1] = [[lo, seq - 1], [seq + 1, hi]]
                return True
        return False


@dataclass
class Delivery:
    """Loss and order over all receivers of some channels."""

    expected: int = 0  # deliveries that should have happened: sum of each channel's range
    received: int = 0  # distinct deliveries
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    sender_reordered: int = 0
    messages: int = 0  # distinct messages (seqs) seen, all channels


def delivery(channels: Iterable[Sequence[Tally]]) -> Delivery:
    """Each item: the tallies of every receiver of one channel (a receiver that got nothing too).

    Message seqs beyond what any receiver saw cannot be counted here: senders count those
    (sent but never answered).
    """
    out = Delivery()
    for tallies in channels:
        seen = [t for t in tallies if t.received]
        if not seen:
            continue
        lo = min(t.first for t in seen)
        hi = max(t.last for t in seen)
        span = hi - lo + 1
        out.messages += span
        for tally in tallies:
            out.expected += span
            out.received += tally.received
            out.lost += span - tally.received
            out.duplicates += tally.duplicates
            out.reordered += tally.reordered
            out.sender_reordered += tally.sender_reordered
    return out


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values, ``p`` in 0..100; 0.0 for no values."""
    if not ordered:
        return 0.0
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least the first
    return float(ordered[int(rank) - 1])


@dataclass
class Latency:
    count: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


def latency(samples_us: list[int]) -> Latency:
    """Percentiles in milliseconds of samples in microseconds (sorts the list in place)."""
    samples_us.sort()
    if not samples_us:
        return Latency()
    return Latency(
        count=len(samples_us),
        p50_ms=percentile(samples_us, 50) / 1000,
        p95_ms=percentile(samples_us, 95) / 1000,
        p99_ms=percentile(samples_us, 99) / 1000,
        max_ms=samples_us[-1] / 1000,
    )


@dataclass
class Sends:
    """What the senders of a phase saw: each send is answered by its echo or by an error."""

    sent: int = 0
    acked: int = 0  # own echo received
    errors: dict[str, int] = field(default_factory=dict)  # error detail -> count

    @property
    def rejected(self) -> int:
        return sum(self.errors.values())

    @property
    def unanswered(self) -> int:
        return max(0, self.sent - self.acked - self.rejected)
