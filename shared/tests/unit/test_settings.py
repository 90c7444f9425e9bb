"""Settings: built from an environment mapping, converted, validated, frozen."""

from __future__ import annotations

import msgspec
import pytest

from justchat import settings
from justchat.errors import ConfigError, JustchatError

SECRET = "s" * settings.MIN_SECRET_CHARS


def build(**env: str) -> settings.Settings:
    return settings.from_env({"JUSTCHAT_JWT_SECRET": SECRET, **env})


def test_defaults() -> None:
    s = build()
    assert s == settings.Settings(jwt_secret=SECRET)
    assert s.redis_prefix == "jc:"
    assert s.token_ttl_s == 900
    assert s.history_limit == 50
    assert s.presence_ttl_s == 30.0
    assert s.handshake_timeout_s == 10.0
    assert s.partitions == 8


def test_every_field_has_an_environment_variable() -> None:
    assert list(settings.FIELDS) == list(settings.Settings.__struct_fields__)
    variables = [var for var, _ in settings.FIELDS.values()]
    assert len(set(variables)) == len(variables)
    assert all(meaning for _, meaning in settings.FIELDS.values())


def test_every_variable_is_read() -> None:
    values = {
        "REDIS_URL": "redis://redis.example:6380/2",
        "DATABASE_URL": "postgresql://u@db.example/chat",
        "JUSTCHAT_REDIS_PREFIX": "x:",
        "JUSTCHAT_TOKEN_TTL_S": "60",
        "JUSTCHAT_HOST": "0.0.0.0",
        "JUSTCHAT_PORT": "9000",
        "JUSTCHAT_GATEWAY_PUBLIC_URL": "ws://gw1.example/ws",
        "JUSTCHAT_PUBLIC_WS_URL": "ws://lb.example/ws",
        "JUSTCHAT_PARTITIONS": "16",
        "JUSTCHAT_HISTORY_LIMIT": "20",
        "JUSTCHAT_PRESENCE_TTL_S": "3",
        "JUSTCHAT_HEARTBEAT_S": "0.5",
        "JUSTCHAT_LEASE_TTL_MS": "2000",
        "JUSTCHAT_HANDSHAKE_TIMEOUT_S": "2",
        "JUSTCHAT_MAX_FRAME_BYTES": "4096",
        "JUSTCHAT_MAX_MESSAGE_CHARS": "1000",
        "JUSTCHAT_SEND_QUEUE_FRAMES": "64",
        "JUSTCHAT_SEND_BUFFER_BYTES": "131072",
        "JUSTCHAT_RECENT_WINDOW": "0",
        "JUSTCHAT_TYPING_INTERVAL_MS": "500",
        "JUSTCHAT_MEMBERS_INTERVAL_MS": "0",
        "JUSTCHAT_SEND_RATE_PER_S": "2.5",
        "JUSTCHAT_SEND_BURST": "4",
        "JUSTCHAT_ADMIN_USERNAME": "root-admin",
        "JUSTCHAT_ADMIN_PASSWORD": "Admin-pass1",
        "JUSTCHAT_CORS_ORIGINS": "http://a.example,http://b.example",
        "JUSTCHAT_LOG_FORMAT": "json",
        "JUSTCHAT_LOG_LEVEL": "DEBUG",
    }
    assert set(values) | {"JUSTCHAT_JWT_SECRET"} == {v for v, _ in settings.FIELDS.values()}
    s = build(**values)
    assert s == settings.Settings(
        redis_url="redis://redis.example:6380/2",
        database_url="postgresql://u@db.example/chat",
        redis_prefix="x:",
        jwt_secret=SECRET,
        token_ttl_s=60,
        host="0.0.0.0",
        port=9000,
        gateway_public_url="ws://gw1.example/ws",
        public_ws_url="ws://lb.example/ws",
        partitions=16,
        history_limit=20,
        presence_ttl_s=3.0,
        heartbeat_s=0.5,
        lease_ttl_ms=2000,
        handshake_timeout_s=2.0,
        max_frame_bytes=4096,
        max_message_chars=1000,
        send_queue_frames=64,
        send_buffer_bytes=131072,
        recent_window=0,
        typing_interval_ms=500,
        members_interval_ms=0,
        send_rate_per_s=2.5,
        send_burst=4,
        admin_username="root-admin",
        admin_password="Admin-pass1",
        cors_origins="http://a.example,http://b.example",
        log_format="json",
        log_level="DEBUG",
    )
    assert type(s.port) is int
    assert type(s.presence_ttl_s) is float


