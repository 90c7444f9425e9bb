"""PROTOCOL.md section 2: the envelope of client and server frames, ids, timestamps, UserFrom,
and integer fields that accept numeric strings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

FORMAT = "Invalid message format"
MALFORMED = "Malformed message."
SERVER_KEYS = {"type", "timestamp", "id", "payload"}
USER_KEYS = {"username", "is_guest"}


def frame(frame_type: str, **payload: Any) -> str:
    return json.dumps({"type": frame_type, "payload": payload})


async def take(proto, ws, count: int) -> list[dict[str, Any]]:
    """Exactly the next ``count`` frames."""
    return [await proto.recv_json(ws) for _ in range(count)]


async def drain(proto, ws, seconds: float = 0.3) -> list[dict[str, Any]]:
    """Whatever else arrives within ``seconds``."""
    frames = []
    while True:
        try:
            frames.append(await proto.recv_json(ws, seconds))
        except TimeoutError:
            return frames


async def conversation(proto, channel_id: int) -> tuple[list[dict], list[dict]]:
    """Two raw clients go through every kind of server frame; returns what each received."""
    a, _ = await proto.hello(0)
    b, _ = await proto.hello(1)
    seen_a: list[dict] = []
    seen_b: list[dict] = []
    await a.send(frame("channel_join", channel_id=channel_id))
    seen_a += await take(proto, a, 2)  # members, join
    await a.send(frame("chat_send", channel_id=channel_id, content="stored"))
    await a.send(frame("chat_typing", channel_id=channel_id))
    await a.send(frame("nope"))
    seen_a += await take(proto, a, 3)  # chat_send, chat_typing, error
    await b.send(frame("channel_join", channel_id=channel_id))
    seen_b += await take(proto, b, 3)  # history, members, join
    seen_a += await take(proto, a, 2)  # members, join
    await b.send(frame("channel_leave", channel_id=channel_id))
    seen_a += await take(proto, a, 2)  # members, leave
    await b.send(frame("channel_join", channel_id=channel_id, since_seq=0))
    seen_b += await take(proto, b, 4)  # replay, resumed, members, join
    seen_a += await take(proto, a, 2)  # members, join
    seen_a += await drain(proto, a)
    seen_b += await drain(proto, b)
    return seen_a, seen_b


async def test_envelope_server_frames_carry_all_four_keys(proto, channel_id: int) -> None:
    seen_a, seen_b = await conversation(proto, channel_id)
    _, hello = await proto.hello()
    everything = [hello, *seen_a, *seen_b]
    types = {f["type"] for f in everything}
    assert types >= {
        "hello",
        "error",
        "channel_members",
        "channel_join",
        "channel_leave",
        "chat_send",
        "chat_typing",
        "channel_resumed",
    }
    for f in everything:
        assert set(f) == SERVER_KEYS, f
        assert isinstance(f["type"], str)
        assert isinstance(f["payload"], dict), f
        assert isinstance(f["timestamp"], str), f
        assert proto.is_uuid(f["id"]), f


async def test_envelope_timestamps_are_utc_iso8601_ending_in_z(proto, channel_id: int) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    seen_a, seen_b = await conversation(proto, channel_id)
    after = datetime.now(UTC) + timedelta(seconds=5)
    for f in [*seen_a, *seen_b]:
        stamp = f["timestamp"]
        assert stamp.endswith("Z"), f
        moment = datetime.fromisoformat(stamp)
        assert moment.utcoffset() == timedelta(0), f
        assert before <= moment <= after, f


async def test_server_ids_fresh_except_stored_messages(proto, channel_id: int) -> None:
    seen_a, seen_b = await conversation(proto, channel_id)
    for seen in (seen_a, seen_b):
        others = [f["id"] for f in seen if f["type"] != "chat_send"]
        assert len(others) == len(set(others)), seen  # every non-message frame a fresh id
    live = [f for f in seen_a if f["type"] == "chat_send"]
    stored = [f for f in seen_b if f["type"] == "chat_send"]
    assert len(live) == 1
    assert len(stored) == 2  # once as history, once as the since_seq replay
    for copy in stored:
        assert copy["id"] == live[0]["id"]
        assert copy["timestamp"] == live[0]["timestamp"]
        assert copy["payload"]["seq"] == live[0]["payload"]["seq"]
    # A later message has an id of its own.
    a, _ = await proto.hello(0)
    await a.send(frame("channel_join", channel_id=channel_id))
    await a.send(frame("chat_send", channel_id=channel_id, content="second"))
    second = [f for f in await take(proto, a, 4) if f["type"] == "chat_send"]
    ids = [f["id"] for f in second]
    assert len(ids) == 2  # history ("stored") and the new broadcast
    assert ids[0] == live[0]["id"]
    assert ids[1] != ids[0] and proto.is_uuid(ids[1])


async def test_envelope_the_same_error_twice_has_two_ids(proto) -> None:
    ws, hello = await proto.hello()
    await ws.send(frame("nope"))
    await ws.send(frame("nope"))
    first, second = await proto.recv_json(ws), await proto.recv_json(ws)
    assert first["payload"] == second["payload"] == {"detail": FORMAT}
    assert len({first["id"], second["id"], hello["id"]}) == 3


async def test_envelope_user_object_is_username_and_is_guest(
    proto, channel_id: int, registered
) -> None:
    seen_a, seen_b = await conversation(proto, channel_id)
    users = []
    for f in [*seen_a, *seen_b]:
        payload = f["payload"]
        match f["type"]:
            case "channel_members":
                users += payload["members"]
            case "channel_join" | "channel_leave" | "chat_typing":
                users.append(payload["user"])
            case "chat_send":
                users.append(payload["sender"])
    _, member_hello = await proto.hello(token=registered["token"])
    users.append(member_hello["payload"]["user"])
    assert len(users) > 8
    for user in users:
        assert set(user) == USER_KEYS, user
        assert isinstance(user["username"], str)
        assert isinstance(user["is_guest"], bool)
    assert member_hello["payload"]["user"] == {
        "username": registered["username"],
        "is_guest": False,
    }


@pytest.mark.parametrize(
    ("timestamp", "frame_id"),
    [
        ("2026-01-01T00:00:00Z", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        ("2026-01-01T00:00:00.123456+02:00", None),
        (None, "0b4a3cd5-0d0a-4b3b-9e2a-6a1f8c1d2e3f"),
        (None, None),
    ],
)
async def test_client_timestamp_and_id_validated_then_ignored(
    proto, channel_id: int, timestamp: str | None, frame_id: str | None
) -> None:
    ws, _ = await proto.hello()
    sent = {
        "type": "channel_join",
        "timestamp": timestamp,
        "id": frame_id,
        "payload": {"channel_id": channel_id},
    }
    await ws.send(json.dumps(sent))
    await ws.send(
        json.dumps(
            {
                "type": "chat_send",
                "timestamp": timestamp,
                "id": frame_id,
                "payload": {"channel_id": channel_id, "content": "hi"},
            }
        )
    )
    replies = await take(proto, ws, 3) + await drain(proto, ws)
    assert [f["type"] for f in replies] == ["channel_members", "channel_join", "chat_send"]
    now = datetime.now(UTC)
    for reply in replies:
        assert reply["id"] != frame_id  # the client's id is not echoed
        assert abs(datetime.fromisoformat(reply["timestamp"]) - now) < timedelta(seconds=30)


@pytest.mark.parametrize(
    "envelope",
    [
        {"timestamp": "yesterday"},
        {"timestamp": "2026-13-45T00:00:00Z"},
        {"timestamp": 1767225600},
        {"timestamp": {"at": "2026-01-01T00:00:00Z"}},
        {"id": "not-a-uuid"},
        {"id": 42},
        {"id": ""},
        {"id": ["6f9619ff-8b86-d011-b42d-00c04fc964ff"]},
    ],
)
async def test_client_timestamp_and_id_invalid_is_malformed(
    proto, channel_id: int, envelope: dict[str, Any]
) -> None:
    ws, _ = await proto.hello()
    await ws.send(
        json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}, **envelope})
    )
    error = await proto.recv_json(ws)
    assert error["type"] == "error"
    # [ext] The error names the channel of the frame that caused it.
    assert error["payload"] == {"detail": MALFORMED, "channel_id": channel_id}
    # Nothing happened: the channel was not created by that join.
    await ws.send(frame("chat_typing", channel_id=channel_id))
    assert (await proto.recv_json(ws))["payload"]["detail"] == "Channel does not exist."


async def test_unknown_top_level_keys_ignored(proto, channel_id: int) -> None:
    ws, hello = await proto.hello()
    extra = {"extra": 1, "meta": {"nested": [1, {"a": None}]}, "sender": "admin", "version": 2}
    await ws.send(
        json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}, **extra})
    )
    await ws.send(
        json.dumps(
            {
                **extra,
                "type": "chat_send",
                "payload": {"channel_id": channel_id, "content": "with extras"},
            }
        )
    )
    replies = await take(proto, ws, 3) + await drain(proto, ws)
    assert [f["type"] for f in replies] == ["channel_members", "channel_join", "chat_send"]
    assert replies[2]["payload"]["content"] == "with extras"
    assert replies[2]["payload"]["sender"] == hello["payload"]["user"]


@pytest.mark.parametrize(
    ("sent", "detail"),
    [
        ({"payload": {"channel_id": 1}}, FORMAT),
        ({"type": None, "payload": {"channel_id": 1}}, FORMAT),
        ({"type": 5, "payload": {"channel_id": 1}}, FORMAT),
        ({"type": ["channel_join"], "payload": {"channel_id": 1}}, FORMAT),
        ({"type": "channel_join"}, MALFORMED),
        ({"type": "channel_join", "payload": None}, MALFORMED),
        ({"type": "channel_join", "payload": []}, MALFORMED),
        ({"type": "channel_join", "payload": "channel_id=1"}, MALFORMED),
        ({"type": "chat_send", "payload": {}}, MALFORMED),
    ],
)
async def test_client_frames_require_type_and_payload(
    proto, sent: dict[str, Any], detail: str
) -> None:
    ws, _ = await proto.hello()
    await ws.send(json.dumps(sent))
    error = await proto.recv_json(ws)
    assert error["type"] == "error"
    # [ext] The error names the frame's channel when the frame had one.
    payload = sent.get("payload")
    named = payload.get("channel_id") if isinstance(payload, dict) else None
    context = {} if named is None else {"channel_id": named}
    assert error["payload"] == {"detail": detail, **context}


async def test_integer_fields_accept_numeric_strings(proto, channel_id: int) -> None:
    ws, hello = await proto.hello()
    watcher = await proto.connect(1)
    text = str(channel_id)
    await ws.send(frame("channel_join", channel_id=text))
    joined = await take(proto, ws, 2)
    assert [f["type"] for f in joined] == ["channel_members", "channel_join"]
    assert joined[1]["payload"]["channel_id"] == channel_id  # servers send numbers
    await proto.joined(watcher, channel_id)
    await take(proto, ws, 2)  # the watcher's members and join
    await ws.send(frame("chat_send", channel_id=text, content="by string"))
    echo = await watcher.expect("chat_send")
    assert echo.payload.content == "by string"
    await ws.send(frame("chat_typing", channel_id=text))
    typing = await watcher.expect("chat_typing")
    assert typing.payload.user.username == hello["payload"]["user"]["username"]
    # The sender gets both broadcasts too; read them before leaving, or a leave that overtakes
    # the typing notice on the sender's gateway would (rightly) cut it off.
    assert sorted(f["type"] for f in await take(proto, ws, 2)) == ["chat_send", "chat_typing"]
    await ws.send(frame("channel_leave", channel_id=text))
    leave = await watcher.expect("channel_leave")
    assert leave.payload.user.username == hello["payload"]["user"]["username"]
    assert await drain(proto, ws) == []  # the leaver receives nothing
    # since_seq too: a resume from "0" replays the one message.
    await ws.send(frame("channel_join", channel_id=text, since_seq="0"))
    resumed = await take(proto, ws, 2)
    assert [f["type"] for f in resumed] == ["chat_send", "channel_resumed"]
    assert resumed[1]["payload"]["last_seq"] == 1


@pytest.mark.parametrize("bad", ["", "12a", "0x10", "1e3x", "one"])
async def test_integer_fields_reject_non_numeric_strings(proto, bad: str) -> None:
    ws, _ = await proto.hello()
    await ws.send(frame("channel_join", channel_id=bad))
    error = await proto.recv_json(ws)
    assert error["payload"] == {"detail": MALFORMED}
