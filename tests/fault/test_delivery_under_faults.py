"""Delivery under faults: ARCHITECTURE invariants 1 (per-channel order, gap-free seq), 2 (nothing
acknowledged is lost), 3 (resume) and 5 (bounded memory) while processes and servers die.

Each test runs its own stack on the module's private Redis and PostgreSQL (see conftest.py) and
kills things for real: SIGKILL of a service process (the Stack's supervisor restarts it), stop and
start of a server on the same port. A message is *acknowledged* once its sender has received its
own echo; every figure is printed (run with ``-s``) before it is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from justchat import wire
from justchat.client import Client
from justchat.keys import Keys
from justchat.stack import Service, Stack

T = TypeVar("T")

RESTART_WAIT_S = 45.0  # a fault's recovery must show within this


def say(text: str) -> None:
    print(f"[fault {time.strftime('%H:%M:%S')}] {text}", flush=True)


async def eventually(
    what: str,
    check: Callable[[], T | None],
    timeout_s: float,
    detail: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail()}")
        await asyncio.sleep(0.05)


def sigkill(service: Service) -> int:
    assert service.process is not None and service.process.returncode is None, service.name
    pid = service.process.pid
    os.kill(pid, signal.SIGKILL)
    return pid


async def stored_messages(database_url: str, channel_id: int) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return await conn.fetch(
            "SELECT seq, sender_username, client_msg_id, content FROM messages"
            " WHERE channel_id = $1 ORDER BY seq",
            channel_id,
        )
    finally:
        await conn.close()


def _brief(frame: wire.AnyServerFrame) -> str:
    match frame:
        case wire.ErrorFrame(payload=p):
            return f"error {p.detail!r}"
        case wire.ChatSendFrame(payload=p):
            return f"chat_send seq={p.seq}"
        case _:
            return str(frame.__struct_config__.tag)


# -- a connection read in the background --------------------------------------------------------


class Tap:
    """A client whose frames are read in the background and kept, with arrival times."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.frames: list[tuple[float, wire.AnyServerFrame]] = []
        self.closed: ConnectionClosed | None = None
        self.undecodable: Exception | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str) -> Tap:
        return cls(await Client.connect(url, token=token))

    @property
    def username(self) -> str:
        return self.client.user.username

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.client.ws.recv()
                self.frames.append((time.monotonic(), wire.decode_server(raw)))
                self._changed.set()
        except ConnectionClosed as exc:
            self.closed = exc
        except msgspec.MsgspecError as exc:  # the server sent what the protocol doesn't allow
            self.undecodable = exc
        finally:
            self._changed.set()

    async def until(self, what: str, check: Callable[[], T | None], timeout_s: float = 20) -> T:
        """Wait (on arrivals, not by polling) until ``check`` holds; fail at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = check()
            if result:
                return result
            left = deadline - time.monotonic()
            if self.undecodable is not None:
                raise AssertionError(f"{self.username}: undecodable frame: {self.undecodable}")
            if self.closed is not None:
                raise AssertionError(f"{self.username}: closed ({self.closed}) waiting for {what}")
            if left <= 0:
                last = [_brief(f) for _, f in self.frames[-4:]]
                raise AssertionError(
                    f"{self.username}: no {what} within {timeout_s:.0f}s; last frames: {last}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def since(self, mark: int) -> list[wire.AnyServerFrame]:
        return [frame for _, frame in self.frames[mark:]]

    def chat(self, channel_id: int, mark: int = 0) -> list[wire.ChatSendOut]:
        return [
            f.payload
            for f in self.since(mark)
            if isinstance(f, wire.ChatSendFrame) and f.payload.channel_id == channel_id
        ]

    def errors(self, mark: int = 0) -> list[str]:
        return [f.payload.detail for f in self.since(mark) if isinstance(f, wire.ErrorFrame)]

    def resumed(self, channel_id: int, mark: int = 0) -> wire.ResumedOut | None:
        for f in self.since(mark):
            if isinstance(f, wire.ResumedFrame) and f.payload.channel_id == channel_id:
                return f.payload
        return None

    async def join(self, channel_id: int, since_seq: int = 0) -> wire.ResumedOut:
        """Join with ``since_seq`` (0 on a first join) and wait for ``channel_resumed``."""
        mark = len(self.frames)
        await self.client.join(channel_id, since_seq=since_seq)
        return await self.until(
            f"channel_resumed on {channel_id}", lambda: self.resumed(channel_id, mark), 20
        )

    async def send(self, channel_id: int, content: str, cmid: str) -> None:
        await self.client.send(channel_id, content, client_msg_id=cmid)

    async def echoed(self, channel_id: int, cmids: Iterable[str], timeout_s: float = 20) -> None:
        wanted = set(cmids)

        def seen() -> bool:
            got = {
                m.client_msg_id for m in self.chat(channel_id) if m.sender.username == self.username
            }
            return wanted <= got

        await self.until(f"echoes of {len(wanted)} messages", seen, timeout_s)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.close(), 5)


@dataclass
class Deliveries:
    """How one client received a channel's messages (frames in arrival order)."""

    seqs: list[int] = field(default_factory=list)  # first arrival of each seq, in order
    duplicated: list[int] = field(default_factory=list)
    out_of_order: list[int] = field(default_factory=list)
    answers: int = 0  # the server's answer to a deliberate re-send of one's own message


