"""``make run`` itself, as a user runs it: on free ports, with private servers from the Python
packages (the fresh-machine path), then SIGTERM, and nothing may be left running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from justchat.client import Client
from justchat.devservers import find_free_port, find_free_port_run

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_make_run_serves_chat_and_stops_cleanly(tmp_path: Path) -> None:
    api_port, gateway_port = find_free_port(), find_free_port_run(2)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        {
            "JUSTCHAT_API_PORT": str(api_port),
            "JUSTCHAT_GATEWAY_PORT": str(gateway_port),
            "JUSTCHAT_CHAT_PORT": str(find_free_port()),
            "JUSTCHAT_PRESENCE_PORT": str(find_free_port()),
            "JUSTCHAT_RUN_DIR": str(tmp_path / "run"),
            "JUSTCHAT_SERVER_SOURCE": "package",
            "PYTHON": sys.executable,
        }
    )
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log:
        make = subprocess.Popen(
            ["make", "-s", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"justchat is running" not in log_path.read_bytes():
            assert make.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.5)
        banner = log_path.read_text()
        assert f"http://127.0.0.1:{api_port}/api/v1" in banner
        assert f"ws://127.0.0.1:{gateway_port}/ws" in banner
        assert f"ws://127.0.0.1:{gateway_port + 1}/ws" in banner

        async with httpx.AsyncClient(timeout=10) as http:
            url = (await http.get(f"http://127.0.0.1:{api_port}/api/v1/gateway")).json()["url"]
        assert url in (f"ws://127.0.0.1:{gateway_port}/ws", f"ws://127.0.0.1:{gateway_port + 1}/ws")
        a = await Client.connect(f"ws://127.0.0.1:{gateway_port}/ws")
        b = await Client.connect(f"ws://127.0.0.1:{gateway_port + 1}/ws")
        await a.join(5)
        await a.expect("channel_join")
        await b.join(5)
        await b.expect("channel_join")
        await a.send(5, "through make run")
        got = await b.expect("chat_send")
        assert got.payload.content == "through make run"
        assert got.payload.sender == a.user
        await a.close()
        await b.close()

        family = descendants(make.pid) | {make.pid}
        # Two gateways, three services, Redis and PostgreSQL (plus its own workers).
        assert len(family) >= 8, family
        os.killpg(make.pid, signal.SIGTERM)  # what a terminal's Ctrl-C does, as SIGTERM
        make.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in family) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not [pid for pid in family if alive(pid)], log_path.read_text()[-3000:]
        assert "stopped" in log_path.read_text()
    finally:
        if make.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(make.pid, signal.SIGKILL)
            make.wait()
