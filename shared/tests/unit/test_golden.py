"""Golden files pin the wire format byte for byte.

``golden/server/<type>[.<variant>].json`` holds server frames as the gateway must write them;
``golden/client/<type>[.<variant>].json`` holds client frames as the original browser client (or
the Python client, when ``timestamp`` and ``id`` are null) sends them. Each file is one line of
compact JSON with the keys in the order ``type, timestamp, id, payload``.

Adding a frame type without a golden file fails ``test_every_*_type_has_a_golden``.
"""

from __future__ import annotations

import json
import typing
import uuid
from pathlib import Path

import msgspec
import pytest

from justchat import wire

GOLDEN = Path(__file__).parent / "golden"
SERVER_FILES = sorted((GOLDEN / "server").glob("*.json"))
CLIENT_FILES = sorted((GOLDEN / "client").glob("*.json"))
ENVELOPE_KEYS = ["type", "timestamp", "id", "payload"]

# Spelled out rather than derived, so that a renamed tag in wire.py fails here.
SERVER_CLASSES: dict[str, type[wire.ServerFrame]] = {
    "hello": wire.HelloFrame,
    "error": wire.ErrorFrame,
    "chat_send": wire.ChatSendFrame,
    "chat_react_add": wire.ReactAddFrame,
    "chat_react_remove": wire.ReactRemoveFrame,
    "chat_typing": wire.TypingFrame,
    "chat_kick": wire.KickFrame,
    "chat_mute": wire.MuteFrame,
    "chat_unmute": wire.UnmuteFrame,
    "chat_ban": wire.BanFrame,
    "chat_unban": wire.UnbanFrame,
    "channel_join": wire.JoinFrame,
    "channel_leave": wire.LeaveFrame,
    "channel_members": wire.MembersFrame,
    "channel_resumed": wire.ResumedFrame,
    "channel_history": wire.HistoryFrame,
}

# Client goldens that a conforming client may send but that do not re-encode to the same bytes:
# file name -> the payload they must decode to.
NON_CANONICAL: dict[str, wire.ClientPayload] = {
    # Integer fields accept numeric strings, as the original server did.
    "channel_join.numeric_string.json": wire.JoinIn(channel_id=8),
    # The original client sent its own ``sender``; the server ignores it.
    "chat_send.with_sender.json": wire.ChatSendIn(channel_id=8, content="hello, world"),
}


class _PayloadOnly(msgspec.Struct):
    payload: msgspec.Raw


def golden_line(path: Path) -> bytes:
    """The file's single line, without its final newline."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path.name}: must end with a newline"
    assert raw.count(b"\n") == 1, f"{path.name}: must be exactly one line"
    return raw[:-1]


def frame_type_of(path: Path) -> str:
    return path.name.split(".", 1)[0]


def raw_payload(frame: bytes) -> bytes:
    """The payload's bytes exactly as they appear in ``frame``."""
    return bytes(msgspec.json.decode(frame, type=_PayloadOnly).payload)


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


# -- shape of every golden -------------------------------------------------------------------


@pytest.mark.parametrize("path", SERVER_FILES + CLIENT_FILES, ids=ids(SERVER_FILES + CLIENT_FILES))
def test_golden_is_compact_json_in_envelope_order(path: Path) -> None:
    line = golden_line(path)
    data = json.loads(line)
    assert list(data) == ENVELOPE_KEYS
    assert data["type"] == frame_type_of(path)
    compact = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    assert line == compact


@pytest.mark.parametrize("path", SERVER_FILES, ids=ids(SERVER_FILES))
def test_server_golden_envelope_values(path: Path) -> None:
    data = json.loads(golden_line(path))
    assert data["timestamp"].endswith("Z")
    assert str(uuid.UUID(data["id"])) == data["id"]
    assert isinstance(data["payload"], dict)


def test_there_are_goldens() -> None:
    # Guards against a glob that silently matches nothing.
    assert len(SERVER_FILES) >= len(SERVER_CLASSES)
    assert len(CLIENT_FILES) >= len(wire.CLIENT_PAYLOADS)


# -- server frames ---------------------------------------------------------------------------


def test_server_classes_match_the_union() -> None:
    in_union = {cls.__struct_config__.tag: cls for cls in typing.get_args(wire.AnyServerFrame)}
    assert in_union == SERVER_CLASSES


def test_every_server_type_has_a_golden() -> None:
    assert {frame_type_of(p) for p in SERVER_FILES} == set(SERVER_CLASSES)


@pytest.mark.parametrize("path", SERVER_FILES, ids=ids(SERVER_FILES))
def test_server_golden_decodes_to_its_class(path: Path) -> None:
    frame = wire.decode_server(golden_line(path))
    assert type(frame) is SERVER_CLASSES[frame_type_of(path)]


@pytest.mark.parametrize("path", SERVER_FILES, ids=ids(SERVER_FILES))
def test_server_golden_reencodes_byte_for_byte(path: Path) -> None:
    line = golden_line(path)
    assert wire.encode_frame(wire.decode_server(line)) == line