def deliveries(
    messages: Iterable[tuple[int, str, str | None]], me: str, resent: set[str]
) -> Deliveries:
    """Classify (seq, sender, client_msg_id) arrivals.

    A seq seen twice is a duplicate, unless it is this client's own message that it re-sent with
    the same client_msg_id: PROTOCOL 5 answers every repeated send with the stored message.
    """
    out = Deliveries()
    seen: set[int] = set()
    top = 0
    for seq, sender, cmid in messages:
        if seq in seen:
            if sender == me and cmid in resent:
                out.answers += 1
            else:
                out.duplicated.append(seq)
            continue
        if seq < top:
            out.out_of_order.append(seq)
        seen.add(seq)
        out.seqs.append(seq)
        top = max(top, seq)
    return out


def arrivals(tap: Tap, channel_id: int, mark: int = 0) -> list[tuple[int, str, str | None]]:
    return [
        (int(m.seq), m.sender.username, m.client_msg_id or None) for m in tap.chat(channel_id, mark)
    ]


async def closed_all(*taps: Tap) -> None:
    for tap in taps:
        await tap.close()


# -- 2. each fault on its own ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_chat_service_sigkill_mid_stream_loses_and_reorders_nothing(
    make_stack, signup, servers, channel_id: int
) -> None:
    stack: Stack = await make_stack()
    urls = stack.gateway_urls
    sender = await Tap.open(urls[0], (await signup(stack))[1])
    reader = await Tap.open(urls[1], (await signup(stack))[1])
    try:
        await sender.join(channel_id)
        await reader.join(channel_id)
        chat = stack.service("chat")
        total, kill_at = 120, 40
        killed_at = 0.0
        old_pid = 0
        for i in range(total):
            await sender.send(channel_id, f"m{i}", f"m{i}")
            if i == kill_at:
                old_pid = sigkill(chat)
                killed_at = time.monotonic()
                say(f"chat-service (pid {old_pid}) SIGKILLed after {i + 1} sends")
            await asyncio.sleep(0.01)
        await sender.echoed(channel_id, [f"m{i}" for i in range(total)], RESTART_WAIT_S)
        await reader.until(
            "every message", lambda: len(reader.chat(channel_id)) >= total, RESTART_WAIT_S
        )
        after_kill = [t for t, f in sender.frames if isinstance(f, wire.ChatSendFrame)]
        gap = max(b - a for a, b in itertools.pairwise(after_kill))
        say(
            f"all {total} echoed; longest pause between echoes {gap:.2f}s "
            f"(the kill came {killed_at - after_kill[0]:.2f}s after the first echo); "
            f"chat-service restarts {chat.restarts}"
        )

        for tap in (sender, reader):
            got = tap.chat(channel_id)
            assert [m.seq for m in got] == list(range(1, total + 1)), tap.username
            assert [m.content for m in got] == [f"m{i}" for i in range(total)], tap.username
            assert tap.errors() == [], tap.username
        rows = await stored_messages(servers.database_url, channel_id)
        assert [r["seq"] for r in rows] == list(range(1, total + 1))
        assert [r["client_msg_id"] for r in rows] == [f"m{i}" for i in range(total)]
        assert chat.restarts == 1
        assert chat.process is not None and chat.process.pid != old_pid
    finally:
        await closed_all(sender, reader)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_gateway_sigkill_then_resume_on_the_other_gateway_gets_exactly_the_missed(
    make_stack, signup, channel_id: int
) -> None:
    stack: Stack = await make_stack()
    urls = stack.gateway_urls
    sender = await Tap.open(urls[0], (await signup(stack))[1])
    _, victim_token = await signup(stack)
    victim = await Tap.open(urls[1], victim_token)
    resumed: Tap | None = None
    try:
        await sender.join(channel_id)
        await victim.join(channel_id)
        await sender.until(
            "the victim's join",
            lambda: any(
                isinstance(f, wire.JoinFrame) and f.payload.user.username == victim.username
                for f in sender.since(0)
            ),
        )
        for i in range(10):
            await sender.send(channel_id, f"before{i}", f"before{i}")
        await victim.until("10 messages", lambda: len(victim.chat(channel_id)) == 10)
        last_seq = victim.chat(channel_id)[-1].seq
        assert last_seq == 10

        pid = sigkill(stack.service("gateway-1"))
        say(f"gateway-1 (pid {pid}) SIGKILLed")
        await eventually("the victim to see its connection drop", lambda: victim.closed, 10)
        for i in range(10):
            await sender.send(channel_id, f"missed{i}", f"missed{i}")
        await sender.echoed(channel_id, [f"missed{i}" for i in range(10)])

        resumed = await Tap.open(urls[0], victim_token)
        done = await resumed.join(channel_id, since_seq=last_seq)
        until_resumed = []
        for frame in resumed.since(0):
            if isinstance(frame, wire.ResumedFrame):
                break
            until_resumed.append(frame)
        say(f"resumed: {len(until_resumed)} frames before channel_resumed {done}")
        assert all(isinstance(f, wire.ChatSendFrame) for f in until_resumed), until_resumed
        replay = resumed.chat(channel_id)
        assert [m.seq for m in replay] == list(range(11, 21))
        assert [m.content for m in replay] == [f"missed{i}" for i in range(10)]
        assert done == wire.ResumedOut(channel_id=channel_id, recovered=True, last_seq=20)

        # Live delivery goes on after the resume, without repeats.
        await sender.send(channel_id, "after", "after")
        await resumed.until("the live message", lambda: len(resumed.chat(channel_id)) >= 11)
        await sender.echoed(channel_id, ["after"])
        assert [m.seq for m in resumed.chat(channel_id)] == list(range(11, 22))
        assert resumed.errors() == [] and sender.errors() == []
        assert [m.seq for m in sender.chat(channel_id)] == list(range(1, 22))
    finally:
        await closed_all(sender, victim, *([resumed] if resumed else []))


