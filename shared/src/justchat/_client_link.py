"""The connection under ``justchat.client.Client``: the handshake, and when to retry it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from justchat import wire
from justchat.errors import AuthError, ConfigError, JustchatError

AUTH_FAILED = "Authentication failed"  # the start of the close reason for a rejected token


class Disconnected(JustchatError, ConnectionError):
    """The connection ended (or could not be opened) and is not coming back by itself."""

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Reconnect:
    """How to reconnect: exponential backoff with jitter, forever unless ``max_attempts``.

    Attempt n waits a random time between half and all of
    ``min(max_delay_s, initial_delay_s * multiplier**n)``: the delay really grows, and clients
    that lost the same gateway do not come back in step.
    """

    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    multiplier: float = 2.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.initial_delay_s <= self.max_delay_s:
            raise ConfigError("Reconnect needs 0 < initial_delay_s <= max_delay_s")
        if self.multiplier < 1:
            raise ConfigError("Reconnect.multiplier must be at least 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigError("Reconnect.max_attempts must be at least 1 (or None: forever)")

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before attempt ``attempt`` (0 for the first)."""
        ceiling = self.initial_delay_s
        for _ in range(attempt):  # a loop, not **: no overflow however many attempts
            ceiling = min(self.max_delay_s, ceiling * self.multiplier)
            if ceiling == self.max_delay_s:
                break
        return ceiling * (1 + rand()) / 2


async def open_link(
    url: str, token: str | None, timeout_s: float
) -> tuple[ClientConnection, wire.UserFrom]:
    """A connection that completed the handshake, and the user the server named."""
    ws = await websockets.connect(url, open_timeout=timeout_s, max_size=None)
    try:
        await ws.send(
            json.dumps({"type": "hello", "payload": {} if token is None else {"token": token}})
        )
        frame = wire.decode_server(await asyncio.wait_for(ws.recv(), timeout_s))
    except ConnectionClosed as exc:
        reason = exc.rcvd.reason if exc.rcvd else ""
        if reason.startswith(AUTH_FAILED):
            raise AuthError(reason) from None
        code = exc.rcvd.code if exc.rcvd else None
        raise Disconnected(
            f"handshake refused: {code} {reason}", code=code, reason=reason
        ) from None
    except BaseException:
        await close_quietly(ws)
        raise
    if not isinstance(frame, wire.HelloFrame):
        await close_quietly(ws)
        raise Disconnected(f"handshake failed: {frame}")
    return ws, frame.payload.user


async def close_quietly(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.shield(ws.close())


def closed_error(exc: ConnectionClosed) -> JustchatError:
    code = exc.rcvd.code if exc.rcvd else None
    reason = exc.rcvd.reason if exc.rcvd else ""
    if reason.startswith(AUTH_FAILED):
        return AuthError(reason)
    return Disconnected(f"connection closed: {code} {reason}".rstrip(), code=code, reason=reason)
