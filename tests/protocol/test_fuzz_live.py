"""Property tests against live gateways: random and mutated frames of every client type.

Each example is one frame sent on a real connection. The rules checked (PROTOCOL.md sections 1,
2 and 4): every frame that is not a valid one gets exactly one ``error`` frame, with the text its
fault calls for (not JSON, not an object, or an unknown type: ``Invalid message format``; a known
type with a bad envelope or payload: ``Malformed message.``); a valid frame aimed at a channel the
client is not in gets exactly one precondition error; the connection stays open; and nothing
changes: a second client in the fuzzer's channel sees nothing at all, and afterwards the fuzzer
still sends (next seq, no gap) and joins normally.

Hypothesis drives a synchronous property in a worker thread; each example's I/O runs on the
test's event loop, where the connections live.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Coroutine
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from justchat import wire
from justchat.errors import ProtocolError

FORMAT = "Invalid message format"
MALFORMED = "Malformed message."
NO_CHANNEL = "Channel does not exist."
NOT_MEMBER = "You must join this channel first"
INVALID_HELLO = "Invalid HELLO message"
PROBE = json.dumps({"type": "fuzz_probe", "payload": {}})  # always answered FORMAT
KNOWN_TYPES = {
    "hello",
    "chat_send",
    "chat_react_add",
    "chat_react_remove",
    "chat_typing",
    "chat_kick",
    "chat_mute",
    "chat_unmute",
    "chat_ban",
    "chat_unban",
    "channel_join",
    "channel_leave",
    "channel_history",
}
CHANNEL = "<channel>"  # replaced by a real channel id when an example is built

BASES: list[dict[str, Any]] = [
    {"type": "hello", "payload": {}},
    {"type": "hello", "payload": {"token": "eyJ.fake.token"}},
    {"type": "chat_send", "payload": {"channel_id": CHANNEL, "content": "hi"}},
    {
        "type": "chat_send",
        "timestamp": "2026-01-01T00:00:00Z",
        "id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "payload": {"channel_id": CHANNEL, "content": "hi", "client_msg_id": "c-1"},
    },
    {
        "type": "chat_react_add",
        "payload": {"emote": "👍", "message_id": str(uuid.UUID(int=1)), "channel_id": CHANNEL},
    },
    {
        "type": "chat_react_remove",
        "payload": {"emote": "👍", "message_id": str(uuid.UUID(int=2)), "channel_id": CHANNEL},
    },
    {"type": "chat_typing", "payload": {"channel_id": CHANNEL}},
    {"type": "chat_kick", "payload": {"channel_id": CHANNEL, "target": "x", "reason": "r"}},
    {
        "type": "chat_mute",
        "payload": {"channel_id": CHANNEL, "target": "x", "duration": 5, "reason": None},
    },
    {"type": "chat_unmute", "payload": {"channel_id": CHANNEL, "target": "x"}},
    {"type": "chat_ban", "payload": {"channel_id": CHANNEL, "target": "x", "duration": 0}},
    {"type": "chat_unban", "payload": {"channel_id": CHANNEL, "target": "x"}},
    {"type": "channel_join", "payload": {"channel_id": CHANNEL, "since_seq": 3}},
    {"type": "channel_leave", "payload": {"channel_id": CHANNEL}},
    {"type": "channel_history", "payload": {"channel_id": CHANNEL, "before_seq": 9, "limit": 5}},
]

# Weighted towards mutations that keep the frame recognisable, so that most examples reach the
# payload checks rather than stopping at "not JSON" or "unknown type".
OPS = [
    "drop",
    "rename",
    "retype",
    "retype",
    "extra",
    "number",
    "number",
    "unicode",
    "payload",
    "type",
]

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.integers(min_value=2**31 - 2, max_value=2**80)
    | st.integers(min_value=-(2**80), max_value=-(2**31) + 2)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
    | st.sampled_from(["8", "-1", "1e3", "", "null", "🙂", "\u0000", "\u202e", "9" * 30])
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.text(max_size=12) | st.sampled_from(
    ["type", "payload", "id", "timestamp", "channel_id", "content", "token", "since_seq"]
)


def paths(frame: dict[str, Any]) -> list[tuple[str, ...]]:
    """Keys that mutations may touch, payload keys first (Hypothesis favours early choices)."""
    out: list[tuple[str, ...]] = []
    if isinstance(frame.get("payload"), dict):
        out += [("payload", k) for k in frame["payload"]]
    return out + [(k,) for k in sorted(frame, key=lambda k: k == "type")]


def parent(frame: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    return frame if len(path) == 1 else frame["payload"]


@st.composite
def mutated(draw: st.DrawFn, channels: list[int]) -> str | bytes:
    """A valid frame of some client type, then one or two mutations, then encoded."""
    frame = copy.deepcopy(draw(st.sampled_from(BASES)))
    channel = draw(st.sampled_from(channels))
    if frame["payload"].get("channel_id") == CHANNEL:
        frame["payload"]["channel_id"] = channel
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(OPS))
        where = paths(frame)
        if op in ("drop", "rename", "retype") and where:
            path = draw(st.sampled_from(where))
            holder = parent(frame, path)
            if path[-1] not in holder:
                continue
            value = holder.pop(path[-1])
            if op == "rename":
                holder[
                    draw(st.sampled_from([path[-1].upper(), path[-1] + "_", " " + path[-1]]))
                ] = value
            elif op == "retype":
                holder[path[-1]] = draw(values)
        elif op == "type":
            frame["type"] = draw(
                st.sampled_from(sorted(KNOWN_TYPES)) | st.text(max_size=16) | values
            )
        elif op == "payload":
            frame["payload"] = draw(values)
        elif op == "extra":
            target = (
                frame
                if draw(st.booleans()) or not isinstance(frame.get("payload"), dict)
                else frame["payload"]
            )
            target[draw(keys)] = draw(values)
        elif op == "number" and isinstance(frame.get("payload"), dict):
            field = draw(
                st.sampled_from(["channel_id", "since_seq", "limit", "before_seq", "duration"])
            )
            frame["payload"][field] = draw(
                st.sampled_from(
                    [2**31, -(2**31) - 1, 2**63, 2**64 + 1, -1, 0, 10**30, 1.5, "1.5", str(channel)]
                )
            )
        elif op == "unicode":
            strings = [p for p in paths(frame) if isinstance(parent(frame, p).get(p[-1]), str)]
            if strings:
                path = draw(st.sampled_from(strings))
                parent(frame, path)[path[-1]] = draw(st.text(min_size=1, max_size=40))
    shape = draw(st.sampled_from(["json"] * 6 + ["list", "truncated", "binary"]))
    text = json.dumps(frame, ensure_ascii=draw(st.booleans()))
    if shape == "list":
        return json.dumps([frame])
    if shape == "truncated":
        return text[: draw(st.integers(0, len(text) - 1))]
    if shape == "binary":
        return text.encode()
    return text


garbage = (  # not derived from any frame
    st.text(max_size=200)
    | st.binary(max_size=200)
    | values.map(json.dumps)
    | st.dictionaries(keys, values, max_size=5).map(json.dumps)
)


def expected(data: str | bytes, member: int) -> set[str] | None:
    """The error texts PROTOCOL.md allows for ``data`` after the hello; None for a frame that
    is valid and would act on the fuzzer's own channel (those are left out)."""
    if isinstance(data, bytes):
        return {FORMAT}
    try:
        frame = json.loads(data)
    except ValueError:
        return {FORMAT}
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return {FORMAT}
    if frame["type"] not in KNOWN_TYPES:
        return {FORMAT}
    try:
        decoded = wire.decode_client(data)
    except ProtocolError:
        return {FORMAT, MALFORMED} if frame["type"] == "hello" else {MALFORMED}
    if decoded.type == "hello":
        return {FORMAT}  # a second hello is not a command
    if decoded.type == "channel_join" or decoded.payload.channel_id == member:  # type: ignore[union-attr]
        return None
    return {NO_CHANNEL, NOT_MEMBER}