def members_of(tap: Tap, channel_id: int, mark: int) -> set[str] | None:
    """The member list of the last ``channel_members`` frame after ``mark``."""
    found = None
    for f in tap.since(mark):
        if isinstance(f, wire.MembersFrame) and f.payload.channel_id == channel_id:
            found = {m.username for m in f.payload.members}
    return found


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_redis_restart_keeps_connections_and_recovers_sends_and_members(
    make_stack, signup, servers, channel_id: int
) -> None:
    stack: Stack = await make_stack()
    urls = stack.gateway_urls
    a = await Tap.open(urls[0], (await signup(stack))[1])
    b = await Tap.open(urls[1], (await signup(stack))[1])
    other_channel = channel_id % 1_000_000 + 1_000_001
    try:
        await a.join(channel_id)
        await b.join(channel_id)
        both = {a.username, b.username}
        await a.until("both members", lambda: members_of(a, channel_id, 0) == both)
        await a.send(channel_id, "before", "before")
        await b.until("the first message", lambda: len(b.chat(channel_id)) == 1)

        await servers.stop_redis()
        say("redis stopped")
        down_at = time.monotonic()
        marks = {tap: len(tap.frames) for tap in (a, b)}
        await a.send(channel_id, "during-a", "during-a")
        await b.send(channel_id, "during-b", "during-b")
        for tap in (a, b):
            await tap.until(
                "the unavailable error",
                lambda tap=tap: wire.ERR_UNAVAILABLE in tap.errors(marks[tap]),
                15,
            )
        mark_join = len(a.frames)
        await a.client.join(other_channel, since_seq=0)
        await a.until(
            "the join error",
            lambda: (
                wire.ERR_JOIN_FAILED in a.errors(mark_join)
                or wire.ERR_UNAVAILABLE in a.errors(mark_join)
            ),
            20,
        )
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - down_at)))  # down for ~2 s
        await servers.start_redis()
        up_at = time.monotonic()
        say(f"redis started again after {up_at - down_at:.1f}s down")

        # The same sends, retried with the same client_msg_id, go through once Redis is back.
        retries = 0
        while True:
            mark = len(a.frames)
            await a.send(channel_id, "during-a", "during-a")
            await b.send(channel_id, "during-b", "during-b")
            retries += 1
            with contextlib.suppress(AssertionError):
                await a.echoed(channel_id, ["during-a"], 2)
                await b.echoed(channel_id, ["during-b"], 2)
                break
            assert time.monotonic() - up_at < RESTART_WAIT_S, (
                f"sends still fail {RESTART_WAIT_S:.0f}s after Redis came back: "
                f"{a.errors(mark)} {b.errors(mark)}"
            )
        say(
            f"sends work again {time.monotonic() - up_at:.1f}s after Redis is back "
            f"({retries} attempts)"
        )
        for i in range(5):
            await a.send(channel_id, f"after-a{i}", f"after-a{i}")
            await b.send(channel_id, f"after-b{i}", f"after-b{i}")
        await a.echoed(channel_id, [f"after-a{i}" for i in range(5)])
        await b.echoed(channel_id, [f"after-b{i}" for i in range(5)])
        final = 1 + 2 + 10
        for tap in (a, b):
            await tap.until(
                "every message",
                lambda tap=tap: max((m.seq for m in tap.chat(channel_id)), default=0) >= final,
            )
        resent = {"during-a", "during-b"}
        for tap in (a, b):
            got = deliveries(arrivals(tap, channel_id), tap.username, resent)
            say(
                f"{tap.username}: seqs {got.seqs[0]}..{got.seqs[-1]}, answers {got.answers}, "
                f"dup {got.duplicated}, out of order {got.out_of_order}"
            )
            assert got.seqs == list(range(1, final + 1)), tap.username
            assert got.duplicated == [] and got.out_of_order == [], tap.username
        assert a.closed is None and b.closed is None, "Redis restart closed a WebSocket"
        rows = await stored_messages(servers.database_url, channel_id)
        assert sorted(r["client_msg_id"] for r in rows) == sorted(
            ["before", "during-a", "during-b"] + [f"after-{x}{i}" for x in "ab" for i in range(5)]
        )

        # Presence lost every key with Redis; the gateways announce their members again and
        # every member gets the right list. (Checked, like the join below, without stopping at
        # the first failure, so that one run reports both.)
        problems = []
        for tap in (a, b):
            try:
                await tap.until(
                    "the member list again",
                    lambda tap=tap: members_of(tap, channel_id, marks[tap]) == both,
                    20,
                )
            except AssertionError as exc:
                got = members_of(tap, channel_id, marks[tap])
                problems.append(f"no right member list after the restart (last one: {got}): {exc}")
        if not problems:
            say(f"member lists right again {time.monotonic() - up_at:.1f}s after Redis is back")

        # A channel that could not be joined during the outage can be joined now, at once.
        attempts: list[str] = []
        while len(attempts) < 3:
            mark, started = len(a.frames), time.monotonic()
            await a.client.join(other_channel, since_seq=0)
            answer = await a.until(
                "an answer to the join",
                lambda mark=mark: (
                    a.resumed(other_channel, mark)
                    or (wire.ERR_JOIN_FAILED in a.errors(mark) and wire.ERR_JOIN_FAILED)
                ),
                20,
            )
            took = time.monotonic() - started
            attempts.append(
                f"{'joined' if answer != wire.ERR_JOIN_FAILED else answer} in {took:.1f}s"
            )
            if answer != wire.ERR_JOIN_FAILED:
                break
        say(f"joining a channel whose join failed during the outage: {attempts}")
        if not attempts[0].startswith("joined"):
            problems.append(f"joining a channel that failed to join during the outage: {attempts}")
        assert not problems, "\n".join(problems)
    finally:
        await closed_all(a, b)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_postgres_down_sends_are_stored_and_delivered_in_order_when_it_returns(
    make_stack, signup, servers, channel_id: int
) -> None:
    stack: Stack = await make_stack()
    urls = stack.gateway_urls
    sender = await Tap.open(urls[0], (await signup(stack))[1])
    reader = await Tap.open(urls[1], (await signup(stack))[1])
    try:
        await sender.join(channel_id)
        await reader.join(channel_id)
        for i in range(3):
            await sender.send(channel_id, f"up{i}", f"up{i}")
        await sender.echoed(channel_id, [f"up{i}" for i in range(3)])

        await servers.stop_postgres()
        say("postgres stopped")
        down_at = time.monotonic()
        mark = len(sender.frames)
        for i in range(5):
            await sender.send(channel_id, f"down{i}", f"down{i}")
            await asyncio.sleep(0.3)
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - down_at)))  # down for ~3 s
        during = sender.since(mark)
        await servers.start_postgres()
        up_at = time.monotonic()
        say(
            f"postgres started again after {up_at - down_at:.1f}s down; "
            f"frames while down: {[type(f).__name__ for f in during]}"
        )
        assert not any(isinstance(f, wire.ChatSendFrame) for f in during)

        await sender.echoed(channel_id, [f"down{i}" for i in range(5)], RESTART_WAIT_S)
        say(f"stored and delivered {time.monotonic() - up_at:.1f}s after postgres is back")
        await reader.until("every message", lambda: len(reader.chat(channel_id)) >= 8)
        expected = [f"up{i}" for i in range(3)] + [f"down{i}" for i in range(5)]
        for tap in (sender, reader):
            got = tap.chat(channel_id)
            assert [m.seq for m in got] == list(range(1, 9)), tap.username
            assert [m.content for m in got] == expected, tap.username
            assert tap.errors() == [], tap.username
        rows = await stored_messages(servers.database_url, channel_id)
        assert [(r["seq"], r["client_msg_id"]) for r in rows] == list(
            zip(range(1, 9), expected, strict=True)
        )
    finally:
        await closed_all(sender, reader)


