"""Processes under measurement: CPU seconds and resident memory from /proc, and CPU pinning.

A watched process may be a tree (PostgreSQL forks a backend per connection): its CPU is its own
plus its reaped children's (``cutime``/``cstime``) plus its live descendants', so a backend that
ends during a window is still counted, once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PROC: Final = Path("/proc")


@dataclass(frozen=True)
class Watched:
    name: str
    pid: int
    tree: bool = False  # count descendants too


def parse_stat(text: str) -> tuple[int, int]:
    """(ppid, utime + stime + cutime + cstime in ticks) from the text of /proc/<pid>/stat."""
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def parse_rss_kb(status_text: str) -> int:
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_percent(ticks_before: int, ticks_after: int, seconds: float) -> float:
    """Share of one core used over ``seconds``, in percent."""
    if seconds <= 0:
        return 0.0
    return 100.0 * (ticks_after - ticks_before) / CLOCK_TICKS / seconds


def _stat(pid: int) -> tuple[int, int] | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def children_map() -> dict[int, list[int]]:
    """ppid -> pids of every process on the machine (one /proc scan)."""
    out: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            out.setdefault(stat[0], []).append(int(entry.name))
    return out


def descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def cpu_ticks(watched: Watched, children: dict[int, list[int]] | None = None) -> int:
    pids = [watched.pid]
    if watched.tree:
        pids += descendants(watched.pid, children if children is not None else children_map())
    return sum(stat[1] for pid in pids if (stat := _stat(pid)) is not None)


def rss_kb(pid: int) -> int:
    try:
        return parse_rss_kb((PROC / str(pid) / "status").read_text())
    except OSError:
        return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that map them."""
    with contextlib.suppress(OSError):
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return rss_kb(pid)


def memory_kb(watched: Watched, children: dict[int, list[int]] | None = None) -> int:
    """VmRSS of a single process; for a tree the sum of PSS (RSS would count shared memory
    once per backend)."""
    if not watched.tree:
        return rss_kb(watched.pid)
    pids = [watched.pid, *descendants(watched.pid, children or children_map())]
    return sum(pss_kb(pid) for pid in pids)


def pin(pids: Iterable[int], cpus: set[int]) -> int:
    """Pin every thread of these processes and of their descendants; returns threads pinned."""
    children = children_map()
    pinned = 0
    for pid in pids:
        for proc in [pid, *descendants(pid, children)]:
            try:
                tids = [int(t.name) for t in (PROC / str(proc) / "task").iterdir()]
            except OSError:
                continue
            for tid in tids:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, cpus)
                    pinned += 1
    return pinned