async def quiet(client, seconds: float = 0.5) -> list[Any]:
    frames = []
    while True:
        try:
            frames.append(await client.recv(seconds))
        except TimeoutError:
            return frames


async def test_fuzz_live_frames_get_one_error_and_change_nothing(proto, channel_id: int) -> None:
    loop = asyncio.get_running_loop()
    missing = proto.new_channel()
    fuzzer, watcher = await proto.connect(0), await proto.connect(1)
    await proto.joined(watcher, channel_id)
    await proto.joined(fuzzer, channel_id)
    before = await proto.echo(fuzzer, channel_id, "before the fuzz")
    await watcher.expect("chat_send")
    await quiet(watcher, 0.3)
    ws = fuzzer.ws
    channels = [channel_id, missing]

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=20)

    async def exchange(data: str | bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        await ws.send(data)
        await ws.send(PROBE)
        return await proto.recv_json(ws, 5), await proto.recv_json(ws, 5)

    @settings(
        max_examples=150,
        deadline=None,
        database=None,  # examples depend on live state; nothing worth replaying from disk
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(data=st.integers(0, 3).flatmap(lambda i: garbage if i == 3 else mutated(channels)))
    def property_(data: str | bytes) -> None:
        allowed = expected(data, channel_id)
        assume(allowed is not None)
        assert allowed is not None
        event(" or ".join(sorted(allowed)))
        reply, probe = run(exchange(data))
        assert reply["type"] == "error", (data, reply)
        assert reply["payload"]["detail"] in allowed, (data, reply, allowed)
        assert probe["type"] == "error" and probe["payload"]["detail"] == FORMAT, (data, probe)

    await asyncio.to_thread(property_)

    # Nothing reached the channel, nothing more reached the fuzzer, and it still works.
    assert await quiet(watcher) == []
    assert await quiet(fuzzer, 0.3) == []
    after = await proto.echo(fuzzer, channel_id, "after the fuzz")
    assert after.payload.seq == before.payload.seq + 1
    assert after.payload.sender == fuzzer.user
    seen = await watcher.recv()
    assert isinstance(seen, wire.ChatSendFrame) and seen.id == after.id
    frames = await proto.joined(fuzzer, proto.new_channel())
    assert [f.__struct_config__.tag for f in frames] == ["channel_members", "channel_join"]


async def test_fuzz_live_first_frames_are_a_hello_or_a_clean_refusal(proto) -> None:
    loop = asyncio.get_running_loop()

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=20)

    async def first_frame(data: str | bytes) -> tuple[list[Any], int | None, str]:
        ws = await proto.raw(0)
        try:
            await ws.send(data)
            reply = await proto.recv_json(ws, 5)
            if reply["type"] == "hello":
                return [reply], None, ""
            code, reason, rest = await proto.closed_with(ws, 5)
            return [reply, *(json.loads(f) for f in rest)], code, reason
        except Exception:
            if ws.close_code is None:
                raise
            return [], ws.close_code, ws.close_reason or ""
        finally:
            await ws.close()

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=mutated([1]) | garbage)
    def property_(data: str | bytes) -> None:
        frames, code, reason = run(first_frame(data))
        hello: wire.HelloIn | None = None
        if isinstance(data, str):
            try:
                decoded = wire.decode_client(data)
            except ProtocolError:
                decoded = None
            if decoded is not None and isinstance(decoded.payload, wire.HelloIn):
                hello = decoded.payload
        if hello is not None and hello.token is None:  # a guest: answered hello, nothing else
            assert [f["type"] for f in frames] == ["hello"], (data, frames)
            assert frames[0]["payload"]["user"]["is_guest"] is True
        elif hello is not None:  # a made-up token: refused with the reason, no hello
            assert code == 1000, (data, code, reason)
            assert reason.startswith("Authentication failed: "), (data, reason)
            assert all(f["type"] != "hello" for f in frames)
        else:  # anything else: one error, then close 1000, both saying why
            assert [f["payload"] for f in frames] == [{"detail": INVALID_HELLO}], (data, frames)
            assert (code, reason) == (1000, INVALID_HELLO), (data, code, reason)

    await asyncio.to_thread(property_)
