"""The whole topology end to end: two gateways, chat-service, presence-service, dashboard."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import redis.asyncio as aioredis

from justchat import wire
from justchat.client import Client
from justchat.keys import Keys
from justchat.stack import Stack

QUIET_S = 0.5


def names(members: wire.MembersOut) -> list[str]:
    return [m.username for m in members.members]


async def assert_quiet(client: Client) -> None:
    """Nothing more arrives for this client (within QUIET_S)."""
    try:
        frame = await client.recv(QUIET_S)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame {frame}")


async def joined(client: Client, channel_id: int) -> wire.MembersOut:
    """Join and consume the joiner's frames up to its own channel_join; return the members."""
    await client.join(channel_id)
    members = await client.expect("channel_members")
    join = await client.recv()
    assert isinstance(join, wire.JoinFrame)
    assert join.payload.user == client.user
    return members.payload  # type: ignore[no-any-return]


async def test_two_gateways_see_each_other_in_protocol_order(connect, channel_id: int) -> None:
    a = await connect(0)
    b = await connect(1)
    assert a.user.is_guest and b.user.is_guest and a.user != b.user

    # Joining a new channel: no history, then members, then join, to the joiner.
    await a.join(channel_id)
    first = await a.recv()
    assert isinstance(first, wire.MembersFrame)
    assert names(first.payload) == [a.user.username]
    own_join = await a.recv()
    assert isinstance(own_join, wire.JoinFrame) and own_join.payload.user == a.user

    # b joins on the other gateway: both see members (both users) then b's join.
    await b.join(channel_id)
    for client in (b, a):
        members = await client.recv()
        assert isinstance(members, wire.MembersFrame), members
        assert names(members.payload) == [a.user.username, b.user.username]
        join = await client.recv()
        assert isinstance(join, wire.JoinFrame) and join.payload.user == b.user

    # Messages: stored, then broadcast to everyone including the sender, same order for all.
    await a.send(channel_id, "hello from a")
    await b.send(channel_id, "hello from b")
    seen = {}
    for client in (a, b):
        frames = [await client.recv(), await client.recv()]
        assert all(isinstance(f, wire.ChatSendFrame) for f in frames)
        seen[client.user.username] = [
            (f.payload.seq, f.payload.sender, f.payload.content, f.id) for f in frames
        ]
    assert seen[a.user.username] == seen[b.user.username]
    assert [s for s, *_ in seen[a.user.username]] == [1, 2]
    assert {c for _, _, c, _ in seen[a.user.username]} == {"hello from a", "hello from b"}

    # Typing reaches every member, the typist too.
    await b.typing(channel_id)
    for client in (a, b):
        typing = await client.recv()
        assert isinstance(typing, wire.TypingFrame) and typing.payload.user == b.user

    # Leave: the others get members then leave; the leaver gets nothing.
    await b.leave(channel_id)
    members = await a.recv()
    assert isinstance(members, wire.MembersFrame)
    assert names(members.payload) == [a.user.username]
    leave = await a.recv()
    assert isinstance(leave, wire.LeaveFrame) and leave.payload.user == b.user
    await assert_quiet(b)

    # Closing a connection leaves its channels too, across gateways.
    c = await connect(1)
    await joined(c, channel_id)
    await a.expect("channel_join", where=lambda f: f.payload.user == c.user)
    await c.close()
    members = await a.expect("channel_members")
    assert names(members.payload) == [a.user.username]
    leave = await a.recv()
    assert isinstance(leave, wire.LeaveFrame) and leave.payload.user == c.user


async def test_one_user_with_two_connections_is_one_member(
    connect, channel_id: int, registered
) -> None:
    token = registered["token"]
    tab1 = await connect(0, token=token)
    tab2 = await connect(1, token=token)
    watcher = await connect(0)
    await joined(watcher, channel_id)
    await joined(tab1, channel_id)
    await watcher.expect("channel_join")
    members = await joined(tab2, channel_id)
    assert names(members) == [watcher.user.username, tab1.user.username]
    # Nothing changed for the others: no second join, no new list.
    await assert_quiet(watcher)
    # Closing one tab changes nothing for the others; closing the last one is a leave.
    await tab1.close()
    await assert_quiet(watcher)
    await tab2.close()
    members_frame = await watcher.expect("channel_members")
    assert names(members_frame.payload) == [watcher.user.username]
    leave = await watcher.recv()
    assert isinstance(leave, wire.LeaveFrame) and leave.payload.user == tab2.user


async def test_history_on_join_comes_from_postgres_after_every_service_restarts(
    stack: Stack,
    connect,
    channel_id: int,
    registered,
    redis_url: str,
    redis_prefix: str,
) -> None:
    member = await connect(0, token=registered["token"])
    guest = await connect(1)
    await joined(member, channel_id)
    await joined(guest, channel_id)
    await member.expect("channel_join")
    sent = []
    for i, (client, text) in enumerate([(member, "one"), (guest, "two"), (member, "three")]):
        await client.send(channel_id, text)
        echo = await client.expect("chat_send", where=lambda f, t=text: f.payload.content == t)
        assert echo.payload.seq == i + 1
        sent.append((echo.id, echo.payload.seq, echo.payload.sender, text))
    await member.close()
    await guest.close()

    await stack.restart()
    # Redis keeps nothing that history depends on: drop the channel's keys to prove it.
    redis = aioredis.Redis.from_url(redis_url)
    keys = Keys(redis_prefix)
    await redis.delete(keys.channel_recent(channel_id), keys.channel_conns(channel_id))
    await redis.aclose()

    late = await connect(1)
    await late.join(channel_id)
    history = [await late.recv() for _ in sent]
    assert all(isinstance(f, wire.ChatSendFrame) for f in history)
    assert [(f.id, f.payload.seq, f.payload.sender, f.payload.content) for f in history] == sent
    assert history[1].payload.sender.is_guest and not history[0].payload.sender.is_guest
    assert all(f.timestamp.endswith("Z") for f in history)
    members = await late.recv()
    assert isinstance(members, wire.MembersFrame)
    assert names(members.payload) == [late.user.username]
    # Member lists are paced: the leaves of the earlier members may still be in their window,
    # and come (after the list that already shows them gone) before the joiner's own join.
    earlier = {member.user, guest.user}
    while isinstance(frame := await late.recv(), wire.LeaveFrame):
        assert frame.payload.user in earlier
    assert isinstance(frame, wire.JoinFrame) and frame.payload.user == late.user


