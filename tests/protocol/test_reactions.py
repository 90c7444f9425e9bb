"""PROTOCOL.md sections 4 and 5: chat_react_add and chat_react_remove, stored per (message, user,
emote), idempotent, counted, allowed for guests and muted users, and carried in history."""

from __future__ import annotations

import json
import uuid

from msgspec import UNSET

from justchat import wire


async def room(proto, channel_id: int, size: int = 2) -> list:
    clients = [await proto.connect(i % 2) for i in range(size)]
    for client in clients:
        await proto.joined(client, channel_id)
    for client in clients:
        await proto.collect(client, 0.2)
    return clients


async def react(client, add: bool, channel_id: int, message_id: str, emote: str) -> None:
    await client.send_frame(
        "chat_react_add" if add else "chat_react_remove",
        {"emote": emote, "message_id": message_id, "channel_id": channel_id},
    )


async def next_reaction(client) -> wire.ReactAddFrame | wire.ReactRemoveFrame:
    frame = await client.recv()
    assert isinstance(frame, wire.ReactAddFrame | wire.ReactRemoveFrame), frame
    return frame


async def posted(proto, client, channel_id: int, text: str = "react to me") -> str:
    return (await proto.echo(client, channel_id, text)).id


async def test_react_add_broadcast_to_all_members(proto, channel_id: int) -> None:
    a, b = await room(proto, channel_id)
    message_id = await posted(proto, a, channel_id)
    await b.expect("chat_send")
    await react(b, True, channel_id, message_id, "👍")
    for client in (a, b):
        frame = await next_reaction(client)
        assert isinstance(frame, wire.ReactAddFrame)
        assert frame.payload == wire.ReactOut(
            emote="👍", message_id=message_id, channel_id=channel_id, user=b.user, count=1
        )


async def test_react_broadcast_payload_keys(proto, channel_id: int) -> None:
    ws, hello = await proto.hello()
    await ws.send(json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}}))
    payload = {"channel_id": channel_id, "content": "x"}
    await ws.send(json.dumps({"type": "chat_send", "payload": payload}))
    while (sent := await proto.recv_json(ws))["type"] != "chat_send":
        pass
    body = {"emote": "🎉", "message_id": sent["id"], "channel_id": channel_id}
    await ws.send(json.dumps({"type": "chat_react_add", "payload": body}))
    frame = await proto.recv_json(ws)
    assert frame["type"] == "chat_react_add"
    # The same payload keys as sent, plus user and count [ext].
    assert frame["payload"] == {**body, "user": hello["payload"]["user"], "count": 1}


async def test_react_remove_works(proto, channel_id: int) -> None:
    a, b = await room(proto, channel_id)
    message_id = await posted(proto, a, channel_id)
    await b.expect("chat_send")
    await react(a, True, channel_id, message_id, "❤️")
    await next_reaction(a)
    await next_reaction(b)
    await react(a, False, channel_id, message_id, "❤️")
    for client in (a, b):
        frame = await next_reaction(client)
        assert isinstance(frame, wire.ReactRemoveFrame)
        assert frame.payload == wire.ReactOut(
            emote="❤️", message_id=message_id, channel_id=channel_id, user=a.user, count=0
        )


async def test_react_add_and_remove_are_idempotent_and_counted(proto, channel_id: int) -> None:
    a, b, c = await room(proto, channel_id, 3)
    message_id = await posted(proto, a, channel_id)
    await proto.collect(b, 0.2)
    await proto.collect(c, 0.2)
    await react(a, True, channel_id, message_id, "👍")
    await react(a, True, channel_id, message_id, "👍")  # again: still one reaction
    first = [f.payload.count for f in await proto.collect(c, 0.5)]
    assert first and set(first) == {1}, first
    await react(b, True, channel_id, message_id, "👍")
    by_b = await c.expect("chat_react_add", where=lambda f: f.payload.user == b.user)
    assert by_b.payload.count == 2
    await proto.collect(a, 0.2)
    await react(b, False, channel_id, message_id, "👍")
    await react(b, False, channel_id, message_id, "👍")  # again: nothing more to remove
    removed = [f.payload.count for f in await proto.collect(a, 0.5)]
    assert removed and set(removed) == {1}, removed
    await react(c, True, channel_id, message_id, "👍")
    by_c = await a.expect("chat_react_add", where=lambda f: f.payload.user == c.user)
    assert by_c.payload.count == 2
    rows = await proto.sql(
        "SELECT username FROM reactions WHERE message_id = $1::uuid", uuid.UUID(message_id)
    )
    assert sorted(r["username"] for r in rows) == sorted([a.user.username, c.user.username])


async def test_react_counts_are_per_emote(proto, channel_id: int) -> None:
    a, b = await room(proto, channel_id)
    message_id = await posted(proto, a, channel_id)
    await b.expect("chat_send")
    for client, emote in ((a, "👍"), (b, "👍"), (b, "😂")):
        await react(client, True, channel_id, message_id, emote)
    got = [(f.payload.emote, f.payload.count) for f in [await next_reaction(a) for _ in range(3)]]
    assert sorted(got) == [("👍", 1), ("👍", 2), ("😂", 1)]


