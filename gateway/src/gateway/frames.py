"""Server WebSocket frames, built once per event and written as-is to every recipient.

Frames from a server are never masked (RFC 6455, section 5.1), so a text frame's header and
payload are the same bytes for every connection: fan-out encodes an event once, not once per
member. Messages are never compressed: permessage-deflate lets a sender leave any message
uncompressed (RSV1 clear), and the gateway does not negotiate it at all (see ``protocol``).
"""

from __future__ import annotations

import struct
from typing import Final

_FIN_TEXT: Final = 0x81  # FIN set, opcode 1 (text)
_LEN_16: Final = struct.Struct("!BBH")
_LEN_64: Final = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, final text frame carrying ``payload`` (UTF-8 JSON)."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 65536:
        return _LEN_16.pack(_FIN_TEXT, 126, size) + payload
    return _LEN_64.pack(_FIN_TEXT, 127, size) + payload