async def test_history_is_the_last_n_oldest_first(connect, channel_id: int) -> None:
    a = await connect(0)
    await joined(a, channel_id)
    for i in range(55):
        await a.send(channel_id, f"m{i}")
    for _ in range(55):
        await a.expect("chat_send")
    b = await connect(1)
    await b.join(channel_id)
    history = [await b.recv() for _ in range(50)]
    assert [f.payload.content for f in history] == [f"m{i}" for i in range(5, 55)]
    assert [f.payload.seq for f in history] == list(range(6, 56))
    assert isinstance(await b.recv(), wire.MembersFrame)


async def test_messages_sent_while_joining_are_neither_missed_nor_duplicated(
    connect, channel_id: int
) -> None:
    sender = await connect(0)
    await joined(sender, channel_id)
    total = 60

    async def send_all() -> None:
        for i in range(total):
            await sender.send(channel_id, f"n{i}")
            await asyncio.sleep(0.002)

    sending = asyncio.create_task(send_all())
    await asyncio.sleep(0.02)
    joiner = await connect(1)
    await joiner.join(channel_id)
    await sending
    contents = []
    while len(contents) < total:
        frame = await joiner.recv()
        if isinstance(frame, wire.ChatSendFrame):
            contents.append(frame.payload.content)
    assert contents == [f"n{i}" for i in range(total)]
    await assert_quiet_of_messages(joiner)


async def assert_quiet_of_messages(client: Client) -> None:
    while True:
        try:
            frame = await client.recv(QUIET_S)
        except TimeoutError:
            return
        assert not isinstance(frame, wire.ChatSendFrame), frame


async def test_guests_are_unique_and_stored(connect, database_url: str) -> None:
    clients = [await connect() for _ in range(6)]
    usernames = [c.user.username for c in clients]
    assert len(set(usernames)) == 6
    assert all(u.startswith("Guest") and u[5:].isdigit() for u in usernames)
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(50):
            rows = await conn.fetch(
                "SELECT username, is_guest, role FROM users WHERE username = ANY($1)", usernames
            )
            if len(rows) == 6:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert sorted(r["username"] for r in rows) == sorted(usernames)
    assert all(r["is_guest"] and r["role"] == "guest" for r in rows)


async def test_every_service_reports_health_and_metrics(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for service in stack.services:
            health = await http.get(f"http://127.0.0.1:{service.port}/health")
            assert health.status_code == 200, (service.name, health.text)
            assert health.json()["status"] == "ok"
            metrics = await http.get(f"http://127.0.0.1:{service.port}/metrics")
            assert metrics.status_code == 200
            assert "# TYPE justchat_" in metrics.text


async def test_a_killed_service_is_restarted_and_nothing_sent_is_lost(
    stack: Stack, connect, channel_id: int
) -> None:
    a = await connect(0)
    b = await connect(1)
    await joined(a, channel_id)
    await joined(b, channel_id)
    chat = stack.service("chat")
    assert chat.process is not None
    restarts = chat.restarts
    chat.process.kill()  # SIGKILL: no chance to release its partition leases
    await a.send(channel_id, "sent while chat-service is down")
    # The supervisor restarts it; the new replica takes the partitions over once the dead one's
    # leases expire, and processes the pending command.
    got = await b.expect("chat_send", timeout_s=30)
    assert got.payload.content == "sent while chat-service is down"
    assert got.payload.seq == 1
    assert chat.restarts == restarts + 1
    async with httpx.AsyncClient(timeout=5) as http:
        health = await http.get(chat.health_url)
    assert health.status_code == 200


async def test_resume_replays_exactly_what_was_missed(connect, channel_id: int) -> None:
    a = await connect(0)
    b = await connect(1)
    await joined(a, channel_id)
    await joined(b, channel_id)
    for i in range(3):
        await a.send(channel_id, f"before {i}")
        await b.expect("chat_send")
    seen = b.last_seq[channel_id]
    await b.close()
    for i in range(4):
        await a.send(channel_id, f"missed {i}")
    for i in range(4):  # each stored (a's echoes of "before" are still unread)
        await a.expect("chat_send", where=lambda f, i=i: f.payload.content == f"missed {i}")
    again = await connect(0)
    await again.join(channel_id, since_seq=seen)
    replay = [await again.recv() for _ in range(4)]
    assert [f.payload.content for f in replay] == [f"missed {i}" for i in range(4)]
    assert [f.payload.seq for f in replay] == list(range(seen + 1, seen + 5))
    resumed = await again.recv()
    assert isinstance(resumed, wire.ResumedFrame)
    assert resumed.payload == wire.ResumedOut(
        channel_id=channel_id, recovered=True, last_seq=seen + 4
    )
    # Nothing missed: nothing replayed, and still told where the channel stands.
    current = await connect(1)
    await current.join(channel_id, since_seq=seen + 4)
    resumed = await current.recv()
    assert isinstance(resumed, wire.ResumedFrame)
    assert resumed.payload.last_seq == seen + 4