async def test_react_allowed_for_guests_and_muted_users(proto, channel_id: int) -> None:
    staff = await proto.connect(0, token=(await proto.staff("moderator")).token)
    guest = await proto.connect(1)
    for client in (staff, guest):
        await proto.joined(client, channel_id)
    message_id = await posted(proto, staff, channel_id)
    await guest.expect("chat_send")
    await staff.send_frame("chat_mute", {"channel_id": channel_id, "target": guest.user.username})
    await guest.expect("chat_mute")
    await guest.send(channel_id, "x")
    assert await proto.error(guest) == "You are muted in this channel."
    await react(guest, True, channel_id, message_id, "🙂")
    frame = await next_reaction(guest)
    assert isinstance(frame, wire.ReactAddFrame)
    assert frame.payload.user == guest.user
    await react(guest, False, channel_id, message_id, "🙂")
    assert isinstance(await next_reaction(guest), wire.ReactRemoveFrame)


async def test_react_needs_the_channel_and_membership(proto, channel_id: int) -> None:
    member, outsider = await proto.connect(0), await proto.connect(1)
    await react(outsider, True, channel_id, "6f9619ff-8b86-d011-b42d-00c04fc964ff", "👍")
    assert await proto.error(outsider) == "Channel does not exist."
    await proto.joined(member, channel_id)
    message_id = await posted(proto, member, channel_id)
    for add in (True, False):
        await react(outsider, add, channel_id, message_id, "👍")
        assert await proto.error(outsider) == "You must join this channel first"
    await proto.quiet(member)


async def test_reactions_in_history(proto, channel_id: int) -> None:
    a, b = await room(proto, channel_id)
    reacted = await posted(proto, a, channel_id, "popular")
    plain = await posted(proto, a, channel_id, "ignored")
    await proto.collect(b, 0.3)
    for client, emote in ((a, "👍"), (b, "👍"), (b, "🔥")):
        await react(client, True, channel_id, reacted, emote)
    for _ in range(3):
        await next_reaction(a)
    ws, _ = await proto.hello()
    await ws.send(json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}}))
    history = [await proto.recv_json(ws), await proto.recv_json(ws)]
    assert [f["id"] for f in history] == [reacted, plain]
    reactions = {r["emote"]: r for r in history[0]["payload"]["reactions"]}
    assert set(reactions) == {"👍", "🔥"}
    assert reactions["👍"]["count"] == 2
    assert sorted(reactions["👍"]["users"]) == sorted([a.user.username, b.user.username])
    assert reactions["🔥"] == {"emote": "🔥", "count": 1, "users": [b.user.username]}
    assert history[1]["payload"].get("reactions", []) == []


async def test_removed_reactions_leave_history(proto, channel_id: int) -> None:
    (a,) = await room(proto, channel_id, 1)
    message_id = await posted(proto, a, channel_id)
    await react(a, True, channel_id, message_id, "👍")
    await react(a, False, channel_id, message_id, "👍")
    await proto.collect(a, 0.5)
    later = await proto.connect()
    history = (await proto.joined(later, channel_id))[0]
    assert isinstance(history, wire.ChatSendFrame)
    assert history.id == message_id
    assert history.payload.reactions in ([], UNSET)


async def test_react_with_a_bad_payload_is_malformed(proto, channel_id: int) -> None:
    a, b = await room(proto, channel_id)
    message_id = await posted(proto, a, channel_id)
    await proto.collect(b, 0.2)
    for payload in (
        {"message_id": message_id, "channel_id": channel_id},
        {"emote": "👍", "channel_id": channel_id},
        {"emote": "👍", "message_id": message_id},
        {"emote": 5, "message_id": message_id, "channel_id": channel_id},
        {"emote": "👍", "message_id": 5, "channel_id": channel_id},
    ):
        await a.send_frame("chat_react_add", payload)
        assert await proto.error(a) == "Malformed message.", payload
    await proto.quiet(a, b)


async def test_reactions_in_a_since_seq_replay(proto, channel_id: int) -> None:
    writer, reader = await room(proto, channel_id)
    await proto.hang_up(reader)
    await writer.expect("channel_leave")
    message_id = await posted(proto, writer, channel_id, "while you were away")
    await react(writer, True, channel_id, message_id, "👀")
    await next_reaction(writer)
    back = await proto.connect()
    frames = await proto.joined(back, channel_id, since_seq=0)
    replay = [f for f in frames if isinstance(f, wire.ChatSendFrame)]
    assert [f.id for f in replay] == [message_id]
    # The replay stands in for the join's history: its messages carry their reactions too,
    # or the reactions made during the gap would never reach this client.
    assert replay[0].payload.reactions == [
        wire.ReactionSummary(emote="👀", count=1, users=[writer.user.username])
    ]
