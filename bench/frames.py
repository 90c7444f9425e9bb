"""The few protocol frames the generator speaks, built and read with as little work as possible.

Client frames are byte templates. Server frames are told apart by their first bytes (the server
writes ``type`` first); only ``chat_send`` and ``error`` are decoded, into small structs that
skip every other field. A message's ``client_msg_id`` is its number in the run (a decimal string):
the phase that sent it knows its sender and send time by that number.
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


def chat(channel_id: int, body: bytes, msg_no: int) -> bytes:
    return (
        b'{"type":"chat_send","payload":{"channel_id":%d,"content":"%s","client_msg_id":"%d"}}'
        % (
            channel_id,
            body,
            msg_no,
        )
    )


def parse_msg_id(client_msg_id: str) -> int:
    """The number of a bench message; -1 for anything else."""
    return int(client_msg_id) if client_msg_id.isdigit() else -1


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
