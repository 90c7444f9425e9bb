"""justchat.client against real gateways: login, auth errors, idle periods, helpers, and a
reconnect that resumes every joined channel after its gateway is killed (SIGKILL) mid-stream."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from justchat import wire
from justchat.client import (
    AuthError,
    Client,
    Reconnect,
    RequestFailed,
    login,
    signup,
)
from justchat.stack import Stack, StackConfig

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Secret-pass1"
IDLE_S = 12.0  # longer than recv()'s default 10 s timeout, which events() must not have


async def new_account(stack: Stack, role: str = "user") -> tuple[str, str]:
    """(username, token) of a fresh account, made through the client's own REST helpers."""
    api = f"{stack.api_url}/api/v1"
    username = f"c{secrets.token_hex(5)}"
    created = await signup(api, username, PASSWORD)
    assert created["username"] == username and created["is_guest"] is False
    if role != "user":
        conn = await asyncpg.connect(stack.database_url)
        try:
            await conn.execute("UPDATE users SET role = $1 WHERE username = $2", role, username)
        finally:
            await conn.close()
    return username, await login(api, username, PASSWORD)


async def joined(client: Client, channel_id: int) -> None:
    await client.join(channel_id)
    await client.expect("channel_join", where=lambda f: f.payload.user == client.user)


async def own_echo(client: Client, content: str) -> wire.ChatSendOut:
    frame = await client.expect(
        "chat_send",
        where=lambda f: f.payload.sender == client.user and f.payload.content == content,
    )
    payload: wire.ChatSendOut = frame.payload
    return payload


# -- login and auth errors ------------------------------------------------------------------------


async def test_login_gives_a_token_the_gateways_accept(stack: Stack) -> None:
    username, token = await new_account(stack)
    async with await Client.connect(stack.gateway_urls[0], token=token) as chat:
        assert chat.user == wire.UserFrom(username=username, is_guest=False)


async def test_wrong_credentials_and_rejected_tokens_are_auth_errors(stack: Stack) -> None:
    username, _ = await new_account(stack)
    with pytest.raises(AuthError, match="Incorrect username or password"):
        await login(f"{stack.api_url}/api/v1", username, "Wrong-pass1")
    with pytest.raises(AuthError, match="Authentication failed"):
        await Client.connect(stack.gateway_urls[1], token="not-a-jwt")


async def test_signup_refusals_say_which_rule(stack: Stack) -> None:
    api = f"{stack.api_url}/api/v1"
    with pytest.raises(RequestFailed) as weak:
        await signup(api, f"c{secrets.token_hex(5)}", "short")
    assert weak.value.status == 422
    assert "at least 8 characters" in weak.value.detail
    assert "an uppercase letter" in weak.value.detail
    username, _ = await new_account(stack)
    with pytest.raises(RequestFailed) as taken:
        await signup(api, username, PASSWORD)
    assert (taken.value.status, taken.value.detail) == (409, "Username already exists.")


async def test_login_reports_an_unreachable_api() -> None:
    with pytest.raises(RequestFailed) as caught:
        await login("http://127.0.0.1:9/api/v1", "someone", PASSWORD, timeout_s=2)
    assert caught.value.status == 0 and "cannot reach" in caught.value.detail


