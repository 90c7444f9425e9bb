"""CPU and memory of every process over a measured window, and optional py-spy profiles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bench import procs
from bench.target import Target

log = logging.getLogger(__name__)


def _py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Meter:
    """``async with Meter(...)`` around a window: per process, % of one core and RSS.

    With ``profile_to`` set, py-spy samples each Python service from entry to exit (flamegraph
    SVGs named ``<label>-<service>.svg``).
    """

    def __init__(self, target: Target, label: str, profile_to: Path | None = None) -> None:
        self.target = target
        self.label = label
        self.profile_to = profile_to
        self.watched = [*target.watched, procs.Watched("bench (generator)", os.getpid())]
        self.rows: list[dict[str, Any]] = []
        self.profiles: list[str] = []
        self._before: dict[int, int] = {}
        self._started = 0.0
        self._spies: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Meter:
        if self.profile_to is not None:
            await self._start_profiles(self.profile_to)
        children = procs.children_map()
        self._before = {w.pid: procs.cpu_ticks(w, children) for w in self.watched}
        self._started = time.perf_counter()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._started
        children = procs.children_map()
        for w in self.watched:
            ticks = procs.cpu_ticks(w, children)
            self.rows.append(
                {
                    "process": w.name,
                    "pid": w.pid,
                    "cpu_pct": round(procs.cpu_percent(self._before[w.pid], ticks, seconds), 1),
                    "rss_mb": round(procs.memory_kb(w, children) / 1024, 1),
                }
            )
        for spy in self._spies:
            with contextlib.suppress(ProcessLookupError):
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on Ctrl-C
            try:
                await asyncio.wait_for(spy.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    spy.kill()
                await spy.wait()

    async def _start_profiles(self, folder: Path) -> None:
        exe = _py_spy()
        if exe is None:
            log.warning("py-spy not found: no profiles")
            return
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        for w in self.target.services:
            out = folder / f"{self.label}-{w.name}.svg"
            spy = await asyncio.create_subprocess_exec(
                exe,
                "record",
                "--pid",
                str(w.pid),
                "--rate",
                "100",
                "--nonblocking",
                "--output",
                str(out),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            self._spies.append(spy)
            self.profiles.append(str(out))
        log.info("profiling %d services with py-spy into %s", len(self._spies), folder)
