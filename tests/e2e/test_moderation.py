"""Moderation, reactions, history pages and the send rate, across two gateways."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from justchat import wire
from justchat.client import Client
from justchat.keys import Keys
from justchat.wire import MAX_SANCTION_S

QUIET_S = 0.5


async def account(api: httpx.AsyncClient, database_url: str, role: str = "user") -> str:
    """Sign up an account with ``role`` and return a login token carrying it."""
    username = f"{role[:3]}{secrets.token_hex(4)}"
    created = await api.post("/auth/signup", json={"username": username, "password": "Pass-word1"})
    assert created.status_code == 201, created.text
    if role != "user":
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE users SET role = $1 WHERE username = $2", role, username)
        finally:
            await conn.close()
    login = await api.post("/auth/login", data={"username": username, "password": "Pass-word1"})
    return str(login.json()["access_token"])


async def joined(client: Client, channel_id: int) -> None:
    await client.join(channel_id)
    await client.expect("channel_join", where=lambda f: f.payload.user == client.user)


async def error_of(client: Client) -> str:
    frame = await client.expect("error")
    return str(frame.payload.detail)


async def no_more(client: Client, frame_type: str) -> None:
    with pytest.raises(TimeoutError):
        await client.expect(frame_type, timeout_s=QUIET_S)


@pytest.fixture
async def room(api: httpx.AsyncClient, database_url: str, connect, channel_id: int):
    """A moderator on gateway 0, a user and a bystander on gateway 1, all in one channel."""
    moderator = await connect(0, token=await account(api, database_url, "moderator"))
    user = await connect(1, token=await account(api, database_url))
    bystander = await connect(1)
    for client in (moderator, user, bystander):
        await joined(client, channel_id)
    return moderator, user, bystander


async def test_mute_stops_sends_and_typing_everywhere_until_unmuted(room, channel_id) -> None:
    moderator, user, bystander = room
    await moderator.send_frame(
        "chat_mute", {"channel_id": channel_id, "target": user.user.username, "reason": "calm"}
    )
    for client in (moderator, user, bystander):
        mute = await client.expect("chat_mute")
        assert mute.payload == wire.MuteOut(
            channel_id=channel_id, target=user.user.username, duration=None, reason="calm"
        )
    await user.send(channel_id, "can you hear me")
    assert await error_of(user) == "You are muted in this channel."
    await user.typing(channel_id)
    assert await error_of(user) == "You are muted in this channel."
    await no_more(bystander, "chat_send")
    # Muting twice is harmless; reacting stays allowed while muted.
    await moderator.send_frame(
        "chat_mute", {"channel_id": channel_id, "target": user.user.username}
    )
    await bystander.expect("chat_mute")
    await moderator.send_frame(
        "chat_unmute", {"channel_id": channel_id, "target": user.user.username}
    )
    unmute = await bystander.expect("chat_unmute")
    assert unmute.payload == wire.MuteOut(
        channel_id=channel_id, target=user.user.username, duration=None, reason=""
    )
    await user.expect("chat_unmute")
    await user.send(channel_id, "back")
    got = await bystander.expect("chat_send")
    assert got.payload.content == "back"


async def test_a_timed_mute_ends_by_itself(room, channel_id) -> None:
    moderator, user, bystander = room
    await moderator.send_frame(
        "chat_mute", {"channel_id": channel_id, "duration": "1", "target": user.user.username}
    )
    mute = await user.expect("chat_mute")
    assert mute.payload.duration == 1
    await user.send(channel_id, "too soon")
    assert await error_of(user) == "You are muted in this channel."
    await asyncio.sleep(1.2)
    await user.send(channel_id, "free again")
    got = await bystander.expect("chat_send")
    assert got.payload.content == "free again"


async def test_kick_reaches_everyone_then_removes_the_target_on_its_gateway(
    room, channel_id
) -> None:
    moderator, user, bystander = room
    await moderator.send_frame(
        "chat_kick", {"channel_id": channel_id, "target": user.user.username, "reason": "spam"}
    )
    for client in (moderator, user, bystander):
        kick = await client.expect("chat_kick")
        assert kick.payload == wire.KickOut(
            channel_id=channel_id, target=user.user.username, reason="spam"
        )
    members = await bystander.expect("channel_members")
    assert user.user not in members.payload.members
    leave = await bystander.recv()
    assert isinstance(leave, wire.LeaveFrame)
    assert leave.payload.user == user.user
    # The target is out: its sends are refused and it receives nothing more from the channel.
    await user.send(channel_id, "still here?")
    assert await error_of(user) == "You must join this channel first"
    await moderator.send(channel_id, "after the kick")
    await bystander.expect("chat_send")
    await no_more(user, "chat_send")


async def test_kicking_a_non_member_does_nothing(room, channel_id) -> None:
    moderator, _, bystander = room
    await moderator.send_frame("chat_kick", {"channel_id": channel_id, "target": "nobody-here"})
    await no_more(bystander, "chat_kick")


async def test_ban_removes_and_blocks_join_until_unbanned(room, channel_id) -> None:
    moderator, user, bystander = room
    await moderator.send_frame(
        "chat_ban", {"channel_id": channel_id, "target": user.user.username, "reason": "rude"}
    )
    ban = await bystander.expect("chat_ban")
    assert ban.payload.target == user.user.username
    await user.expect("chat_ban")
    leave = await bystander.expect("channel_leave")
    assert leave.payload.user == user.user
    await user.join(channel_id)
    assert await error_of(user) == "You are banned from this channel."
    await moderator.send_frame(
        "chat_unban", {"channel_id": channel_id, "target": user.user.username}
    )
    await moderator.expect("chat_unban")
    await joined(user, channel_id)


async def test_only_moderators_moderate(room, channel_id) -> None:
    _, user, bystander = room
    for frame_type in ("chat_kick", "chat_mute", "chat_unmute", "chat_ban", "chat_unban"):
        await user.send_frame(
            frame_type, {"channel_id": channel_id, "target": bystander.user.username}
        )
        assert await error_of(user) == "You don't have permission to run this command."
    await bystander.send_frame(
        "chat_mute", {"channel_id": channel_id, "target": user.user.username}
    )
    assert await error_of(bystander) == "You don't have permission to run this command."


async def test_moderation_is_audited(room, channel_id, database_url: str) -> None:
    moderator, user, _ = room
    await moderator.send_frame(
        "chat_mute",
        {"channel_id": channel_id, "duration": 60, "target": user.user.username, "reason": "why"},
    )
    await moderator.expect("chat_mute")
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT actor, action, target, reason, expires_at FROM audit_log"
            " WHERE channel_id = $1 ORDER BY id DESC LIMIT 1",
            channel_id,
        )
    finally:
        await conn.close()
    assert (row["actor"], row["action"], row["target"], row["reason"]) == (
        moderator.user.username,
        "mute",
        user.user.username,
        "why",
    )
    assert row["expires_at"] is not None


async def test_reactions_are_idempotent_counted_and_in_history(room, channel_id, connect) -> None:
    moderator, user, bystander = room
    await moderator.send(channel_id, "react to me")
    message = await bystander.expect("chat_send")
    react = {"channel_id": channel_id, "message_id": message.id, "emote": ":+1:"}
    for client, expected in ((user, 1), (user, 1), (bystander, 2)):
        await client.send_frame("chat_react_add", react)
        added = await moderator.expect("chat_react_add")
        assert added.payload.count == expected
        assert added.payload.user == client.user
    await user.send_frame("chat_react_remove", react)
    removed = await moderator.expect("chat_react_remove")
    assert removed.payload.count == 1
    late = await connect(0)
    await late.join(channel_id)
    history = await late.expect("chat_send")
    assert history.id == message.id
    assert history.payload.reactions == [
        wire.ReactionSummary(emote=":+1:", count=1, users=[bystander.user.username])
    ]


async def test_reacting_to_a_message_elsewhere_is_an_error(room, channel_id) -> None:
    moderator, _, bystander = room
    await moderator.send_frame(
        "chat_react_add",
        {
            "channel_id": channel_id,
            "message_id": "00000000-0000-4000-8000-000000000000",
            "emote": "x",
        },
    )
    assert await error_of(moderator) == "Message does not exist."
    await moderator.send_frame(
        "chat_react_add", {"channel_id": channel_id, "message_id": "not-a-uuid", "emote": "x"}
    )
    assert await error_of(moderator) == "Malformed message."
    await no_more(bystander, "chat_react_add")


async def test_history_pages_go_back_by_seq(connect, channel_id) -> None:
    client = await connect(0)
    await joined(client, channel_id)
    for i in range(7):
        await client.send(channel_id, f"p{i}")
    for _ in range(7):
        await client.expect("chat_send")
    seen: list[str] = []
    before = None
    while True:
        payload = {"channel_id": channel_id, "limit": 3}
        if before is not None:
            payload["before_seq"] = before
        await client.send_frame("channel_history", payload)
        page = await client.expect("channel_history")
        seqs = [m.seq for m in page.payload.messages]
        assert seqs == sorted(seqs)
        seen = [m.content for m in page.payload.messages] + seen
        if not page.payload.has_more:
            break
        before = seqs[0]
    assert seen == [f"p{i}" for i in range(7)]


async def test_the_send_rate_is_per_user_across_connections(
    api: httpx.AsyncClient,
    database_url: str,
    connect,
    channel_id: int,
    redis_url: str,
    redis_prefix: str,
) -> None:
    token = await account(api, database_url)
    tabs = [await connect(0, token=token), await connect(1, token=token)]
    for tab in tabs:
        await joined(tab, channel_id)
    # One tab used the user's whole allowance and more (the test stack refills 100/s): the
    # bucket is 90 sends in debt, under a second's refill. Neither tab, on either gateway, may
    # send until it is repaid; a bucket per connection would let both through.
    redis = aioredis.Redis.from_url(redis_url)
    try:
        seconds, micros = await redis.time()
        now_ms = seconds * 1000 + micros // 1000
        bucket = Keys(redis_prefix).send_rate(tabs[0].user.username)
        await redis.hset(bucket, mapping={"tokens": -90, "at": now_ms})
    finally:
        await redis.aclose()
    for tab in tabs:
        await tab.send(channel_id, "x")
    refused = [(await tab.expect("error")).payload for tab in tabs]
    assert {e.detail for e in refused} == {"You are sending messages too fast."}
    assert all(0 < e.retry_after_ms <= 1000 for e in refused)


async def test_rest_moderation_is_applied_by_chat_service(
    api: httpx.AsyncClient, database_url: str, room, channel_id
) -> None:
    """The dashboard's sanctions go through the same command path as WebSocket moderation."""
    _, user, bystander = room
    headers = {"Authorization": f"Bearer {await account(api, database_url, 'admin')}"}
    url = f"/dashboard/channels/{channel_id}/sanctions"
    body = {"username": user.user.username, "kind": "mute", "duration_s": 0, "reason": "rest"}
    created = await api.post(url, json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["kind"] == "mute"
    mute = await bystander.expect("chat_mute")
    assert mute.payload.target == user.user.username
    await user.send(channel_id, "muted over REST")
    assert await error_of(user) == "You are muted in this channel."
    listed = await api.get(url, headers=headers)
    assert listed.json()["sanctions"] == [created.json()]
    renewed = await api.post(url, json={**body, "reason": "again"}, headers=headers)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["reason"] == "again"
    await bystander.expect("chat_mute")
    lifted = await api.delete(f"{url}/mute/{user.user.username}", headers=headers)
    assert lifted.status_code == 204
    await bystander.expect("chat_unmute")
    audit = await api.get("/dashboard/audit", params={"channel_id": channel_id}, headers=headers)
    assert [e["action"] for e in audit.json()["entries"]][:3] == ["unmute", "mute", "mute"]


async def test_rest_moderation_refused_by_chat_service_is_403(
    api: httpx.AsyncClient, database_url: str, connect, channel_id
) -> None:
    """A moderator may not mute an admin: the REST caller gets chat-service's refusal."""
    headers = {"Authorization": f"Bearer {await account(api, database_url, 'moderator')}"}
    target = await connect(0, token=await account(api, database_url, "admin"))
    bystander = await connect(1)
    for client in (target, bystander):
        await joined(client, channel_id)
    url = f"/dashboard/channels/{channel_id}/sanctions"
    refused = await api.post(
        url, json={"username": target.user.username, "kind": "mute"}, headers=headers
    )
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": "You don't have permission to run this command."}
    await no_more(bystander, "chat_mute")
    assert (await api.get(url, headers=headers)).json() == {"count": 0, "sanctions": []}
    too_long = await api.post(
        url,
        json={"username": target.user.username, "kind": "ban", "duration_s": MAX_SANCTION_S + 1},
        headers=headers,
    )
    assert too_long.status_code == 422, too_long.text


async def test_a_mute_longer_than_storage_holds_is_malformed_not_a_dead_letter(
    room, channel_id, redis_url: str, redis_prefix: str
) -> None:
    moderator, user, bystander = room
    dead_letters = Keys(redis_prefix).dead_letters
    redis = aioredis.Redis.from_url(redis_url)
    try:
        dead_before = await redis.xlen(dead_letters)
        await moderator.send_frame(
            "chat_mute",
            {"channel_id": channel_id, "target": user.user.username, "duration": 2**31},
        )
        assert await error_of(moderator) == "Malformed message."
        await no_more(bystander, "chat_mute")
        assert await redis.xlen(dead_letters) == dead_before
    finally:
        await redis.aclose()
    # Nothing was applied, and the moderator's connection still works.
    await user.send(channel_id, "not muted")
    assert (await bystander.expect("chat_send")).payload.content == "not muted"
    await moderator.send_frame(
        "chat_mute",
        {"channel_id": channel_id, "target": user.user.username, "duration": MAX_SANCTION_S},
    )
    assert (await bystander.expect("chat_mute")).payload.duration == MAX_SANCTION_S


async def test_the_dashboard_reads_live_presence_across_gateways(
    api: httpx.AsyncClient, database_url: str, connect, channel_id: int
) -> None:
    headers = {"Authorization": f"Bearer {await account(api, database_url, 'moderator')}"}
    a = await connect(0)
    b = await connect(1)
    await joined(a, channel_id)
    await joined(b, channel_id)
    active = (await api.get("/dashboard/channels/active", headers=headers)).json()
    assert {"id": channel_id} in active["channels"]
    members = (await api.get(f"/dashboard/channels/members/{channel_id}", headers=headers)).json()
    assert [u["username"] for u in members["users"]] == [a.user.username, b.user.username]
    assert members["count"] == 2
    await a.close()
    await b.expect("channel_leave")
    await b.close()
    for _ in range(50):
        active = (await api.get("/dashboard/channels/active", headers=headers)).json()
        if {"id": channel_id} not in active["channels"]:
            break
        await asyncio.sleep(0.1)
    assert {"id": channel_id} not in active["channels"]