# -- 3. resume from an old seq ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_resume_from_an_old_seq_replays_or_says_it_cannot(
    make_stack, signup, servers, channel_id: int
) -> None:
    """chat-service ``join()``: with since_seq, replay from the Redis recent window when it
    covers the gap, else from PostgreSQL, at most MAX_RESUME (1000) messages; ``recovered`` is
    ``last_seq - since_seq <= 1000`` and when false nothing is replayed. Both sources must give
    the same answers, so every case runs against each."""
    stack: Stack = await make_stack()
    urls = stack.gateway_urls
    _, token = await signup(stack)
    sender = await Tap.open(urls[0], token)
    opened = [sender]
    try:
        await sender.join(channel_id)
        total = 1100
        for start in range(0, total, 100):
            for i in range(start, start + 100):
                await sender.send(channel_id, f"m{i}", f"m{i}")
            await sender.until(
                f"{start + 100} echoes", lambda n=start + 100: len(sender.chat(channel_id)) >= n, 30
            )
        assert [m.seq for m in sender.chat(channel_id)] == list(range(1, total + 1))
        say(f"{total} messages stored")

        async def resume(since_seq: int) -> tuple[list[wire.ChatSendOut], wire.ResumedOut]:
            tap = await Tap.open(urls[1], token)
            opened.append(tap)
            done = await tap.join(channel_id, since_seq=since_seq)
            before = []
            for frame in tap.since(0):
                if isinstance(frame, wire.ResumedFrame):
                    break
                before.append(frame)
            assert all(isinstance(f, wire.ChatSendFrame) for f in before), before
            return [f.payload for f in before if isinstance(f, wire.ChatSendFrame)], done

        cases = {
            0: (False, []),  # 1100 behind: too old, page history instead
            99: (False, []),  # 1001 behind
            100: (True, list(range(101, total + 1))),  # exactly 1000 behind: replayed
            1050: (True, list(range(1051, total + 1))),
            total: (True, []),  # up to date: nothing, but still channel_resumed
        }
        keys = Keys(stack.config.env["JUSTCHAT_REDIS_PREFIX"])
        for source in ("window", "postgres"):
            if source == "postgres":  # as after a Redis restart: no recent window at all
                redis = aioredis.Redis.from_url(servers.redis_url)
                try:
                    assert await redis.delete(keys.channel_recent(channel_id)) == 1
                finally:
                    await redis.aclose()
            for since_seq, (recovered, seqs) in cases.items():
                replay, done = await resume(since_seq)
                say(f"{source}: since_seq={since_seq}: {len(replay)} replayed, {done}")
                assert done == wire.ResumedOut(
                    channel_id=channel_id, recovered=recovered, last_seq=total
                ), (source, since_seq)
                assert [m.seq for m in replay] == seqs, (source, since_seq)
                assert [m.content for m in replay] == [f"m{s - 1}" for s in seqs], since_seq
        async with httpx.AsyncClient(timeout=5) as http:
            metrics = (
                await http.get(f"http://127.0.0.1:{stack.service('chat').port}/metrics")
            ).text
        say(
            "chat-service resumes by source: "
            + ", ".join(
                line for line in metrics.splitlines() if line.startswith("justchat_resumes")
            )
        )

        # Whatever it was told, the resumed connection is a member and gets live messages.
        tap = opened[-1]
        await sender.send(channel_id, "live", "live")
        await tap.until("the live message", lambda: len(tap.chat(channel_id)) == 1)
        assert tap.chat(channel_id)[0].seq == total + 1
    finally:
        await closed_all(*opened)


