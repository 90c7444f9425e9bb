"""Presence across gateways and crashes, on a stack of its own: two presence-service replicas,
coalesced member lists (1 s, the default), throttled typing (1 s), a 3 s presence TTL.

Wherever member lists are coalesced, each member must still receive ``channel_members`` before
the join or leave it explains (``check_order``)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from justchat import wire
from justchat.client import Client
from justchat.keys import Keys, partition_of
from justchat.stack import Stack, StackConfig
from presence_service.windows import BURST

TTL_S = 3.0
MEMBERS_INTERVAL_S = 1.0
TYPING_INTERVAL_S = 1.0


@pytest.fixture(scope="module")
async def presence_stack(
    tmp_path_factory: pytest.TempPathFactory,
    make_stack_config: Callable[..., StackConfig],
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
) -> AsyncIterator[Stack]:
    prefix = f"{redis_prefix}p{uuid.uuid4().hex[:8]}:"  # under the session's, which cleans up
    async with Stack(
        make_stack_config(
            tmp_path_factory.mktemp("presence-stack"),
            redis_url=redis_url,
            database_url=database_url,
            redis_prefix=prefix,
            jwt_secret=jwt_secret,
            presence_replicas=2,
            env={
                "JUSTCHAT_PRESENCE_TTL_S": str(TTL_S),
                "JUSTCHAT_MEMBERS_INTERVAL_MS": str(int(MEMBERS_INTERVAL_S * 1000)),
                "JUSTCHAT_TYPING_INTERVAL_MS": str(int(TYPING_INTERVAL_S * 1000)),
            },
        )
    ) as stack:
        yield stack


@pytest.fixture
async def clients(presence_stack: Stack) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Client] = []

    async def connect(gateway: int) -> Client:
        client = await Client.connect(presence_stack.gateway_urls[gateway])
        opened.append(client)
        return client

    yield connect
    await asyncio.gather(*(client.close() for client in opened))


@pytest.fixture
def redis_keys(presence_stack: Stack) -> Keys:
    return Keys(presence_stack.config.env["JUSTCHAT_REDIS_PREFIX"])


async def join(client: Client, channel_id: int) -> None:
    await client.join(channel_id)
    await client.expect("channel_join", where=lambda f: f.payload.user == client.user)


async def collect(client: Client, seconds: float) -> list[wire.AnyServerFrame]:
    """Every frame that arrives within ``seconds``."""
    frames: list[wire.AnyServerFrame] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(await client.recv(left))
        except TimeoutError:
            break
    return frames


def usernames(frame: wire.MembersFrame) -> set[str]:
    return {m.username for m in frame.payload.members}


def check_order(frames: list[wire.AnyServerFrame], channel_id: int) -> list[tuple[str, str]]:
    """Every join or leave comes after a list that explains it, and every list explains
    something (no duplicates); returns the joins and leaves in order."""
    latest: set[str] | None = None
    explained = True
    seen: list[tuple[str, str]] = []
    for frame in frames:
        if isinstance(frame, wire.MembersFrame) and frame.payload.channel_id == channel_id:
            assert explained, f"a list that explains nothing in {channel_id}"
            latest, explained = usernames(frame), False
        elif (
            isinstance(frame, wire.JoinFrame | wire.LeaveFrame)
            and frame.payload.channel_id == channel_id
        ):
            who = frame.payload.user.username
            kind = "join" if isinstance(frame, wire.JoinFrame) else "leave"
            assert latest is not None, f"{kind} of {who} before any list"
            assert (who in latest) == (kind == "join"), f"{kind} of {who} after the list {latest}"
            seen.append((kind, who))
            explained = True
    assert explained, f"the last list in {channel_id} explains nothing"
    return seen


@pytest.mark.slow
async def test_a_killed_gateways_users_leave_once_within_the_ttl(
    presence_stack: Stack, clients: Callable[..., Any], redis_keys: Keys, redis_url: str
) -> None:
    channels = [int(uuid.uuid4().int % 2**30) + 1 for _ in range(2)]
    watcher = await clients(0)
    doomed = [await clients(1) for _ in range(3)]
    twin = await clients(1)  # in the first channel only
    for channel_id in channels:
        await join(watcher, channel_id)
        for client in doomed:
            await join(client, channel_id)
    await join(twin, channels[0])
    await collect(watcher, MEMBERS_INTERVAL_S + 0.5)  # let coalesced lists settle

    gateway = presence_stack.service("gateway-1")
    assert gateway.process is not None
    killed_at = time.monotonic()
    os.kill(gateway.process.pid, signal.SIGKILL)

    gone = {c.user.username for c in doomed} | {twin.user.username}
    expected = {channels[0]: gone, channels[1]: {c.user.username for c in doomed}}
    leaves: dict[int, list[str]] = {c: [] for c in channels}
    last_members: dict[int, set[str]] = {}
    seen: list[wire.AnyServerFrame] = []
    deadline = killed_at + TTL_S + 2 * MEMBERS_INTERVAL_S + 3
    while time.monotonic() < deadline:
        try:
            frame = await watcher.recv(max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        seen.append(frame)
        if isinstance(frame, wire.LeaveFrame):
            leaves[frame.payload.channel_id].append(frame.payload.user.username)
            if all(sorted(leaves[c]) == sorted(expected[c]) for c in channels):
                left_within = time.monotonic() - killed_at
        elif isinstance(frame, wire.MembersFrame):
            last_members[frame.payload.channel_id] = usernames(frame)
    for channel_id in channels:
        assert sorted(leaves[channel_id]) == sorted(expected[channel_id])  # each exactly once
        assert last_members[channel_id] == {watcher.user.username}
        assert sorted(who for _, who in check_order(seen, channel_id)) == sorted(
            expected[channel_id]
        )
    assert left_within <= TTL_S + 2.5, left_within
    print(f"\nall leaves {left_within:.2f}s after SIGKILL (TTL {TTL_S}s)")

    redis = aioredis.Redis.from_url(redis_url)
    try:
        online = await redis.hgetall(redis_keys.online_users)
        for username in gone:
            assert username.encode() not in online
        assert online.get(watcher.user.username.encode()) == b"1"
    finally:
        await redis.aclose()


@pytest.mark.slow
async def test_presence_restart_loses_nothing(
    presence_stack: Stack, clients: Callable[..., Any]
) -> None:
    channel_id = int(uuid.uuid4().int % 2**30) + 1
    watcher = await clients(0)
    other = await clients(1)
    await join(watcher, channel_id)
    await join(other, channel_id)
    await presence_stack.restart("presence", "presence-1")
    await collect(watcher, MEMBERS_INTERVAL_S + 0.5)
    await other.leave(channel_id)
    frames = await collect(watcher, MEMBERS_INTERVAL_S + 1.5)
    leaves = [f for f in frames if isinstance(f, wire.LeaveFrame)]
    assert [f.payload.user for f in leaves] == [other.user]
    members = [f for f in frames if isinstance(f, wire.MembersFrame)]
    assert members
    assert usernames(members[-1]) == {watcher.user.username}
    partitions: set[int] = set()
    async with httpx.AsyncClient(timeout=5) as http:
        for name in ("presence", "presence-1"):
            health = await http.get(presence_stack.service(name).health_url)
            assert health.status_code == 200
            partitions.update(health.json()["detail"]["partitions"])
    assert sorted(partitions) == list(range(8))  # the two replicas share every partition


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_join_storm_sends_coalesced_member_lists(
    presence_stack: Stack, clients: Callable[..., Any]
) -> None:
    storm = 200
    channel_id = int(uuid.uuid4().int % 2**30) + 1
    watcher = await clients(0)
    await join(watcher, channel_id)
    joiners = [await clients(i % 2) for i in range(storm)]
    started = time.monotonic()
    await asyncio.gather(*(j.join(channel_id) for j in joiners))
    everyone = {watcher.user.username} | {j.user.username for j in joiners}

    async def last_list(client: Client) -> tuple[int, set[str]]:
        """Count this client's member lists until its own join is in and all is quiet, checking
        that each join it receives follows a list that names the joiner."""
        count, latest, joined = 0, set[str](), client is watcher
        frames: list[wire.AnyServerFrame] = []
        while True:
            try:
                frame = await client.recv(60 if not joined else MEMBERS_INTERVAL_S + 1.5)
            except TimeoutError:
                check_order(frames, channel_id)
                return count, latest
            frames.append(frame)
            if isinstance(frame, wire.MembersFrame):
                count += 1
                latest = usernames(frame)
            elif isinstance(frame, wire.JoinFrame) and frame.payload.user == client.user:
                joined = True
            elif isinstance(frame, wire.ErrorFrame):
                raise AssertionError(frame)

    results = await asyncio.gather(last_list(watcher), *(last_list(j) for j in joiners))
    elapsed = time.monotonic() - started - (MEMBERS_INTERVAL_S + 1.5)
    counts = [count for count, _ in results]
    wrong = [(len(latest), len(everyone - latest)) for _, latest in results if latest != everyone]
    assert not wrong, wrong  # everyone ends with the truth
    # A quiet channel's burst, then at most one broadcast per interval; joiners get no extra
    # list of their own.
    bound = BURST + int(elapsed / MEMBERS_INTERVAL_S) + 1
    assert counts[0] <= bound, (counts[0], bound)
    assert max(counts[1:]) <= bound, (max(counts), bound)
    naive = storm * (storm + 1) // 2 + storm  # one list per member per join
    print(
        f"\njoin storm of {storm}: {sum(counts)} channel_members frames in {elapsed:.1f}s "
        f"(uncoalesced: {naive}); the first member got {counts[0]}"
    )


@pytest.mark.slow
async def test_typing_is_throttled_and_a_message_ends_it(
    presence_stack: Stack, clients: Callable[..., Any]
) -> None:
    channel_id = int(uuid.uuid4().int % 2**30) + 1
    watcher = await clients(0)
    typist = await clients(1)
    await join(watcher, channel_id)
    await join(typist, channel_id)
    await collect(watcher, MEMBERS_INTERVAL_S + 0.3)
    for _ in range(5):
        await typist.typing(channel_id)
    frames = await collect(watcher, TYPING_INTERVAL_S * 0.8)
    assert sum(isinstance(f, wire.TypingFrame) for f in frames) == 1
    await typist.send(channel_id, "done typing")
    await watcher.expect("chat_send")
    await typist.typing(channel_id)
    typing = await watcher.expect("chat_typing", timeout_s=TYPING_INTERVAL_S * 0.8)
    assert typing.payload.user == typist.user


@pytest.mark.slow
async def test_online_state_counts_connections(
    presence_stack: Stack, redis_keys: Keys, redis_url: str
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    signup_user = f"on{uuid.uuid4().hex[:8]}"
    api = f"{presence_stack.api_url}/api/v1"
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(
            f"{api}/auth/signup", json={"username": signup_user, "password": "Secret-pass1"}
        )
        assert created.status_code == 201
        login = await http.post(
            f"{api}/auth/login", data={"username": signup_user, "password": "Secret-pass1"}
        )
    token = login.json()["access_token"]

    async def online() -> int:
        value = await redis.hget(redis_keys.online_users, signup_user)
        return int(value or 0)

    async def wait_for(count: int) -> None:
        deadline = time.monotonic() + 5
        while await online() != count:
            assert time.monotonic() < deadline, (await online(), count)
            await asyncio.sleep(0.05)

    try:
        first = await Client.connect(presence_stack.gateway_urls[0], token=token)
        second = await Client.connect(presence_stack.gateway_urls[1], token=token)
        await wait_for(2)
        await first.close()
        await wait_for(1)
        await second.close()
        await wait_for(0)
    finally:
        await redis.aclose()


@pytest.mark.slow
async def test_a_window_held_by_a_killed_replica_is_still_sent(
    presence_stack: Stack, clients: Callable[..., Any], redis_keys: Keys, redis_url: str
) -> None:
    """Changes held for a window live in Redis: when the replica holding them dies before the
    window's end, another replica sends them (list first), instead of losing them."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        for _attempt in range(3):  # the window must still be held when the kill lands
            channel_id = int(uuid.uuid4().int % 2**30) + 1
            owner = await partition_owner(presence_stack, partition_of(channel_id, 8))
            watcher = await clients(0)
            arrivals = [await clients(i % 2) for i in range(BURST)]
            await join(watcher, channel_id)
            await asyncio.gather(*(a.join(channel_id) for a in arrivals))  # one must wait
            held = redis_keys.members_held(channel_id)
            deadline = time.monotonic() + 5
            while not await redis.exists(held) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert owner.process is not None
            os.kill(owner.process.pid, signal.SIGKILL)
            if await redis.exists(held):
                break
            await collect(watcher, MEMBERS_INTERVAL_S + 0.5)  # sent before the kill: again
        else:
            raise AssertionError("no window was still held when its replica was killed")
        everyone = {watcher.user.username} | {a.user.username for a in arrivals}
        expected = [("join", a.user.username) for a in arrivals]
        frames: list[wire.AnyServerFrame] = []
        deadline = time.monotonic() + TTL_S + 4 * MEMBERS_INTERVAL_S + 5
        waiting = {a.user.username for a in arrivals}
        while waiting:
            frame = await watcher.recv(max(0.05, deadline - time.monotonic()))
            frames.append(frame)
            if isinstance(frame, wire.JoinFrame):
                waiting.discard(frame.payload.user.username)
        assert sorted(check_order(frames, channel_id)) == sorted(expected)
        last = [f for f in frames if isinstance(f, wire.MembersFrame)][-1]
        assert usernames(last) == everyone
    finally:
        await redis.aclose()
        await wait_healthy(presence_stack, "presence", "presence-1")


async def partition_owner(stack: Stack, partition: int) -> Any:
    """The presence-service replica holding ``partition``'s lease."""
    async with httpx.AsyncClient(timeout=5) as http:
        for name in ("presence", "presence-1"):
            health = await http.get(stack.service(name).health_url)
            if health.status_code == 200 and partition in health.json()["detail"]["partitions"]:
                return stack.service(name)
    raise AssertionError(f"no replica holds presence partition {partition}")


async def wait_healthy(stack: Stack, *names: str) -> None:
    """Until the supervisor has brought the killed replica back (the module's other tests
    expect both)."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2) as http:
        for name in names:
            while True:
                try:
                    if (await http.get(stack.service(name).health_url)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{name} did not come back"
                await asyncio.sleep(0.2)
