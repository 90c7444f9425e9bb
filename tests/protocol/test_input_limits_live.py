"""Out-of-range input gets the protocol's error, never a traceback or a dead letter (issue 9).

Every client frame type and every REST route is driven with values at and beyond what storage
holds (int4 and int8 bounds, 2^70, floats, numeric strings in other scripts), U+0000, escaped lone
surrogates and huge strings, on a stack of this module's own whose services write their logs to
a file. The rules: a value storage cannot hold is ``Malformed message.`` (422 over REST), and the
error frame names the frame's ``channel_id`` and ``client_msg_id``; nothing answers 5xx or
``Unexpeted error``; no service logs an error or a traceback, none restarts; the dead-letter
streams stay empty; and the connection stays usable afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import jwt
import pytest
import redis.asyncio as aioredis
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from justchat import wire
from justchat.client import Client
from justchat.keys import Keys
from justchat.stack import Stack, StackConfig

PASSWORD: Final = "Secret-pass1"
MALFORMED: Final = "Malformed message."
FORMAT: Final = "Invalid message format"
# Errors that mean a valid frame failed inside the system: none may ever be sent here.
FAILURES: Final = {
    wire.ERR_UNEXPECTED,
    wire.ERR_SEND_FAILED,
    wire.ERR_JOIN_FAILED,
    wire.ERR_UNAVAILABLE,
}
HUGE: Final = 30_000  # characters: a frame with two of them stays under the 64 KiB limit
NUL: Final = "\x00"
SURROGATE: Final = "\ud800"  # sent as the JSON escape \ud800, which json.dumps writes


# -- the stack, with its services' output in a file --------------------------------------------


@contextlib.contextmanager
def children_write_to(path: Path) -> Iterator[None]:
    """Processes started meanwhile inherit ``path`` as their stdout and stderr.

    ``Stack`` starts services with this process's descriptors; pointing them at a file for the
    duration of ``start()`` gives the services (and only them) a log the test can read.
    """
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@dataclass(frozen=True)
class LimitsStack:
    stack: Stack
    log: Path
    keys: Keys
    redis_url: str
    database_url: str
    jwt_secret: str


@pytest.fixture(scope="module")
async def limits(
    tmp_path_factory: pytest.TempPathFactory,
    make_stack_config: Callable[..., StackConfig],
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
) -> AsyncIterator[LimitsStack]:
    run_dir = tmp_path_factory.mktemp("limits-stack")
    prefix = f"{redis_prefix}l{uuid.uuid4().hex[:8]}:"
    stack = Stack(
        make_stack_config(
            run_dir,
            redis_url=redis_url,
            database_url=database_url,
            redis_prefix=prefix,
            jwt_secret=jwt_secret,
            gateways=1,
        )
    )
    log = run_dir / "services.log"
    try:
        with children_write_to(log):
            await stack.start()
        yield LimitsStack(stack, log, Keys(prefix), redis_url, database_url, jwt_secret)
    finally:
        await stack.stop()


async def assert_system_healthy(limits: LimitsStack) -> None:
    """No error or traceback logged, no restart, nothing dead-lettered."""
    text = limits.log.read_text(errors="replace")
    bad = [
        line
        for line in text.splitlines()
        if "Traceback" in line or " ERROR " in line or " CRITICAL " in line
    ]
    assert bad == [], "services logged errors:\n" + text[-5000:]
    assert [s.name for s in limits.stack.services if s.restarts] == []
    redis = aioredis.Redis.from_url(limits.redis_url)
    try:
        dead = await redis.xlen(limits.keys.dead_letters)
        dead_presence = await redis.xlen(limits.keys.presence_dead_letters)
        entries = await redis.xrange(limits.keys.dead_letters, count=5)
    finally:
        await redis.aclose()
    assert (dead, dead_presence) == (0, 0), entries


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    token: str


async def account(limits: LimitsStack, api: httpx.AsyncClient, role: str = "user") -> Account:
    username = f"l{secrets.token_hex(5)}"
    created = await api.post("/auth/signup", json={"username": username, "password": PASSWORD})
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    if role != "user":
        db = await asyncpg.connect(limits.database_url)
        try:
            await db.execute("UPDATE users SET role = $1 WHERE id = $2", role, user_id)
        finally:
            await db.close()
    login = await api.post("/auth/login", data={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Account(user_id, username, login.json()["access_token"])


@pytest.fixture
async def api(limits: LimitsStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{limits.stack.api_url}/api/v1", timeout=20) as client:
        yield client


def new_channel() -> int:
    return secrets.randbelow(2**31 - 2) + 1


def signed(limits: LimitsStack, **claims: Any) -> str:
    """A token signed with the stack's secret: only its claims are wrong."""
    full = {"username": "mallory", "role": "admin", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(full, limits.jwt_secret, algorithm="HS256")


async def joined(client: Client, channel_id: int) -> None:
    await client.join(channel_id)
    while True:
        frame = await client.recv()
        assert not isinstance(frame, wire.ErrorFrame), frame
        if isinstance(frame, wire.JoinFrame) and frame.payload.user == client.user:
            return


async def echo(client: Client, channel_id: int, content: str) -> wire.ChatSendFrame:
    """Send; return the sender's own copy of the broadcast (errors other than the fuzz's own
    replies, which may still be arriving, fail the test)."""
    await client.send(channel_id, content)
    while True:
        frame = await client.recv()
        if isinstance(frame, wire.ErrorFrame):
            assert frame.payload.detail not in FAILURES, frame
        if isinstance(frame, wire.ChatSendFrame) and frame.payload.content == content:
            return frame


# -- the cases, one by one --------------------------------------------------------------


async def exchange(ws: Any, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame``; return the next frame, which must be an error."""
    await ws.send(json.dumps(frame))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply["type"] == "error", reply
    return dict(reply["payload"])


async def test_the_reported_frames_are_malformed_and_change_nothing(
    limits: LimitsStack, api: httpx.AsyncClient
) -> None:
    moderator = await account(limits, api, "moderator")
    client = await Client.connect(limits.stack.gateway_urls[0], token=moderator.token)
    try:
        channel = new_channel()
        await joined(client, channel)
        before = await echo(client, channel, "before")
        ws = client.ws
        cases = [
            {"type": "channel_join", "payload": {"channel_id": channel, "since_seq": 2**70}},
            {"type": "channel_history", "payload": {"channel_id": channel, "before_seq": 2**63}},
            {"type": "chat_send", "payload": {"channel_id": channel, "content": f"a{NUL}b"}},
            {
                "type": "chat_mute",
                "payload": {"channel_id": channel, "target": "nobody", "duration": 2**31},
            },
        ]
        for frame in cases:
            assert await exchange(ws, frame) == {"detail": MALFORMED, "channel_id": channel}
        sent = {
            "type": "chat_send",
            "payload": {"channel_id": channel, "content": SURROGATE, "client_msg_id": "c-1"},
        }
        assert await exchange(ws, sent) == {
            "detail": MALFORMED,
            "channel_id": channel,
            "client_msg_id": "c-1",
        }
        # The channel joined before is still usable: next seq, no gap, nothing stored meanwhile.
        after = await echo(client, channel, "after")
        assert after.payload.seq == before.payload.seq + 1
        await client.send_frame("channel_history", {"channel_id": channel, "limit": 5})
        page = await client.expect("channel_history")
        assert [m.content for m in page.payload.messages] == ["before", "after"]
    finally:
        await client.close()
    await assert_system_healthy(limits)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        pytest.param({"sub": "9" * 30}, "invalid subject", id="sub-30-digits"),
        pytest.param({"sub": "\u0662"}, "invalid subject", id="sub-arabic-indic-2"),
        pytest.param({"sub": str(2**63)}, "invalid subject", id="sub-2**63"),
        pytest.param({"sub": "2", "username": f"a{NUL}"}, "invalid claims", id="username-nul"),
        pytest.param({"sub": "2", "exp": 10**30}, "invalid claims", id="exp-10**30"),
    ],
)
async def test_tokens_outside_the_id_range_are_refused_everywhere(
    limits: LimitsStack, api: httpx.AsyncClient, claims: dict[str, Any], reason: str
) -> None:
    token = signed(limits, **claims)
    ws = await websockets.connect(limits.stack.gateway_urls[0])
    try:
        await ws.send(json.dumps({"type": "hello", "payload": {"token": token}}))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1000
        assert ws.close_reason == f"Authentication failed: {reason}"
    finally:
        await ws.close()
    for path in ("/auth/me", "/dashboard/users/"):
        response = await api.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "Could not validate credentials"}
    await assert_system_healthy(limits)


# -- every client frame type, fuzzed ------------------------------------------------------------

INT_FIELDS: Final = {  # field -> the range storage (or the protocol) accepts
    "channel_id": (wire.INT32_MIN, wire.INT32_MAX),
    "since_seq": (0, wire.INT64_MAX),
    "before_seq": (0, wire.INT64_MAX),
    "duration": (0, wire.MAX_SANCTION_S),
    "limit": (1, wire.MAX_HISTORY_PAGE),
}
LENGTHS: Final = {
    "client_msg_id": wire.MAX_CLIENT_MSG_ID,
    "emote": wire.MAX_EMOTE_CHARS,
    "target": wire.MAX_NAME_CHARS,
    "reason": wire.MAX_REASON_CHARS,
}
EDGES: Final = [
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    2**63 - 1,
    2**63,
    -(2**63),
    2**64,
    2**70,
    -(2**70),
    10**30,
]
extreme_ints = st.sampled_from(EDGES) | st.integers(-(2**80), 2**80)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1.5, 1e308, -0.0])
numeric_strings = extreme_ints.map(str) | st.sampled_from(
    ["\u0662", "1_0", " 7", "1e3", "9" * 30, "-1", "", "0x10"]
)
bad_strings = st.sampled_from(
    [NUL, f"a{NUL}b", SURROGATE, f"x{SURROGATE}", "\udfff", "x" * HUGE, f"{'y' * 70}{NUL}"]
)
odd = st.none() | st.booleans() | st.lists(st.integers(), max_size=2) | st.text(max_size=10)
extremes = extreme_ints | numbers | numeric_strings | bad_strings | odd


def unstorable(field: str, value: Any) -> bool:
    """Certainly refused by the rules under test: an integer beyond its field's range, a string
    with U+0000 or a lone surrogate, or a string longer than its field may be."""
    if field in INT_FIELDS and type(value) is int:
        low, high = INT_FIELDS[field]
        return not low <= value <= high
    if isinstance(value, str):
        if any(c == NUL or "\ud800" <= c <= "\udfff" for c in value):
            return True
        return field in LENGTHS and len(value) > LENGTHS[field]
    return False


def context_validity(key: str, value: Any) -> bool | None:
    """Whether an error frame must repeat ``value`` as ``key`` (True) or leave it out (False);
    None where the rules allow a conversion (floats, numeric strings) this test does not model."""
    if key == "channel_id":
        if type(value) is int:
            return wire.INT32_MIN <= value <= wire.INT32_MAX
        return None if isinstance(value, float | str) else False
    if isinstance(value, str):
        return 0 < len(value) <= wire.MAX_CLIENT_MSG_ID and not unstorable(key, value)
    return False


@dataclass(frozen=True)
class Scene:
    channel: int  # the fuzzer is a member; frames act on it
    other: int  # joined and left by the fuzz
    target: str  # an account that is not the fuzzer
    message_id: str


def base_frame(kind: str, scene: Scene) -> dict[str, Any]:
    """A valid frame of ``kind`` that acts on the scene (each reaches chat-service)."""
    c = scene.channel
    payloads: dict[str, dict[str, Any]] = {
        "chat_send": {"channel_id": c, "content": "hi", "client_msg_id": "m-1"},
        "chat_react_add": {"emote": "+1", "message_id": scene.message_id, "channel_id": c},
        "chat_react_remove": {"emote": "+1", "message_id": scene.message_id, "channel_id": c},
        "chat_typing": {"channel_id": c},
        "chat_kick": {"channel_id": c, "target": scene.target, "reason": "r"},
        "chat_mute": {"channel_id": c, "target": scene.target, "duration": 5, "reason": "r"},
        "chat_unmute": {"channel_id": c, "target": scene.target},
        "chat_ban": {"channel_id": c, "target": scene.target, "duration": 0},
        "chat_unban": {"channel_id": c, "target": scene.target},
        "channel_join": {"channel_id": scene.other, "since_seq": 1},
        "channel_leave": {"channel_id": scene.other},
        "channel_history": {"channel_id": c, "before_seq": 9, "limit": 5},
    }
    return {"type": kind, "payload": dict(payloads[kind])}


FIELDS: Final = sorted({*INT_FIELDS, *LENGTHS, "content", "message_id"})


@st.composite
def fuzzed(draw: st.DrawFn, scene: Scene) -> tuple[dict[str, Any], list[str]]:
    """A valid frame of some type with one or two payload values replaced by extreme ones."""
    frame = base_frame(
        draw(st.sampled_from(sorted(wire.CLIENT_PAYLOADS.keys() - {"hello"}))), scene
    )
    payload = frame["payload"]
    changed = []
    for _ in range(draw(st.integers(1, 2))):
        field = draw(st.sampled_from(sorted(payload)) | st.sampled_from(FIELDS))
        payload[field] = draw(extremes)
        changed.append(field)
    return frame, changed


async def test_every_frame_type_with_extreme_values(
    limits: LimitsStack, api: httpx.AsyncClient
) -> None:
    loop = asyncio.get_running_loop()
    moderator = await account(limits, api, "moderator")
    target = await account(limits, api)
    client = await Client.connect(limits.stack.gateway_urls[0], token=moderator.token)
    seen: list[dict[str, Any]] = []
    try:
        scene = Scene(new_channel(), new_channel(), target.username, "")
        await joined(client, scene.channel)
        first = await echo(client, scene.channel, "first")
        scene = Scene(scene.channel, scene.other, scene.target, first.id)
        ws = client.ws
        probes = itertools.count()

        async def send(frame: dict[str, Any]) -> list[dict[str, Any]]:
            """Send ``frame`` then a probe; every frame received until the probe's answer."""
            probe = f"probe-{next(probes)}"
            await ws.send(json.dumps(frame))
            await ws.send(json.dumps({"type": "probe", "payload": {"client_msg_id": probe}}))
            frames = []
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if reply["type"] == "error" and reply["payload"].get("client_msg_id") == probe:
                    assert reply["payload"] == {"detail": FORMAT, "client_msg_id": probe}
                    seen.extend(frames)
                    return frames
                frames.append(reply)

        @settings(
            max_examples=120,
            deadline=None,
            database=None,  # examples depend on live state
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(case=fuzzed(scene))
        def property_(case: tuple[dict[str, Any], list[str]]) -> None:
            frame, changed = case
            frames = asyncio.run_coroutine_threadsafe(send(frame), loop).result(timeout=30)
            errors = [f["payload"] for f in frames if f["type"] == "error"]
            assert not [e for e in errors if e["detail"] in FAILURES], (frame, errors)
            payload = frame["payload"]
            known = wire.CLIENT_PAYLOADS[frame["type"]].__struct_fields__  # others are ignored
            if any(unstorable(f, payload[f]) for f in changed if f in known):
                malformed = [e for e in errors if e["detail"] == MALFORMED]
                assert len(malformed) == 1, (frame, frames)
                # The frame's own values name it in the error when they are valid, never else.
                for key in ("channel_id", "client_msg_id"):
                    valid = context_validity(key, payload.get(key))
                    if valid:
                        assert malformed[0].get(key) == payload[key], (frame, frames)
                    elif valid is not None:
                        assert key not in malformed[0], (frame, frames)

        await asyncio.to_thread(property_)

        # Everything the fuzz asked of chat-service is done once a send after it comes back
        # (one partition, in order); the connection is still a member and still works.
        last = await echo(client, scene.channel, "after the fuzz")
        assert last.payload.sender == client.user
        await client.send_frame("channel_history", {"channel_id": scene.channel, "limit": 1})
        page = await client.expect("channel_history")
        assert [m.content for m in page.payload.messages] == ["after the fuzz"]
        await joined(client, new_channel())
    finally:
        await client.close()
    errors = [f["payload"] for f in seen if f["type"] == "error"]
    assert not [e for e in errors if e["detail"] in FAILURES]
    await assert_system_healthy(limits)


# -- every REST route, fuzzed -------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    params: list[dict[str, Any]]
    body: tuple[str, dict[str, Any]] | None  # content type and the body's JSON schema


def routes_of(openapi: dict[str, Any]) -> list[Route]:
    """Every operation the API documents, with its parameters and its body's schema."""
    schemas = openapi.get("components", {}).get("schemas", {})
    found = []
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "patch", "put", "delete"):
                continue
            body = None
            for content_type, media in operation.get("requestBody", {}).get("content", {}).items():
                ref = media["schema"].get("$ref", "")
                body = (content_type, schemas.get(ref.rsplit("/", 1)[-1], media["schema"]))
            found.append(Route(method.upper(), path, operation.get("parameters", []), body))
    return found


def url_text(value: Any) -> str:
    """A value as it appears in a URL: strings percent-encoded from their bytes (a lone
    surrogate as the three bytes UTF-8 would give it, which are not valid UTF-8)."""
    if isinstance(value, str):
        return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else urllib.parse.quote(json.dumps(value), safe="")


@dataclass(frozen=True)
class RestScene:
    channel: int
    user_id: int  # an account the fuzz may edit or delete (never the caller)
    username: str
    tokens: list[str]  # the admin's, then tokens whose claims are out of range


def typical(schema: dict[str, Any], name: str, scene: RestScene) -> st.SearchStrategy[Any]:
    """Values that pass validation, so that the fuzz also reaches the handlers."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if name in ("channel_id",):
        return st.just(scene.channel)
    if name in ("user_id",):
        return st.just(scene.user_id)
    if name == "username":
        return st.just(scene.username)
    kind = schema.get("type")
    if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
        return st.integers(int(schema.get("minimum", 0)), int(schema.get("maximum", 1000)))
    if kind == "boolean":
        return st.booleans()
    return st.sampled_from(["", "x", "mute", "7", "Secret-pass1"])


# Path ids are never small: the session's database holds other tests' users and channels.
path_extremes = st.sampled_from([*EDGES, 0, -1]) | numeric_strings | bad_strings | odd


def value_for(
    schema: dict[str, Any], name: str, scene: RestScene, *, in_path: bool = False
) -> st.SearchStrategy[Any]:
    return typical(schema, name, scene) | (path_extremes if in_path else extremes)


@st.composite
def requests_(draw: st.DrawFn, routes: list[Route], scene: RestScene) -> dict[str, Any]:
    route = draw(st.sampled_from(routes))
    path, query = route.path, []
    for param in route.params:
        schema, name = param.get("schema", {}), param["name"]
        if param["in"] == "path":
            value = draw(value_for(schema, name, scene, in_path=True))
            text = url_text(value) or "0"
            path = path.replace(f"{{{name}}}", text)
        elif param["in"] == "query" and draw(st.booleans()):
            query.append(f"{name}={url_text(draw(value_for(schema, name, scene)))}")
    request: dict[str, Any] = {
        "method": route.method,
        "url": path + ("?" + "&".join(query) if query else ""),
        "headers": {"Authorization": f"Bearer {draw(st.sampled_from(scene.tokens))}"},
    }
    if route.body is not None:
        content_type, schema = route.body
        fields = {
            name: draw(value_for(prop, name, scene))
            for name, prop in schema.get("properties", {}).items()
            if draw(st.integers(0, 4))  # mostly present
        }
        if content_type == "application/x-www-form-urlencoded":
            body = "&".join(f"{k}={url_text(v)}" for k, v in fields.items()).encode()
        else:
            body = json.dumps(fields).encode()  # lone surrogates as \\ud800 escapes
        request["content"] = body
        request["headers"]["Content-Type"] = content_type
    return request


async def test_every_rest_route_with_extreme_values(
    limits: LimitsStack, api: httpx.AsyncClient
) -> None:
    loop = asyncio.get_running_loop()
    admin = await account(limits, api, "admin")
    victim = await account(limits, api)
    channel = new_channel()
    joiner = await Client.connect(limits.stack.gateway_urls[0], token=admin.token)
    try:
        await joined(joiner, channel)  # the channel exists, so sanctions reach chat-service
    finally:
        await joiner.close()
    spec = await api.get("/openapi.json")
    assert spec.status_code == 200
    routes = routes_of(spec.json())
    assert len(routes) >= 20, [f"{r.method} {r.path}" for r in routes]
    scene = RestScene(
        channel,
        victim.id,
        victim.username,
        [
            admin.token,
            admin.token,
            signed(limits, sub="9" * 30),
            signed(limits, sub="\u0662"),
            signed(limits, sub=str(admin.id), username=NUL),
        ],
    )
    statuses: dict[str, set[int]] = {}

    async with httpx.AsyncClient(base_url=limits.stack.api_url, timeout=30) as http:

        async def call(request: dict[str, Any]) -> httpx.Response:
            return await http.request(**request)

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(request=requests_(routes, scene))
        def property_(request: dict[str, Any]) -> None:
            run: Coroutine[Any, Any, httpx.Response] = call(request)
            response = asyncio.run_coroutine_threadsafe(run, loop).result(timeout=60)
            statuses.setdefault(request["method"], set()).add(response.status_code)
            assert response.status_code < 500, (request, response.status_code, response.text)
            if response.status_code >= 400:
                body = response.json()
                assert list(body) == ["detail"] and isinstance(body["detail"], str), body

        await asyncio.to_thread(property_)

    # The fuzz reached handlers (2xx) and validation (422), not only the guards.
    reached = set().union(*statuses.values())
    assert any(200 <= s < 300 for s in reached) and 422 in reached, statuses
    await assert_system_healthy(limits)


async def test_a_sanction_storage_cannot_hold_is_422_and_one_it_can_is_applied(
    limits: LimitsStack, api: httpx.AsyncClient
) -> None:
    admin = await account(limits, api, "admin")
    victim = await account(limits, api)
    channel = new_channel()
    joiner = await Client.connect(limits.stack.gateway_urls[0], token=admin.token)
    try:
        await joined(joiner, channel)
    finally:
        await joiner.close()
    url = f"/dashboard/channels/{channel}/sanctions"
    headers = {"Authorization": f"Bearer {admin.token}"}
    for duration in (2**31, 2**63, 10**30):
        body = {"username": victim.username, "kind": "mute", "duration_s": duration}
        response = await api.post(url, json=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json() == {
            "detail": f"Invalid request: duration_s: Expected `int` <= {wire.MAX_SANCTION_S}"
        }
    longest = {"username": victim.username, "kind": "mute", "duration_s": wire.MAX_SANCTION_S}
    response = await api.post(url, json=longest, headers=headers)
    assert response.status_code in (201, 202), response.text  # 202: stored a little later
    db = await asyncpg.connect(limits.database_url)
    try:
        deadline = time.monotonic() + 30
        while not (
            rows := await db.fetch(
                "SELECT expires_at - created_at AS span FROM sanctions"
                " WHERE channel_id = $1 AND username = $2",
                channel,
                victim.username,
            )
        ):
            assert time.monotonic() < deadline, "the mute was never stored"
            await asyncio.sleep(0.1)
    finally:
        await db.close()
    assert [r["span"].total_seconds() for r in rows] == [wire.MAX_SANCTION_S]
    await assert_system_healthy(limits)


async def test_chat_service_errors_name_the_channel(
    limits: LimitsStack, api: httpx.AsyncClient
) -> None:
    """Refusals, an unknown message and a ban come from chat-service, after the gateway passed
    the frame on: they too carry the frame's ``channel_id``."""
    moderator = await account(limits, api, "moderator")
    admin = await account(limits, api, "admin")
    banned = await account(limits, api)
    channel = new_channel()
    mod = await Client.connect(limits.stack.gateway_urls[0], token=moderator.token)
    victim = await Client.connect(limits.stack.gateway_urls[0], token=banned.token)
    try:
        await joined(mod, channel)
        await mod.send_frame("chat_mute", {"channel_id": channel, "target": admin.username})
        refusal = await mod.expect("error")
        assert refusal.payload == wire.ErrorOut(detail=wire.ERR_NO_PERMISSION, channel_id=channel)
        unknown = str(uuid.uuid4())
        react = {"emote": "+1", "message_id": unknown, "channel_id": channel}
        await mod.send_frame("chat_react_add", react)
        missing = await mod.expect("error")
        assert missing.payload == wire.ErrorOut(detail=wire.ERR_NO_MESSAGE, channel_id=channel)
        await mod.send_frame("chat_ban", {"channel_id": channel, "target": banned.username})
        await mod.expect("chat_ban")
        await victim.join(channel)
        refused = await victim.expect("error")
        assert refused.payload == wire.ErrorOut(detail=wire.ERR_BANNED, channel_id=channel)
    finally:
        await mod.close()
        await victim.close()
    await assert_system_healthy(limits)