def test_empty_variables_mean_default() -> None:
    assert build(JUSTCHAT_PORT="", REDIS_URL="") == build()


def test_unrelated_variables_are_ignored() -> None:
    assert build(PATH="/bin", PORT="1", JUSTCHAT_UNKNOWN="x") == build()


def test_overrides_win_over_the_environment() -> None:
    s = settings.from_env(
        {"JUSTCHAT_JWT_SECRET": "short", "JUSTCHAT_PORT": "1"}, jwt_secret=SECRET, port=8123
    )
    assert s.jwt_secret == SECRET
    assert s.port == 8123


def test_os_environ_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUSTCHAT_JWT_SECRET", SECRET)
    monkeypatch.setenv("JUSTCHAT_HISTORY_LIMIT", "7")
    assert settings.from_env().history_limit == 7


def test_settings_are_frozen() -> None:
    s = build()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JUSTCHAT_JWT_SECRET": ""}, "JUSTCHAT_JWT_SECRET must be set, 32+ characters"),
        ({"JUSTCHAT_JWT_SECRET": "s" * 31}, "JUSTCHAT_JWT_SECRET must be set, 32+ characters"),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL must be redis://"),
        ({"DATABASE_URL": "mysql://db/chat"}, "DATABASE_URL must be postgresql://"),
        ({"JUSTCHAT_PARTITIONS": "0"}, "JUSTCHAT_PARTITIONS must be 1..1024"),
        ({"JUSTCHAT_PARTITIONS": "1025"}, "JUSTCHAT_PARTITIONS must be 1..1024"),
        ({"JUSTCHAT_HISTORY_LIMIT": "0"}, "JUSTCHAT_HISTORY_LIMIT must be 1..1000"),
        ({"JUSTCHAT_HISTORY_LIMIT": "1001"}, "JUSTCHAT_HISTORY_LIMIT must be 1..1000"),
        (
            {"JUSTCHAT_HEARTBEAT_S": "0"},
            "JUSTCHAT_PRESENCE_TTL_S must exceed JUSTCHAT_HEARTBEAT_S > 0",
        ),
        (
            {"JUSTCHAT_PRESENCE_TTL_S": "5", "JUSTCHAT_HEARTBEAT_S": "5"},
            "JUSTCHAT_PRESENCE_TTL_S must exceed JUSTCHAT_HEARTBEAT_S > 0",
        ),
        (
            {"JUSTCHAT_PRESENCE_TTL_S": "nan"},
            "JUSTCHAT_PRESENCE_TTL_S must exceed JUSTCHAT_HEARTBEAT_S > 0",
        ),
        ({"JUSTCHAT_LEASE_TTL_MS": "299"}, "JUSTCHAT_LEASE_TTL_MS must be at least 300"),
        ({"JUSTCHAT_HANDSHAKE_TIMEOUT_S": "0"}, "JUSTCHAT_HANDSHAKE_TIMEOUT_S must be positive"),
        ({"JUSTCHAT_MAX_FRAME_BYTES": "1023"}, "JUSTCHAT_MAX_FRAME_BYTES must be 1 KiB..16 MiB"),
        (
            {"JUSTCHAT_MAX_FRAME_BYTES": str(16 * 1024 * 1024 + 1)},
            "JUSTCHAT_MAX_FRAME_BYTES must be 1 KiB..16 MiB",
        ),
        ({"JUSTCHAT_MAX_MESSAGE_CHARS": "0"}, "JUSTCHAT_MAX_MESSAGE_CHARS out of range"),
        (
            {"JUSTCHAT_MAX_FRAME_BYTES": "2048", "JUSTCHAT_MAX_MESSAGE_CHARS": "2049"},
            "JUSTCHAT_MAX_MESSAGE_CHARS out of range",
        ),
        ({"JUSTCHAT_SEND_QUEUE_FRAMES": "7"}, "JUSTCHAT_SEND_QUEUE_FRAMES must be at least 8"),
        (
            {"JUSTCHAT_SEND_BUFFER_BYTES": "65535"},
            "JUSTCHAT_SEND_BUFFER_BYTES must be at least 64 KiB",
        ),
        ({"JUSTCHAT_RECENT_WINDOW": "-1"}, "JUSTCHAT_RECENT_WINDOW must not be negative"),
        ({"JUSTCHAT_TYPING_INTERVAL_MS": "0"}, "JUSTCHAT_TYPING_INTERVAL_MS must be positive"),
        (
            {"JUSTCHAT_MEMBERS_INTERVAL_MS": "-1"},
            "JUSTCHAT_MEMBERS_INTERVAL_MS must not be negative",
        ),
        ({"JUSTCHAT_LOG_FORMAT": "xml"}, "JUSTCHAT_LOG_FORMAT must be text or json"),
        ({"JUSTCHAT_PORT": "0"}, "JUSTCHAT_PORT must be a TCP port"),
        ({"JUSTCHAT_PORT": "65536"}, "JUSTCHAT_PORT must be a TCP port"),
    ],
)
def test_invalid_values_fail_fast(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(**env)
    assert str(caught.value) == message
    assert isinstance(caught.value, JustchatError)


def test_missing_secret_fails() -> None:
    with pytest.raises(ConfigError, match="JUSTCHAT_JWT_SECRET must be set"):
        settings.from_env({})


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"JUSTCHAT_PORT": "eighty"}, "$.port"),
        ({"JUSTCHAT_PARTITIONS": "true"}, "$.partitions"),
        ({"JUSTCHAT_PRESENCE_TTL_S": "soon"}, "$.presence_ttl_s"),
        ({"JUSTCHAT_LEASE_TTL_MS": "1.5"}, "$.lease_ttl_ms"),
    ],
)
def test_unconvertible_values_name_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid setting: ") as caught:
        build(**env)
    assert field in str(caught.value)
    assert isinstance(caught.value.__cause__, msgspec.ValidationError)


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://h:1/0", "unix:///tmp/redis.sock"])
def test_redis_url_schemes(url: str) -> None:
    assert build(REDIS_URL=url).redis_url == url


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h/db"])
def test_database_url_schemes(url: str) -> None:
    assert build(DATABASE_URL=url).database_url == url


def test_boundaries_are_accepted() -> None:
    s = build(
        JUSTCHAT_PARTITIONS="1024",
        JUSTCHAT_HISTORY_LIMIT="1000",
        JUSTCHAT_LEASE_TTL_MS="300",
        JUSTCHAT_MAX_FRAME_BYTES="1024",
        JUSTCHAT_MAX_MESSAGE_CHARS="1024",
        JUSTCHAT_SEND_QUEUE_FRAMES="8",
        JUSTCHAT_SEND_BUFFER_BYTES="65536",
        JUSTCHAT_PORT="65535",
    )
    assert (
        s.partitions,
        s.history_limit,
        s.lease_ttl_ms,
        s.max_frame_bytes,
        s.max_message_chars,
        s.send_queue_frames,
        s.send_buffer_bytes,
        s.port,
    ) == (1024, 1000, 300, 1024, 1024, 8, 65536, 65535)


def test_generated_secrets_are_long_and_distinct() -> None:
    first, second = settings.generate_secret(), settings.generate_secret()
    assert len(first) >= settings.MIN_SECRET_CHARS
    assert first != second
    assert build(JUSTCHAT_JWT_SECRET=first).jwt_secret == first
