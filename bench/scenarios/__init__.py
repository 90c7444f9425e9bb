"""The four scenarios; each takes a ``Context`` and returns its figures as a JSON-able dict."""

from __future__ import annotations

from bench.scenarios._context import Context, Scenario
from bench.scenarios.connect import connect
from bench.scenarios.fanout import fanout
from bench.scenarios.idle import idle
from bench.scenarios.rooms import rooms

SCENARIOS: dict[str, Scenario] = {
    "fanout": fanout,
    "rooms": rooms,
    "connect": connect,
    "idle": idle,
}

__all__ = ["SCENARIOS", "Context", "Scenario"]