def test_plain_chat_send_golden_has_no_extension_keys() -> None:
    """What the original client sees: exactly the original server's keys."""
    payload = json.loads(golden_line(GOLDEN / "server" / "chat_send.json"))["payload"]
    assert list(payload) == ["channel_id", "sender", "content"]
    assert list(payload["sender"]) == ["username", "is_guest"]


def test_extended_chat_send_golden_carries_the_extensions() -> None:
    frame = wire.decode_server(golden_line(GOLDEN / "server" / "chat_send.ext.json"))
    assert isinstance(frame, wire.ChatSendFrame)
    assert frame.payload.seq == 42
    assert frame.payload.client_msg_id == "c-7f3a"
    assert frame.payload.reactions == [
        wire.ReactionSummary(emote="👍", count=2, users=["alice", "bob"])
    ]


def test_plain_error_golden_has_only_the_original_key() -> None:
    """What the original client sees for an error it caused: ``detail`` alone."""
    payload = json.loads(golden_line(GOLDEN / "server" / "error.json"))["payload"]
    assert list(payload) == ["detail"]


def test_error_context_golden_names_the_failed_frame() -> None:
    frame = wire.decode_server(golden_line(GOLDEN / "server" / "error.context.json"))
    assert isinstance(frame, wire.ErrorFrame)
    assert frame.payload == wire.ErrorOut(
        detail=wire.ERR_SEND_FAILED, channel_id=8, client_msg_id="c-7f3a"
    )
    built = wire.error_frame(wire.ERR_SEND_FAILED, channel_id=8, client_msg_id="c-7f3a")
    assert raw_payload(built) == raw_payload(golden_line(GOLDEN / "server" / "error.context.json"))


def test_history_golden_decodes_messages_in_order() -> None:
    frame = wire.decode_server(golden_line(GOLDEN / "server" / "channel_history.json"))
    assert isinstance(frame, wire.HistoryFrame)
    assert [m.seq for m in frame.payload.messages] == [1, 2]
    assert frame.payload.messages[0].client_msg_id is msgspec.UNSET
    assert frame.payload.messages[1].sender == wire.UserFrom(username="Guest42", is_guest=True)
    assert frame.payload.has_more is True


# -- client frames ---------------------------------------------------------------------------


CANONICAL_CLIENT_FILES = [p for p in CLIENT_FILES if p.name not in NON_CANONICAL]


def test_every_client_type_has_a_golden() -> None:
    assert {frame_type_of(p) for p in CANONICAL_CLIENT_FILES} == set(wire.CLIENT_PAYLOADS)


def test_non_canonical_goldens_exist() -> None:
    assert set(NON_CANONICAL) <= {p.name for p in CLIENT_FILES}


def test_both_envelope_styles_are_covered() -> None:
    styles = {json.loads(golden_line(p))["id"] is None for p in CANONICAL_CLIENT_FILES}
    assert styles == {True, False}


@pytest.mark.parametrize("path", CLIENT_FILES, ids=ids(CLIENT_FILES))
def test_client_golden_decodes(path: Path) -> None:
    frame = wire.decode_client(golden_line(path))
    assert frame.type == frame_type_of(path)
    assert type(frame.payload) is wire.CLIENT_PAYLOADS[frame.type]


@pytest.mark.parametrize("path", CANONICAL_CLIENT_FILES, ids=ids(CANONICAL_CLIENT_FILES))
def test_client_golden_reencodes(path: Path) -> None:
    line = golden_line(path)
    frame = wire.decode_client(line)
    encoded = wire.encode_client(frame.type, frame.payload)
    data = json.loads(line)
    if data["timestamp"] is None and data["id"] is None:
        assert encoded == line
    else:
        # A stamped frame's timestamp and id are fresh each time: compare the payload's bytes.
        assert raw_payload(encoded) == raw_payload(line)


@pytest.mark.parametrize("name", sorted(NON_CANONICAL))
def test_non_canonical_client_golden_decodes_to(name: str) -> None:
    frame = wire.decode_client(golden_line(GOLDEN / "client" / name))
    assert frame.payload == NON_CANONICAL[name]


def test_numeric_string_channel_id_becomes_int() -> None:
    line = golden_line(GOLDEN / "client" / "channel_join.numeric_string.json")
    assert json.loads(line)["payload"]["channel_id"] == "8"
    frame = wire.decode_client(line)
    assert isinstance(frame.payload, wire.JoinIn)
    assert frame.payload.channel_id == 8
    assert type(frame.payload.channel_id) is int


def test_stamped_client_frame_decodes_back() -> None:
    payload = wire.ChatSendIn(channel_id=8, content="hi", client_msg_id="c-1")
    encoded = wire.encode_client("chat_send", payload, stamp=True)
    data = json.loads(encoded)
    assert list(data) == ENVELOPE_KEYS
    assert data["timestamp"].endswith("Z")
    uuid.UUID(data["id"])
    assert wire.decode_client(encoded).payload == payload
