"""``make bench`` / ``python -m bench [fanout] [rooms] [connect] [idle] [options]``.

Starts the stack (private Redis and PostgreSQL unless REDIS_URL / DATABASE_URL are set; the whole
server side pinned to one CPU and this generator to another when there are two), or loads the
gateways given with ``--gateway``; runs each scenario on freshly restarted services; prints a
report and writes JSON (and ``latest.md``) under ``bench/results/``. It measures; it never fails
on a figure.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvloop

from bench import options, report
from bench.scenarios import SCENARIOS, Context
from bench.target import Target, started_stack
from justchat import logs

log = logging.getLogger("bench")

FDS_PER_CLIENT = 1  # plus a margin for the stack's own sockets and files


def raise_file_limit(clients: int) -> int:
    """Room for every client socket here, and (inherited) in the gateways; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = clients * FDS_PER_CLIENT + 4096
    if wanted > hard:
        try:  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            log.warning("file limit %d < %d: some clients will fail to connect", hard, wanted)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard if soft <= hard else soft


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if changes.stdout.strip() else "")


@contextlib.asynccontextmanager
async def _target(args: argparse.Namespace) -> AsyncIterator[Target]:
    if args.gateway:
        yield Target(gateway_urls=list(args.gateway), api_url=args.api.rstrip("/"))
        return
    async with started_stack(args.gateways, pin=not args.no_pin, env={}) as target:
        yield target


async def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = Path(args.results)
    results: dict[str, dict[str, Any]] = {}
    async with _target(args) as target:
        meta = {
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": " ".join(["python -m bench", shlex.join(sys.argv[1:])]).strip(),
            "commit": _commit(),
            "setup": _setup(target, args),
            "cpus": os.cpu_count(),
            "args": vars(args),
        }
        if args.profile:
            meta["profiles"] = str(folder / f"{stamp}-profiles")
        for i, name in enumerate(args.scenarios):
            if i > 0:
                log.info("restarting the services for %s", name)
                await target.restart()
            log.info("scenario %s", name)
            ctx = Context(target=target, args=args, results=folder, stamp=stamp)
            results[name] = await SCENARIOS[name](ctx)
            path = report.save(folder, stamp, name, results[name], meta)
            log.info("%s done: %s", name, path)
    text = report.markdown(results, meta)
    sys.stdout.write("\n" + text)
    (folder / "latest.md").write_text(text)
    return results


def _setup(target: Target, args: argparse.Namespace) -> str:
    if target.stack is None:
        return f"given gateways {', '.join(target.gateway_urls)}"
    where = (
        f"server side pinned to CPU {min(target.server_cpus)}, generator to CPU "
        f"{min(target.generator_cpus)}"
        if target.server_cpus
        else "no CPU pinning"
    )
    return f"{args.gateways} gateways, 1 chat-service, 1 presence-service; {where}"


def main() -> None:
    args = options.parse()
    logs.setup("bench")
    # One line per connection or request otherwise.
    logging.getLogger("picows").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    limit = raise_file_limit(
        max(args.idle, args.members, args.users, args.clients, args.join_members)
    )
    log.info("scenarios %s; file limit %d", ", ".join(args.scenarios), limit)
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
