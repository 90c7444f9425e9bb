"""The few protocol frames the generator speaks, built and read with as little work as possible.

Client frames are byte templates. Server frames are told apart by their first bytes (the server
writes ``type`` first); only ``chat_send`` and ``error`` are decoded, into small structs that
skip every other field. A message's ``client_msg_id`` carries its sender, the sender's counter and
the send time, so any receiver can time it and check the sender's order without a shared map.
"""

from __future__ import annotations

from typing import Final

import msgspec

CONTENT_BYTES: Final = 100
HELLO_GUEST: Final = b'{"type":"hello","payload":{}}'

CHAT_PREFIX: Final = b'{"type":"chat_send"'
ERROR_PREFIX: Final = b'{"type":"error"'
HELLO_PREFIX: Final = b'{"type":"hello"'
JOIN_PREFIX: Final = b'{"type":"channel_join"'

TOO_FAST: Final = "You are sending messages too fast."


def hello(token: str | None) -> bytes:
    if token is None:
        return HELLO_GUEST
    return b'{"type":"hello","payload":{"token":%s}}' % msgspec.json.encode(token)


def join(channel_id: int) -> bytes:
    return b'{"type":"channel_join","payload":{"channel_id":%d}}' % channel_id


def content(size: int = CONTENT_BYTES) -> bytes:
    return b"x" * size


def chat(channel_id: int, body: bytes, sender: int, counter: int, sent_ns: int) -> bytes:
    return (
        b'{"type":"chat_send","payload":{"channel_id":%d,"content":"%s","client_msg_id":"%d.%d.%d"}}'
        % (
            channel_id,
            body,
            sender,
            counter,
            sent_ns,
        )
    )


def parse_msg_id(client_msg_id: str) -> tuple[int, int, int]:
    """(sender, counter, sent_ns) of a bench message; (-1, 0, 0) for anything else."""
    parts = client_msg_id.split(".")
    if len(parts) != 3:
        return -1, 0, 0
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return -1, 0, 0


class ChatPayload(msgspec.Struct):
    channel_id: int
    seq: int = 0
    client_msg_id: str = ""


class ChatFrame(msgspec.Struct):
    payload: ChatPayload


class ErrorPayload(msgspec.Struct):
    detail: str = ""
    client_msg_id: str = ""


class ErrorFrame(msgspec.Struct):
    payload: ErrorPayload


class HelloUser(msgspec.Struct):
    username: str


class HelloPayload(msgspec.Struct):
    user: HelloUser


class HelloFrame(msgspec.Struct):
    payload: HelloPayload


decode_chat: Final = msgspec.json.Decoder(ChatFrame).decode
decode_error: Final = msgspec.json.Decoder(ErrorFrame).decode
decode_hello: Final = msgspec.json.Decoder(HelloFrame).decode


def user_marker(username: str) -> bytes:
    """Bytes found in a frame about this user (the closing quote keeps Guest1 from Guest12)."""
    return b'"username":%s' % msgspec.json.encode(username)