# -- 4. a stalled reader ---------------------------------------------------------------------


async def stalled_connection(url: str, token: str) -> ClientConnection:
    """A raw connection with a tiny receive buffer that reads at most one frame ahead."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    # No compression: every byte of every frame has to get through the buffers.
    ws = await websockets.connect(
        url, sock=sock, max_queue=1, max_size=None, compression=None, open_timeout=10
    )
    await ws.send(json.dumps({"type": "hello", "payload": {"token": token}}))
    assert isinstance(wire.decode_server(await asyncio.wait_for(ws.recv(), 10)), wire.HelloFrame)
    return ws


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_stalled_reader_is_cut_off_others_stay_fast_and_it_resumes(
    make_stack, signup, channel_id: int
) -> None:
    # Big messages, so that a burst outgrows every buffer between the gateway and the stalled
    # client (a loopback socket's send buffer alone grows to 4 MB) in a few seconds.
    stack: Stack = await make_stack(
        JUSTCHAT_SEND_QUEUE_FRAMES="64", JUSTCHAT_MAX_MESSAGE_CHARS="60000"
    )
    urls = stack.gateway_urls
    healthy = await Tap.open(urls[0], (await signup(stack))[1])
    sender = await Tap.open(urls[1], (await signup(stack))[1])
    stalled_user, stalled_token = await signup(stack)
    stalled = await stalled_connection(urls[0], stalled_token)
    resumed: Tap | None = None
    problems: list[str] = []
    try:
        await healthy.join(channel_id)
        await sender.join(channel_id)
        await stalled.send(
            json.dumps(
                {"type": "channel_join", "payload": {"channel_id": channel_id, "since_seq": 0}}
            )
        )
        while not isinstance(
            frame := wire.decode_server(await asyncio.wait_for(stalled.recv(), 10)),
            wire.ResumedFrame,
        ):
            pass
        assert frame.payload.last_seq == 0
        await healthy.until(
            "the stalled client's join",
            lambda: any(
                isinstance(f, wire.JoinFrame) and f.payload.user.username == stalled_user
                for f in healthy.since(0)
            ),
        )
        say("stalled client joined and stops reading")
        gateway = stack.service("gateway-0")
        assert gateway.process is not None
        rss_before = rss_mb(gateway.process.pid)

        # A busy channel: 300 messages of 50 KB in a few seconds (15 MB), far more than the
        # stalled connection's socket buffers (~4 MB) and its 64-frame send queue can hold.
        total = 300
        sent_at: dict[int, float] = {}
        for i in range(total):
            padding = secrets.token_urlsafe(37_500)  # 50 KB that no compression shrinks
            sent_at[i] = time.monotonic()
            await sender.send(channel_id, f"{i}:{padding}", f"b{i}")
            await asyncio.sleep(0.01)
        await healthy.until("the whole burst", lambda: len(healthy.chat(channel_id)) >= total, 60)
        burst_end = time.monotonic()
        latencies = []
        for at, f in healthy.frames:
            if isinstance(f, wire.ChatSendFrame):
                latencies.append(at - sent_at[int(f.payload.content.split(":", 1)[0])])
        say(
            f"healthy client during the stall: {len(latencies)} messages, "
            f"p50 {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms, "
            f"p99 {p99(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        )
        say(
            f"gateway-0 RSS {rss_before:.0f} MB before the burst, "
            f"{rss_mb(gateway.process.pid):.0f} MB after (bound for healthy p99: 2000 ms)"
        )
        if p99(latencies) >= 2.0:
            problems.append(f"healthy p99 latency {p99(latencies):.2f}s >= 2s during the stall")
        assert [m.seq for m in healthy.chat(channel_id)] == list(range(1, total + 1))

        # The gateway cut the stalled connection off: the others see it leave.
        try:
            await healthy.until(
                "the stalled client to leave",
                lambda: any(
                    isinstance(f, wire.LeaveFrame) and f.payload.user.username == stalled_user
                    for f in healthy.since(0)
                ),
                10,
            )
            say(f"stalled client left {time.monotonic() - burst_end:.1f}s after the burst")
        except AssertionError as exc:
            problems.append(f"the stalled connection is still a member: {exc}")

        # It wakes up: what it still gets is a gap-free prefix, then close 1013.
        got: list[int] = []
        code = None
        try:
            while True:
                frame = wire.decode_server(await asyncio.wait_for(stalled.recv(), 10))
                if isinstance(frame, wire.ChatSendFrame):
                    got.append(int(frame.payload.seq))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
        except TimeoutError:
            problems.append("the stalled client, once reading, got no close frame within 10 s")
        say(
            f"stalled client then read {len(got)} messages "
            f"({got[0] if got else '-'}..{got[-1] if got else '-'}) and close code {code}"
        )
        if got != list(range(1, len(got) + 1)):
            problems.append(f"the stalled client's backlog is not a gap-free prefix: {got}")
        if len(got) >= total:
            problems.append("the stalled client was never cut off")
        if code != 1013:
            problems.append(f"close code {code}, expected 1013")
        await stalled.close()
        with contextlib.suppress(AssertionError):
            await healthy.until(
                "the stalled client to leave once its connection is closed",
                lambda: any(
                    isinstance(f, wire.LeaveFrame) and f.payload.user.username == stalled_user
                    for f in healthy.since(0)
                ),
                10,
            )
            say(
                f"stalled client left {time.monotonic() - burst_end:.1f}s after the burst, "
                "once it had read its backlog and its connection was closed"
            )

        # It resumes, on the same gateway, and gets exactly what it missed.
        last = got[-1] if got else 0
        resumed = await Tap.open(urls[0], stalled_token)
        mark = len(resumed.frames)
        await resumed.client.join(channel_id, since_seq=last)
        try:
            done = await resumed.until(
                "channel_resumed", lambda: resumed.resumed(channel_id, mark), 20
            )
            replay = [m.seq for m in resumed.chat(channel_id)]
            say(f"resume from {last}: {len(replay)} replayed, {done}")
            if replay != list(range(last + 1, total + 1)) or not done.recovered:
                problems.append(f"resume from {last} replayed {len(replay)} messages, {done}")
        except AssertionError as exc:
            code = resumed.closed.rcvd.code if resumed.closed and resumed.closed.rcvd else None
            problems.append(
                f"resume from seq {last} ({total - last} missed messages) failed: {exc}; "
                f"close code {code}; received {len(resumed.chat(channel_id))} replayed messages"
            )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stalled.close(), 2)
        stalled.transport.abort()
        await closed_all(healthy, sender, *([resumed] if resumed else []))
    assert not problems, "\n".join(problems)


# -- 1. everything at once, under load ---------------------------------------------------------


class Reconnect(Exception):
    """The server told this client to go away and come back (or the join failed)."""


class Member:
    """A client that keeps going through faults, as a real one should.

    It joins with ``since_seq`` (its last seen seq) on every connection, reconnects with backoff
    on a dropped connection or an unavailable/join-failed error (to the next gateway), and after
    each resume re-sends, with the same client_msg_id, each of its messages it has not yet seen
    come back.
    """

    def __init__(self, name: str, token: str, urls: list[str], first: int, channel_id: int):
        self.name, self.token, self.urls, self.channel_id = name, token, urls, channel_id
        self.gateway = first
        self.username = ""
        self.client: Client | None = None
        self.ready = asyncio.Event()
        self.last_seq = 0
        self.arrivals: list[tuple[int, str, str | None]] = []
        self.sent: dict[str, str] = {}
        self.acked: set[str] = set()
        self.resent: set[str] = set()
        self.connects = 0
        self.errors: Counter[str] = Counter()
        self.not_recovered: list[wire.ResumedOut] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"member-{self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self._drop()

    def pending(self) -> list[str]:
        return [cmid for cmid in self.sent if cmid not in self.acked]

    async def run(self) -> None:
        backoff = 0.1
        while True:
            url = self.urls[self.gateway % len(self.urls)]
            try:
                self.client = await Client.connect(url, token=self.token, timeout_s=5)
                self.username = self.client.user.username
                self.connects += 1
                await self._session(self.client)
            except (OSError, TimeoutError, WebSocketException, Reconnect) as exc:
                self.errors[type(exc).__name__] += 1
            if self.ready.is_set():  # it had joined: start backing off afresh
                backoff = 0.1
            await self._drop()
            self.gateway += 1  # the next gateway: the one we were on may be dead
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _drop(self) -> None:
        self.ready.clear()
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)

    async def _session(self, client: Client) -> None:
        await client.join(self.channel_id, since_seq=self.last_seq)
        deadline = time.monotonic() + 15
        while True:
            frame = await client.recv(max(0.1, deadline - time.monotonic()))
            if isinstance(frame, wire.ResumedFrame) and frame.payload.channel_id == self.channel_id:
                if not frame.payload.recovered:
                    self.not_recovered.append(frame.payload)
                break
            self._on(frame)
        self.ready.set()
        for cmid in self.pending():
            self.resent.add(cmid)
            await client.send(self.channel_id, self.sent[cmid], client_msg_id=cmid)
        while True:
            try:
                frame = await client.recv(1.0)
            except TimeoutError:
                continue
            self._on(frame)

    def _on(self, frame: wire.AnyServerFrame) -> None:
        match frame:
            case wire.ChatSendFrame(payload=m) if m.channel_id == self.channel_id:
                cmid = m.client_msg_id or None
                self.arrivals.append((int(m.seq), m.sender.username, cmid))
                self.last_seq = max(self.last_seq, int(m.seq))
                if m.sender.username == self.username and cmid in self.sent:
                    self.acked.add(cmid)
            case wire.ErrorFrame(payload=error):
                self.errors[error.detail] += 1
                if error.detail in (wire.ERR_UNAVAILABLE, wire.ERR_JOIN_FAILED):
                    raise Reconnect(error.detail)
            case _:
                pass

    async def send_all(self, count: int, pace_s: float) -> None:
        for i in range(count):
            cmid = f"{self.name}-{i}"
            await asyncio.wait_for(self.ready.wait(), 60)
            self.sent[cmid] = f"{self.name} message {i}"
            client = self.client
            if client is not None:
                # A send on a connection that just died is re-sent after the next resume.
                with contextlib.suppress(ConnectionClosed):
                    await client.send(self.channel_id, self.sent[cmid], client_msg_id=cmid)
            await asyncio.sleep(pace_s)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_load_through_every_fault_loses_duplicates_and_reorders_nothing(
    make_stack, signup, servers, channel_id: int
) -> None:
    stack: Stack = await make_stack()
    urls = stack.gateway_urls
    per_member, pace_s = 150, 0.1
    members = [Member(f"s{i}", (await signup(stack))[1], urls, i % 2, channel_id) for i in range(4)]
    total = per_member * len(members)

    def sent() -> int:
        return sum(len(m.sent) for m in members)

    def acked() -> int:
        return sum(len(m.acked) for m in members)

    def all_ready() -> bool:
        return all(m.ready.is_set() for m in members)

    def status() -> str:
        return "".join(
            f"\n  {m.name}: {'ready' if m.ready.is_set() else 'NOT ready'}, sent {len(m.sent)},"
            f" acked {len(m.acked)}, last seq {m.last_seq}, connections {m.connects},"
            f" errors {dict(m.errors)}"
            + (f", DIED: {m.task.exception()!r}" if m.task and m.task.done() else "")
            for m in members
        )

    async def recovered(what: str, started: float, extra: int = 20) -> None:
        base = acked()
        await eventually(
            f"recovery from {what}",
            lambda: all_ready() and acked() >= min(total, base + extra),
            RESTART_WAIT_S,
            status,
        )
        say(
            f"recovered from {what} in {time.monotonic() - started:.1f}s "
            f"(sent {sent()}, acknowledged {acked()})"
        )

    senders: list[asyncio.Task[None]] = []
    try:
        for m in members:
            m.start()
        await eventually("every member to join", all_ready, 30)
        say(f"{len(members)} members joined; sending {total} messages")
        senders = [asyncio.create_task(m.send_all(per_member, pace_s)) for m in members]

        await eventually("10% sent", lambda: sent() >= total // 10, 60)
        chat = stack.service("chat")
        started = time.monotonic()
        say(f"SIGKILL chat-service pid {sigkill(chat)} (sent {sent()}, acked {acked()})")
        await eventually("chat-service restart", lambda: chat.restarts >= 1, 30)
        await recovered("the chat-service kill", started)

        await eventually("30% sent", lambda: sent() >= total * 3 // 10, 60)
        gateway = stack.service("gateway-1")
        started = time.monotonic()
        say(f"SIGKILL gateway-1 pid {sigkill(gateway)} (sent {sent()}, acked {acked()})")
        await eventually("the killed gateway's members to notice", lambda: not all_ready(), 10)
        await recovered("the gateway kill", started)

        await eventually("50% sent", lambda: sent() >= total // 2, 60)
        started = time.monotonic()
        await servers.stop_redis()
        say(f"redis stopped (sent {sent()}, acked {acked()})")
        await asyncio.sleep(1.5)  # stays down a moment
        await servers.start_redis()
        say("redis started")
        await recovered("the Redis restart", started)

        await eventually("70% sent", lambda: sent() >= total * 7 // 10, 60)
        started = time.monotonic()
        await servers.stop_postgres()
        say(f"postgres stopped (sent {sent()}, acked {acked()})")
        await asyncio.sleep(2.0)  # stays down a moment
        await servers.start_postgres()
        say("postgres started")
        await recovered("the PostgreSQL restart", started)

        await asyncio.wait_for(asyncio.gather(*senders), 120)
        acked_before_settling = acked()
        say(f"all sent; {acked_before_settling}/{total} acknowledged before settling")

        # Settle: what was sent but never came back (e.g. a command lost with Redis's memory)
        # is re-sent with its client_msg_id until it does.
        deadline = time.monotonic() + 60
        while (left := [(m, m.pending()) for m in members if m.pending()]) and (
            time.monotonic() < deadline
        ):
            for m, cmids in left:
                client = m.client
                if client is None or not m.ready.is_set():
                    continue
                for cmid in cmids:
                    m.resent.add(cmid)
                    with contextlib.suppress(ConnectionClosed):
                        await client.send(channel_id, m.sent[cmid], client_msg_id=cmid)
            await asyncio.sleep(2.0)
        rows = await stored_messages(servers.database_url, channel_id)
        last = len(rows) and rows[-1]["seq"]
        with contextlib.suppress(AssertionError):
            await eventually(
                "every member to reach the last seq",
                lambda: all(m.last_seq >= last for m in members),
                20,
            )
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        for m in members:
            await m.stop()

    # -- the figures --
    stored = Counter((r["sender_username"], r["client_msg_id"]) for r in rows)
    seq_of = {(r["sender_username"], r["client_msg_id"]): r["seq"] for r in rows}
    acknowledged = {(m.username, c) for m in members for c in m.acked}
    all_sent = {(m.username, c) for m in members for c in m.sent}
    say(
        f"sent {len(all_sent)}, acknowledged {len(acknowledged)} "
        f"({acked_before_settling} before settling), stored {len(rows)} rows "
        f"({len(stored)} distinct), stored twice {sum(1 for n in stored.values() if n > 1)}, "
        f"stored but never sent {len(set(stored) - all_sent)}"
    )
    lost_total = dup_total = ooo_total = 0
    problems = []
    for m in members:
        got = deliveries(m.arrivals, m.username, m.resent)
        seen = set(got.seqs)
        lost = sorted(seq_of.get(k, -1) for k in acknowledged if seq_of.get(k) not in seen)
        lost_total += len(lost)
        dup_total += len(got.duplicated)
        ooo_total += len(got.out_of_order)
        say(
            f"  {m.name} ({m.username}): received {len(got.seqs)}, lost {len(lost)}, "
            f"duplicated {len(got.duplicated)}, out of order {len(got.out_of_order)}, "
            f"re-send answers {got.answers}, connections {m.connects}, "
            f"errors {dict(m.errors)}, not recovered {m.not_recovered}"
        )
        if lost or got.duplicated or got.out_of_order or m.not_recovered:
            problems.append(
                f"{m.name}: lost seqs {lost[:20]}, duplicated {got.duplicated[:20]}, "
                f"out of order {got.out_of_order[:20]}, not recovered {m.not_recovered}"
            )
        if seen != set(range(1, len(rows) + 1)):
            missing = sorted(set(range(1, len(rows) + 1)) - seen)
            problems.append(f"{m.name}: seqs missing {missing[:20]} ({len(missing)})")
    say(f"TOTAL lost {lost_total}, duplicated {dup_total}, out of order {ooo_total}")
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "stored seqs have gaps"
    assert all(n == 1 for n in stored.values()), "a message was stored twice"
    assert set(stored) <= all_sent
    assert acknowledged == all_sent, f"{len(all_sent - acknowledged)} never acknowledged"
    assert set(stored) == all_sent
    assert not problems, "\n".join(problems)
    assert lost_total == dup_total == ooo_total == 0
