"""The dead-letter streams (``justchat.keys``): commands that failed for good, for inspection.

``justchat.streams`` writes each entry with the fields ``stream`` (the partition stream it came
from), ``entry`` (its id there), ``c`` (the command as msgpack; possibly bytes that never
decoded, which is why it is there) and ``error``.
"""

from __future__ import annotations

from typing import Any, Final, Literal, cast

import msgspec
import redis.asyncio as aioredis

from dashboard_service.schemas import DeadLetter, DeadLetterCounts
from justchat import events
from justchat.keys import Keys

DeadLetterStream = Literal["cmd", "presence"]
_Decoder = msgspec.msgpack.Decoder[Any]
_DECODERS: Final[dict[str, _Decoder]] = {
    "cmd": events.chat_command_decoder,
    "presence": events.presence_command_decoder,
}


def _text(fields: dict[bytes, bytes], name: bytes) -> str:
    value = fields.get(name)
    return "" if value is None else value.decode("utf-8", errors="replace")


def _command(decoder: _Decoder, raw: bytes | None) -> dict[str, Any] | None:
    """The command as JSON-ready builtins, or None if ``raw`` is absent or does not decode."""
    if raw is None:
        return None
    try:
        command = msgspec.to_builtins(decoder.decode(raw))
    except msgspec.DecodeError:  # ValidationError included
        return None
    return command if isinstance(command, dict) else None


def dead_letter(
    stream: DeadLetterStream, entry_id: bytes, fields: dict[bytes, bytes]
) -> DeadLetter:
    """One entry of a dead-letter stream as the API shows it."""
    return DeadLetter(
        id=entry_id.decode(),
        source_stream=_text(fields, b"stream"),
        entry=_text(fields, b"entry"),
        command=_command(_DECODERS[stream], fields.get(b"c")),
        error=_text(fields, b"error"),
    )


class DeadLetterStreams:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.names = {
            "cmd": keys.dead_letters,
            "presence": keys.presence_dead_letters,
        }

    async def newest(self, stream: DeadLetterStream, count: int) -> list[DeadLetter]:
        """Up to ``count`` entries of one dead-letter stream, newest first."""
        reply = await self.redis.xrevrange(self.names[stream], count=count)
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], reply)
        return [dead_letter(stream, entry_id, fields) for entry_id, fields in entries]

    async def counts(self) -> DeadLetterCounts:
        """How many entries each dead-letter stream holds (it is trimmed near 10,000)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.names["cmd"])
            pipe.xlen(self.names["presence"])
            cmd, presence = await pipe.execute()
        return DeadLetterCounts(cmd=int(cmd), presence=int(presence))
