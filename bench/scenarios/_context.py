"""What every scenario gets: the target, the clients' hub, the options, where to put profiles."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import Hub
from bench.meter import Meter
from bench.target import Target


@dataclass
class Context:
    target: Target
    args: argparse.Namespace
    results: Path
    stamp: str
    hub: Hub = field(default_factory=Hub)
    # Channel ids of this run start at a random base: a long-running target keeps old channels.
    channel_base: int = field(default_factory=lambda: 1_000_000 + secrets.randbelow(1_000_000_000))

    def meter(self, label: str) -> Meter:
        profile = self.results / f"{self.stamp}-profiles" if self.args.profile else None
        return Meter(self.target, label, profile)

    def channel(self, offset: int) -> int:
        return self.channel_base + offset


Scenario = Callable[[Context], Awaitable[dict[str, Any]]]
