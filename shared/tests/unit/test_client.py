"""justchat.client without a server: resume bookkeeping, backoff, reading rules, errors.

A scripted stand-in plays the WebSocket (the client only calls recv, send and close); the real
thing, gateways killed under a client included, is tests/e2e/test_client.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from justchat import client as client_module
from justchat import wire
from justchat.client import AuthError, Client, Disconnected, Reconnect, RequestFailed, login
from justchat.errors import ConfigError, JustchatError

ME = wire.UserFrom(username="alice", is_guest=False)
OTHER = wire.UserFrom(username="bob", is_guest=False)


class FakeSocket:
    """Frames queued by the test come out of ``recv``; what the client sends is kept."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes | Exception] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None

    async def recv(self) -> bytes:
        item = await self.inbox.get()
        if isinstance(item, Exception):
            self.inbox.put_nowait(item)  # closed stays closed
            raise item
        return item

    async def send(self, data: str) -> None:
        if self.close_code is not None:
            raise ConnectionClosedError(Close(self.close_code, self.close_reason or ""), None)
        self.sent.append(json.loads(data))

    async def close(self) -> None:
        self.die(1000, "", ok=True)

    def feed(self, *frames: bytes) -> None:
        for frame in frames:
            self.inbox.put_nowait(frame)

    def die(self, code: int = 1006, reason: str = "", *, ok: bool = False) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            error = ConnectionClosedOK if ok else ConnectionClosedError
            self.inbox.put_nowait(error(Close(code, reason), None))

    def joins(self) -> list[dict[str, Any]]:
        return [f["payload"] for f in self.sent if f["type"] == "channel_join"]


def message(channel_id: int, seq: int, content: str = "") -> bytes:
    payload = wire.ChatSendOut(
        channel_id=channel_id, sender=OTHER, content=content or f"m{seq}", seq=seq
    )
    return wire.fresh_frame(wire.ChatSendFrame, payload)


def resumed(channel_id: int, last_seq: int) -> bytes:
    payload = wire.ResumedOut(channel_id=channel_id, recovered=True, last_seq=last_seq)
    return wire.fresh_frame(wire.ResumedFrame, payload)


def seqs(frames: list[wire.AnyServerFrame]) -> list[tuple[int, int]]:
    return [
        (f.payload.channel_id, int(f.payload.seq))
        for f in frames
        if isinstance(f, wire.ChatSendFrame) and isinstance(f.payload.seq, int)
    ]


FAST = Reconnect(initial_delay_s=0.001, max_delay_s=0.002)


class Opener:
    """Stands in for the handshake: hands out the next socket, or raises what it is given."""

    def __init__(self, *outcomes: FakeSocket | Exception) -> None:
        self.outcomes = list(outcomes)
        self.urls: list[str] = []

    async def __call__(
        self, url: str, token: str | None, timeout_s: float
    ) -> tuple[FakeSocket, wire.UserFrom]:
        self.urls.append(url)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome, ME


@pytest.fixture
def opener(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Opener]:
    def install(*outcomes: FakeSocket | Exception) -> Opener:
        fake = Opener(*outcomes)
        monkeypatch.setattr(client_module, "open_link", fake)
        return fake

    return install


def make_client(ws: FakeSocket, reconnect: Reconnect | None = FAST, urls: int = 2) -> Client:
    return Client(
        ws,  # type: ignore[arg-type]
        ME,
        urls=[f"ws://gw{i}/ws" for i in range(urls)],
        token="t",
        reconnect=reconnect,
    )


async def read(chat: Client, count: int) -> list[wire.AnyServerFrame]:
    return [await chat.recv(5) for _ in range(count)]


# -- reconnect and resume -------------------------------------------------------------------------


