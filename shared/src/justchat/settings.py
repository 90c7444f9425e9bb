"""Settings from the environment: one frozen struct, built once in ``main()`` and passed down.

Every variable, its default and its meaning is listed in ``FIELDS`` (the README's configuration
table is generated from the same list, so the two cannot drift apart).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from msgspec import Struct

from justchat.errors import ConfigError


class Settings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/justchat"
    redis_prefix: str = "jc:"
    jwt_secret: str = ""
    token_ttl_s: int = 900
    host: str = "127.0.0.1"
    port: int = 8000
    gateway_public_url: str = ""
    public_ws_url: str = ""
    partitions: int = 8
    history_limit: int = 50
    presence_ttl_s: float = 30.0
    heartbeat_s: float = 5.0
    lease_ttl_ms: int = 10_000
    handshake_timeout_s: float = 10.0
    max_frame_bytes: int = 65_536
    max_message_chars: int = 4_000
    send_queue_frames: int = 1_024
    send_buffer_bytes: int = 1_048_576
    recent_window: int = 1_000
    typing_interval_ms: int = 2_000
    members_interval_ms: int = 1_000
    send_rate_per_s: float = 5.0
    send_burst: int = 20
    admin_username: str = ""
    admin_password: str = ""
    cors_origins: str = "*"
    log_format: str = "text"
    log_level: str = "INFO"


# name -> (environment variable, meaning); the order is the README's.
FIELDS: Final[dict[str, tuple[str, str]]] = {
    "redis_url": ("REDIS_URL", "Redis (or Valkey) URL"),
    "database_url": ("DATABASE_URL", "PostgreSQL URL"),
    "redis_prefix": ("JUSTCHAT_REDIS_PREFIX", "prefix of every Redis key and topic"),
    "jwt_secret": (
        "JUSTCHAT_JWT_SECRET",
        "HS256 secret shared by gateways and dashboard (32+ chars)",
    ),
    "token_ttl_s": ("JUSTCHAT_TOKEN_TTL_S", "lifetime of login tokens"),
    "host": ("JUSTCHAT_HOST", "address a service listens on"),
    "port": ("JUSTCHAT_PORT", "port a service listens on"),
    "gateway_public_url": (
        "JUSTCHAT_GATEWAY_PUBLIC_URL",
        "this gateway's WebSocket URL as clients reach it",
    ),
    "public_ws_url": (
        "JUSTCHAT_PUBLIC_WS_URL",
        "the load balancer's WebSocket URL; /gateway returns it when set",
    ),
    "partitions": ("JUSTCHAT_PARTITIONS", "command stream partitions (fixed for a deployment)"),
    "history_limit": ("JUSTCHAT_HISTORY_LIMIT", "messages sent on channel_join"),
    "presence_ttl_s": ("JUSTCHAT_PRESENCE_TTL_S", "a dead gateway's members vanish after this"),
    "heartbeat_s": ("JUSTCHAT_HEARTBEAT_S", "gateway heartbeat interval"),
    "lease_ttl_ms": ("JUSTCHAT_LEASE_TTL_MS", "partition lease lifetime of a chat-service replica"),
    "handshake_timeout_s": ("JUSTCHAT_HANDSHAKE_TIMEOUT_S", "time allowed for the hello frame"),
    "max_frame_bytes": (
        "JUSTCHAT_MAX_FRAME_BYTES",
        "largest client frame; larger closes with 1009",
    ),
    "max_message_chars": ("JUSTCHAT_MAX_MESSAGE_CHARS", "longest chat message"),
    "send_queue_frames": (
        "JUSTCHAT_SEND_QUEUE_FRAMES",
        "live frames a joining connection may have waiting for its history before it is cut off",
    ),
    "send_buffer_bytes": (
        "JUSTCHAT_SEND_BUFFER_BYTES",
        "bytes a connection may leave unread before it is cut off (close 1013)",
    ),
    "recent_window": ("JUSTCHAT_RECENT_WINDOW", "messages per channel kept in Redis for resume"),
    "typing_interval_ms": (
        "JUSTCHAT_TYPING_INTERVAL_MS",
        "a user's typing is broadcast at most once per this, per channel",
    ),
    "members_interval_ms": (
        "JUSTCHAT_MEMBERS_INTERVAL_MS",
        "after a burst of 3, channel_members is broadcast at most once per this, per channel;"
        " join/leave frames wait for their list (0: every change at once)",
    ),
    "send_rate_per_s": (
        "JUSTCHAT_SEND_RATE_PER_S",
        "messages per second a user may send, across all its connections",
    ),
    "send_burst": (
        "JUSTCHAT_SEND_BURST",
        "messages a user may send at once before the rate applies",
    ),
    "admin_username": (
        "JUSTCHAT_ADMIN_USERNAME",
        "the first admin: created at start by dashboard-service if absent",
    ),
    "admin_password": ("JUSTCHAT_ADMIN_PASSWORD", "that admin's password (used only to create it)"),
    "cors_origins": ("JUSTCHAT_CORS_ORIGINS", "comma-separated origins allowed by the REST API"),
    "log_format": ("JUSTCHAT_LOG_FORMAT", "`text` or `json`"),
    "log_level": ("JUSTCHAT_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR"),
}

MIN_SECRET_CHARS: Final = 32


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment, validated; raise ``ConfigError`` with the reason."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {
        name: environ[var] for name, (var, _) in FIELDS.items() if environ.get(var, "") != ""
    }
    raw.update(overrides)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from exc
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(len(s.jwt_secret) >= MIN_SECRET_CHARS, "JUSTCHAT_JWT_SECRET must be set, 32+ characters")
    need(s.redis_url.startswith(("redis://", "rediss://", "unix://")), "REDIS_URL must be redis://")
    need(
        s.database_url.startswith(("postgresql://", "postgres://")),
        "DATABASE_URL must be postgresql://",
    )
    need(s.token_ttl_s >= 1, "JUSTCHAT_TOKEN_TTL_S must be positive")
    need(
        s.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        "JUSTCHAT_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    need(1 <= s.partitions <= 1024, "JUSTCHAT_PARTITIONS must be 1..1024")
    need(1 <= s.history_limit <= 1000, "JUSTCHAT_HISTORY_LIMIT must be 1..1000")
    need(
        s.heartbeat_s > 0 and s.presence_ttl_s > s.heartbeat_s,
        "JUSTCHAT_PRESENCE_TTL_S must exceed JUSTCHAT_HEARTBEAT_S > 0",
    )
    need(s.lease_ttl_ms >= 300, "JUSTCHAT_LEASE_TTL_MS must be at least 300")
    need(s.handshake_timeout_s > 0, "JUSTCHAT_HANDSHAKE_TIMEOUT_S must be positive")
    need(
        1024 <= s.max_frame_bytes <= 16 * 1024 * 1024,
        "JUSTCHAT_MAX_FRAME_BYTES must be 1 KiB..16 MiB",
    )
    need(1 <= s.max_message_chars <= s.max_frame_bytes, "JUSTCHAT_MAX_MESSAGE_CHARS out of range")
    need(s.send_queue_frames >= 8, "JUSTCHAT_SEND_QUEUE_FRAMES must be at least 8")
    need(s.send_buffer_bytes >= 65_536, "JUSTCHAT_SEND_BUFFER_BYTES must be at least 64 KiB")
    need(s.recent_window >= 0, "JUSTCHAT_RECENT_WINDOW must not be negative")
    need(s.typing_interval_ms >= 1, "JUSTCHAT_TYPING_INTERVAL_MS must be positive")
    need(s.members_interval_ms >= 0, "JUSTCHAT_MEMBERS_INTERVAL_MS must not be negative")
    need(
        s.send_rate_per_s > 0 and s.send_burst >= 1,
        "JUSTCHAT_SEND_RATE_PER_S must be positive and JUSTCHAT_SEND_BURST at least 1",
    )
    need(
        bool(s.admin_username) == bool(s.admin_password),
        "JUSTCHAT_ADMIN_USERNAME and JUSTCHAT_ADMIN_PASSWORD go together",
    )
    need(s.log_format in ("text", "json"), "JUSTCHAT_LOG_FORMAT must be text or json")
    need(0 < s.port < 65536, "JUSTCHAT_PORT must be a TCP port")


def generate_secret() -> str:
    return secrets.token_urlsafe(48)