async def test_the_readme_client_script_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"```python\n(.*?)```", readme[readme.index("## Quick start") :], re.S)
    assert found, "the quick start has no Python script"
    script = found.group(1)
    # Only the addresses (make run's defaults) and the account change.
    api_default = '"http://127.0.0.1:8000/api/v1"'
    gateways_default = '["ws://127.0.0.1:8100/ws", "ws://127.0.0.1:8101/ws"]'
    account = '"alice", "Secret-pass1"'
    for expected in (api_default, gateways_default, account):
        assert expected in script, expected
    username = f"r{secrets.token_hex(5)}"
    await signup(f"{stack.api_url}/api/v1", username, PASSWORD)
    path = tmp_path / "hello.py"
    path.write_text(
        script.replace(api_default, repr(f"{stack.api_url}/api/v1"))
        .replace(gateways_default, repr(stack.gateway_urls))
        .replace(account, f"{username!r}, {PASSWORD!r}")
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    lines = out.decode().splitlines()
    assert process.returncode == 0, lines
    seq = int(lines[-2].split()[1])  # channel 1 may hold other tests' messages
    assert lines[-2] == f"#1 {seq} {username}: hello", lines
    assert lines[-1] == f"the last {min(10, seq)} messages; more before them: {seq > 10}", lines


# -- reading --------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_events_wait_through_a_quiet_period(stack: Stack, channel_id: int) -> None:
    async with (
        await Client.connect(stack.gateway_urls[0]) as reader,
        await Client.connect(stack.gateway_urls[1]) as writer,
    ):
        await joined(reader, channel_id)
        await joined(writer, channel_id)
        await reader.expect("channel_join", where=lambda f: f.payload.user == writer.user)
        events = reader.events()
        waiting = asyncio.ensure_future(anext(events))
        # The quiet period under test: nothing is sent for longer than recv()'s timeout.
        done, _ = await asyncio.wait({waiting}, timeout=IDLE_S)
        assert not done, waiting.exception() if waiting.done() else None
        await writer.send(channel_id, "still there?")
        frame = await asyncio.wait_for(waiting, 10)
        assert isinstance(frame, wire.ChatSendFrame)
        assert frame.payload.content == "still there?"
        await events.aclose()


async def test_helpers_react_type_page_history_and_moderate(stack: Stack, channel_id: int) -> None:
    _, mod_token = await new_account(stack, "moderator")
    _, user_token = await new_account(stack)
    async with (
        await Client.connect(stack.gateway_urls[0], token=mod_token) as mod,
        await Client.connect(stack.gateway_urls[1], token=user_token) as user,
    ):
        await joined(mod, channel_id)
        await joined(user, channel_id)
        target = user.user.username
        for n in range(7):
            await user.send(channel_id, f"m{n}")
            await own_echo(user, f"m{n}")

        pages = [p async for p in user.history_pages(channel_id, limit=3)]
        assert [[m.content for m in p.messages] for p in pages] == [
            ["m4", "m5", "m6"],
            ["m1", "m2", "m3"],
            ["m0"],
        ]
        first = pages[-1].messages[0]

        await mod.react(channel_id, first.id, "+1")
        added = await user.expect("chat_react_add")
        assert (added.payload.message_id, added.payload.emote, added.payload.count) == (
            first.id,
            "+1",
            1,
        )
        await mod.unreact(channel_id, first.id, "+1")
        removed = await user.expect("chat_react_remove")
        assert (removed.payload.message_id, removed.payload.count) == (first.id, 0)
        await user.typing(channel_id)
        typing = await mod.expect("chat_typing")
        assert typing.payload.user == user.user

        await mod.mute(channel_id, target, duration_s=60, reason="calm")
        muted = await user.expect("chat_mute")
        assert (muted.payload.target, muted.payload.duration) == (target, 60)
        await user.send(channel_id, "muted?")
        assert (await user.expect("error")).payload.detail == wire.ERR_MUTED
        await mod.unmute(channel_id, target)
        assert (await user.expect("chat_unmute")).payload.target == target

        await mod.kick(channel_id, target, reason="out")
        kicked = await user.expect("chat_kick")
        assert (kicked.payload.target, kicked.payload.reason) == (target, "out")
        assert channel_id not in user.joined  # nothing to resume there

        await mod.ban(channel_id, target, reason="again")
        assert (await mod.expect("chat_ban")).payload.target == target
        await user.join(channel_id)
        assert (await user.expect("error")).payload.detail == wire.ERR_BANNED
        await mod.unban(channel_id, target)
        assert (await mod.expect("chat_unban")).payload.target == target
        await joined(user, channel_id)


# -- reconnect under a gateway SIGKILL ------------------------------------------------------------

BEFORE, DURING, AFTER = 10, 10, 20  # messages per channel: delivered, missed, sent while resuming


@pytest.fixture(scope="module")
async def client_stack(
    tmp_path_factory: pytest.TempPathFactory,
    make_stack_config: Callable[..., StackConfig],
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
) -> AsyncIterator[Stack]:
    """A stack of its own: its gateways get killed."""
    async with Stack(
        make_stack_config(
            tmp_path_factory.mktemp("client-stack"),
            redis_url=redis_url,
            database_url=database_url,
            redis_prefix=f"{redis_prefix}c{uuid.uuid4().hex[:8]}:",
            jwt_secret=jwt_secret,
        )
    ) as stack:
        yield stack


async def healthy(stack: Stack, name: str, timeout_s: float = 60) -> None:
    """Wait until the supervisor has the service answering /health again."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(stack.service(name).health_url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not healthy after {timeout_s:.0f}s")
            await asyncio.sleep(0.2)


async def collect_until(
    client: Client, done: Callable[[list[wire.AnyServerFrame]], bool], timeout_s: float = 60
) -> list[wire.AnyServerFrame]:
    frames: list[wire.AnyServerFrame] = []
    async with asyncio.timeout(timeout_s):
        async for frame in client.events():
            frames.append(frame)
            if done(frames):
                return frames
    raise AssertionError("events() ended early")


def messages_of(frames: list[wire.AnyServerFrame], channel_id: int) -> list[tuple[int, str]]:
    return [
        (int(f.payload.seq), f.payload.content)
        for f in frames
        if isinstance(f, wire.ChatSendFrame) and f.payload.channel_id == channel_id
    ]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("urls", ["both gateways", "the killed one only"])
async def test_a_reconnecting_client_gets_every_message_once_across_a_gateway_sigkill(
    client_stack: Stack, urls: str
) -> None:
    stack = client_stack
    await healthy(stack, "gateway-0")  # a previous run killed it
    gw0, gw1 = stack.gateway_urls
    channels = [secrets.randbelow(2**31 - 1) + 1 for _ in range(2)]
    _, reader_token = await new_account(stack)
    _, writer_token = await new_account(stack)
    reader = await Client.connect(
        [gw0, gw1] if urls == "both gateways" else [gw0],
        token=reader_token,
        reconnect=Reconnect(),  # the defaults users get
    )
    writer = await Client.connect(gw1, token=writer_token)
    sent: dict[int, list[tuple[int, str]]] = {c: [] for c in channels}

    async def send(count: int) -> None:
        for _ in range(count):
            for channel_id in channels:
                content = f"{channel_id}-{len(sent[channel_id]) + 1}"
                await writer.send(channel_id, content)
                echo = await own_echo(writer, content)
                sent[channel_id].append((int(echo.seq), content))

    def up_to(seq: int) -> Callable[[list[wire.AnyServerFrame]], bool]:
        """True once every channel's messages have reached ``seq``."""
        return lambda frames: all(
            any(got >= seq for got, _ in messages_of(frames, c)) for c in channels
        )

    try:
        for channel_id in channels:
            await joined(reader, channel_id)
            await joined(writer, channel_id)
        await send(BEFORE)
        before = await collect_until(reader, up_to(BEFORE))

        # The reader stops reading; its gateway dies; what is sent now cannot reach it.
        gateway = stack.service("gateway-0")
        assert gateway.process is not None
        os.kill(gateway.process.pid, signal.SIGKILL)
        await send(DURING)
        # Reading again finds the connection dead, reconnects and resumes, while the writer
        # keeps sending.
        sending = asyncio.create_task(send(AFTER))
        after = await collect_until(reader, up_to(BEFORE + DURING + AFTER), 120)
        await sending
        await send(1)  # one more, sent last: any duplicate would have come before it
        total = BEFORE + DURING + AFTER + 1
        after += await collect_until(reader, up_to(total))

        assert reader.reconnects >= 1
        for channel_id in channels:
            got = messages_of(before + after, channel_id)
            assert [seq for seq, _ in got] == list(range(1, total + 1)), got  # once, in order
            assert got == sent[channel_id]
            resumes = [
                f.payload
                for f in after
                if isinstance(f, wire.ResumedFrame) and f.payload.channel_id == channel_id
            ]
            assert len(resumes) == 1 and resumes[0].recovered, resumes
            # It resumed from where it was: the messages sent while it was away were replayed.
            assert resumes[0].last_seq >= BEFORE + DURING
    finally:
        await reader.close()
        await writer.close()