async def test_a_reconnect_resumes_every_joined_channel_from_its_last_seq(opener) -> None:
    first, second = FakeSocket(), FakeSocket()
    fake = opener(second)
    chat = make_client(first)
    for channel in (1, 2, 3, 4):
        await chat.join(channel)
    await chat.leave(4)
    first.feed(message(1, 1), message(1, 2), message(2, 7))
    assert seqs(await read(chat, 3)) == [(1, 1), (1, 2), (2, 7)]
    first.die()
    second.feed(message(1, 3), resumed(1, 3), resumed(2, 7))
    after = await read(chat, 3)
    # Channel 3 had shown no message yet: a plain join brings its history instead.
    assert second.joins() == [
        {"channel_id": 1, "since_seq": 2},
        {"channel_id": 2, "since_seq": 7},
        {"channel_id": 3},
    ]
    assert fake.urls == ["ws://gw1/ws"]  # the next gateway in the list
    assert seqs(after) == [(1, 3)]
    assert chat.reconnects == 1 and chat.ws is second  # type: ignore[comparison-overlap]


async def test_replayed_messages_already_delivered_are_dropped_once_resumed(opener) -> None:
    first, second = FakeSocket(), FakeSocket()
    opener(second)
    chat = make_client(first)
    await chat.join(5)
    first.feed(message(5, 1), message(5, 2), message(5, 3))
    await read(chat, 3)
    first.die()
    # A replay that overlaps what was delivered (the server should not, the client copes).
    second.feed(message(5, 2), message(5, 3), message(5, 4), resumed(5, 4), message(5, 5))
    assert seqs(await read(chat, 3)) == [(5, 4), (5, 5)]
    assert chat.last_seq[5] == 5


async def test_a_plain_join_delivers_history_even_after_a_resume(opener) -> None:
    first, second = FakeSocket(), FakeSocket()
    opener(second)
    chat = make_client(first)
    await chat.join(6)
    first.feed(message(6, 1), message(6, 2))
    await read(chat, 2)
    first.die()
    second.feed(resumed(6, 2))
    await read(chat, 1)
    await chat.leave(6)
    await chat.join(6)  # history again: the caller asked for it
    second.feed(message(6, 1), message(6, 2))
    assert seqs(await read(chat, 2)) == [(6, 1), (6, 2)]


async def test_channels_the_client_was_kicked_or_banned_from_are_not_resumed(opener) -> None:
    first, second = FakeSocket(), FakeSocket()
    opener(second)
    chat = make_client(first)
    for channel in (1, 2, 3):
        await chat.join(channel)
    kick = wire.KickOut(channel_id=1, target="alice", reason=None)
    ban = wire.MuteOut(channel_id=2, target="alice", duration=None, reason=None)
    someone_else = wire.KickOut(channel_id=3, target="bob", reason=None)
    first.feed(
        wire.fresh_frame(wire.KickFrame, kick),
        wire.fresh_frame(wire.BanFrame, ban),
        wire.fresh_frame(wire.KickFrame, someone_else),
    )
    await read(chat, 3)
    first.die()
    second.feed(resumed(3, 0))
    await read(chat, 1)
    assert second.joins() == [{"channel_id": 3}]


async def test_failed_attempts_back_off_and_rotate_through_the_urls(opener) -> None:
    first, fourth = FakeSocket(), FakeSocket()
    fake = opener(OSError("refused"), TimeoutError(), Disconnected("1011"), fourth)
    chat = make_client(first, urls=3)
    await chat.join(1)
    first.die()
    fourth.feed(resumed(1, 0))
    await read(chat, 1)
    assert fake.urls == ["ws://gw1/ws", "ws://gw2/ws", "ws://gw0/ws", "ws://gw1/ws"]
    assert chat.reconnects == 1


async def test_events_raise_disconnected_when_the_attempts_run_out(opener) -> None:
    first = FakeSocket()
    opener(OSError("refused"), OSError("refused"))
    chat = make_client(first, Reconnect(initial_delay_s=0.001, max_attempts=2))
    first.die(1012, "draining")
    with pytest.raises(Disconnected) as caught:
        async for _ in chat.events():
            pass
    assert caught.value.code == 1012
    assert isinstance(caught.value, JustchatError)


async def test_a_refused_token_on_reconnect_is_an_auth_error(opener) -> None:
    first = FakeSocket()
    opener(AuthError("Authentication failed: token expired"))
    chat = make_client(first)
    first.die()
    with pytest.raises(AuthError):
        await anext(chat.events())


