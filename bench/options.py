"""Command line of ``python -m bench``: scenarios to run and each one's knobs."""

from __future__ import annotations

import argparse
from typing import Final

SCENARIOS: Final = ("fanout", "rooms", "connect", "idle")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load the justchat stack and report throughput, latency, loss, order, "
        "handshakes/s, memory per connection and each process's CPU.",
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (default: all, in that order)",
    )
    target = p.add_argument_group("target")
    target.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="WS_URL",
        help="load running gateways instead of starting a stack (repeatable)",
    )
    target.add_argument(
        "--api",
        default="",
        metavar="HTTP_URL",
        help="the REST API of those gateways' stack (for token users)",
    )
    target.add_argument("--gateways", type=int, default=2, help="gateways of the started stack")
    target.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server side and the generator to separate CPUs",
    )
    target.add_argument(
        "--profile", action="store_true", help="py-spy each service during the measured windows"
    )
    target.add_argument("--results", default="bench/results", help="folder for JSON and profiles")
    target.add_argument(
        "--concurrency", type=int, default=100, help="handshakes in progress at once"
    )
    target.add_argument(
        "--window", type=float, default=10.0, help="seconds of each measured window"
    )
    target.add_argument("--content-bytes", type=int, default=100)
    target.add_argument(
        "--handshake-timeout",
        type=float,
        default=60.0,
        help="seconds a client may wait for its hello, then for its own channel_join",
    )

    fan = p.add_argument_group("fanout")
    fan.add_argument("--members", type=int, default=1000)
    fan.add_argument("--senders", type=int, default=10)
    fan.add_argument(
        "--in-flight",
        type=int,
        default=20,
        help="messages each sender keeps unanswered when saturating (enough to keep the "
        "stack busy however long its pipeline is)",
    )

    rooms = p.add_argument_group("rooms")
    rooms.add_argument("--users", type=int, default=1000)
    rooms.add_argument("--room-size", type=int, default=10)
    rooms.add_argument("--rate", type=float, default=3000.0, help="messages/s offered in total")

    conn = p.add_argument_group("connect")
    conn.add_argument("--clients", type=int, default=2000, help="handshakes per kind")
    conn.add_argument(
        "--token-users",
        type=int,
        default=10,
        help="registered users whose tokens the token handshakes share",
    )
    conn.add_argument(
        "--join-members", type=int, default=2000, help="members joining one channel (0: skip)"
    )
    conn.add_argument(
        "--join-timeout",
        type=float,
        default=60.0,
        help="seconds after which no further member starts joining the one channel",
    )

    idle = p.add_argument_group("idle")
    idle.add_argument("--idle", type=int, default=10000, help="idle connected, joined clients")
    idle.add_argument(
        "--settle", type=float, default=3.0, help="seconds to wait before reading memory"
    )
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}: choose from {', '.join(SCENARIOS)}")
    args.scenarios = list(dict.fromkeys(args.scenarios)) or list(SCENARIOS)
    return args