async def test_a_send_on_a_dead_connection_reconnects_then_sends(opener) -> None:
    first, second = FakeSocket(), FakeSocket()
    opener(second)
    chat = make_client(first)
    await chat.join(1)
    first.feed(message(1, 4))
    await read(chat, 1)
    first.die()
    await chat.send(1, "after", client_msg_id="c1")
    assert [f["type"] for f in second.sent] == ["channel_join", "chat_send"]
    assert second.sent[0]["payload"] == {"channel_id": 1, "since_seq": 4}


async def test_a_join_sent_during_a_reconnect_is_sent_once(opener) -> None:
    first, second = FakeSocket(), FakeSocket()
    opener(second)
    chat = make_client(first)
    first.die()
    await chat.join(9)
    assert second.joins() == [{"channel_id": 9}]
    assert chat.joined == {9: None}


# -- without reconnect ----------------------------------------------------------------------------


async def test_without_reconnect_events_end_after_close_and_raise_when_the_server_closes() -> None:
    ws = FakeSocket()
    chat = make_client(ws, reconnect=None)
    ws.feed(message(1, 1))
    await chat.close()
    assert seqs([f async for f in chat.events()]) == [(1, 1)]

    ws = FakeSocket()
    chat = make_client(ws, reconnect=None)
    ws.die(1013, "slow consumer")
    with pytest.raises(Disconnected) as caught:
        await anext(chat.events())
    assert (caught.value.code, caught.value.reason) == (1013, "slow consumer")


async def test_a_close_for_a_rejected_token_is_an_auth_error() -> None:
    ws = FakeSocket()
    chat = make_client(ws, reconnect=None)
    ws.die(1000, "Authentication failed: Signature has expired")
    with pytest.raises(AuthError, match="expired"):
        await anext(chat.events())


async def test_recv_keeps_its_timeout_and_connection_closed_without_reconnect() -> None:
    ws = FakeSocket()
    chat = make_client(ws, reconnect=None)
    with pytest.raises(TimeoutError):
        await chat.recv(0.05)
    ws.die()
    with pytest.raises(ConnectionClosedError):
        await chat.recv(1)


# -- requests that wait for their answer ----------------------------------------------------------


def page(channel_id: int, *seq_numbers: int, has_more: bool) -> bytes:
    messages = [
        wire.HistoryMessage(
            id=wire.new_id(),
            timestamp=wire.utc_timestamp(),
            channel_id=channel_id,
            sender=OTHER,
            content=f"m{s}",
            seq=s,
        )
        for s in seq_numbers
    ]
    payload = wire.HistoryOut(channel_id=channel_id, messages=messages, has_more=has_more)
    return wire.fresh_frame(wire.HistoryFrame, payload)


async def test_history_returns_its_page_and_keeps_other_frames_in_order() -> None:
    ws = FakeSocket()
    chat = make_client(ws, reconnect=None)
    ws.feed(
        message(1, 8), page(2, 1, 2, has_more=False), message(1, 9), page(1, 6, 7, has_more=True)
    )
    got = await chat.history(1, before_seq=8, limit=2)
    assert [m.seq for m in got.messages] == [6, 7] and got.has_more
    assert ws.sent[-1] == {
        "type": "channel_history",
        "payload": {"channel_id": 1, "before_seq": 8, "limit": 2},
    }
    rest = await read(chat, 3)
    assert seqs(rest) == [(1, 8), (1, 9)]
    assert isinstance(rest[1], wire.HistoryFrame) and rest[1].payload.channel_id == 2


async def test_history_pages_walk_back_to_the_first_message() -> None:
    ws = FakeSocket()
    chat = make_client(ws, reconnect=None)
    ws.feed(page(3, 4, 5, has_more=True), page(3, 2, 3, has_more=True), page(3, 1, has_more=False))
    pages = [p async for p in chat.history_pages(3, limit=2)]
    assert [[m.seq for m in p.messages] for p in pages] == [[4, 5], [2, 3], [1]]
    befores = [f["payload"].get("before_seq") for f in ws.sent]
    assert befores == [None, 4, 2]


async def test_two_tasks_reading_at_once_is_a_clear_error() -> None:
    ws = FakeSocket()
    chat = make_client(ws, reconnect=None)
    reader = asyncio.create_task(chat.recv(5))
    await asyncio.sleep(0)  # let it start waiting
    with pytest.raises(RuntimeError, match="one reader"):
        await chat.recv(1)
    ws.feed(message(1, 1))
    assert seqs([await reader]) == [(1, 1)]


# -- commands -------------------------------------------------------------------------------------


async def test_helpers_send_the_protocols_frames() -> None:
    ws = FakeSocket()
    chat = make_client(ws, reconnect=None)
    await chat.react(1, "m-1", "+1")
    await chat.unreact(1, "m-1", "+1")
    await chat.typing(1)
    await chat.kick(1, "bob", reason="spam")
    await chat.mute(1, "bob", duration_s=60)
    await chat.unmute(1, "bob")
    await chat.ban(1, "bob", reason="again")
    await chat.unban(1, "bob")
    assert ws.sent == [
        {
            "type": "chat_react_add",
            "payload": {"channel_id": 1, "message_id": "m-1", "emote": "+1"},
        },
        {
            "type": "chat_react_remove",
            "payload": {"channel_id": 1, "message_id": "m-1", "emote": "+1"},
        },
        {"type": "chat_typing", "payload": {"channel_id": 1}},
        {"type": "chat_kick", "payload": {"channel_id": 1, "target": "bob", "reason": "spam"}},
        {"type": "chat_mute", "payload": {"channel_id": 1, "target": "bob", "duration": 60}},
        {"type": "chat_unmute", "payload": {"channel_id": 1, "target": "bob"}},
        {"type": "chat_ban", "payload": {"channel_id": 1, "target": "bob", "reason": "again"}},
        {"type": "chat_unban", "payload": {"channel_id": 1, "target": "bob"}},
    ]
    for frame in ws.sent:  # each one is a valid client frame
        wire.decode_client(json.dumps(frame))


# -- the backoff policy ---------------------------------------------------------------------------


def test_backoff_grows_to_its_cap_and_jitters_within_half_of_it() -> None:
    policy = Reconnect(initial_delay_s=0.5, max_delay_s=30.0, multiplier=2.0)
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30]
    for attempt, ceiling in enumerate(ceilings):
        assert policy.delay_s(attempt, rand=lambda: 0.0) == pytest.approx(ceiling / 2)
        assert policy.delay_s(attempt, rand=lambda: 0.999999) == pytest.approx(ceiling, rel=1e-5)
    assert policy.delay_s(10**6, rand=lambda: 1.0) == 30.0  # no overflow, still capped
    draws = {policy.delay_s(3) for _ in range(50)}
    assert len(draws) > 1 and all(2.0 <= d <= 4.0 for d in draws)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay_s": 0},
        {"initial_delay_s": 5, "max_delay_s": 1},
        {"multiplier": 0.5},
        {"max_attempts": 0},
    ],
)
def test_a_reconnect_policy_that_makes_no_sense_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Reconnect(**kwargs)


def test_a_client_that_reconnects_needs_urls() -> None:
    with pytest.raises(ConfigError):
        Client(FakeSocket(), ME, reconnect=Reconnect())  # type: ignore[arg-type]


async def test_login_refuses_urls_that_are_not_http() -> None:
    with pytest.raises(RequestFailed, match="not an http"):
        await login("file:///etc/passwd", "a", "b")


async def test_close_during_a_reconnect_ends_events_and_opens_nothing(opener) -> None:
    first, second = FakeSocket(), FakeSocket()
    fake = opener(OSError("refused"), second)
    chat = make_client(first, Reconnect(initial_delay_s=0.2, max_delay_s=0.2))
    first.die()
    events = chat.events()
    reading = asyncio.ensure_future(anext(events))
    while not fake.urls:  # the first attempt failed; the second waits its backoff
        await asyncio.sleep(0.01)
    await chat.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reading, 5)
    assert fake.urls == ["ws://gw1/ws"] and chat.ws is first  # type: ignore[comparison-overlap]
