"""What handlers receive by name: the clients opened in the lifespan, and the settings.

The lifespan puts one ``Services`` on ``app.state``; the providers below hand its parts to any
handler that names them as parameters (``users: UserStore``, ``settings: Settings``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg
import redis.asyncio as aioredis
from litestar.datastructures import State
from litestar.di import Provide

from dashboard_service.audit_store import AuditStore
from dashboard_service.chat_store import ChatStore
from dashboard_service.dead_letters import DeadLetterStreams
from dashboard_service.gateways import GatewayDirectory
from dashboard_service.moderation import Moderator
from dashboard_service.passwords import Passwords
from dashboard_service.presence import LivePresence
from dashboard_service.store import UserStore
from justchat.settings import Settings

SETTINGS: Final = "settings"
SERVICES: Final = "services"


@dataclass(frozen=True, slots=True)
class Services:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    users: UserStore
    gateways: GatewayDirectory
    passwords: Passwords
    chat: ChatStore
    audit: AuditStore
    presence: LivePresence
    moderator: Moderator
    dead_letters: DeadLetterStreams


def services_of(state: State) -> Services:
    services: Services = state[SERVICES]
    return services


def settings_of(state: State) -> Settings:
    settings: Settings = state[SETTINGS]
    return settings


def _users(state: State) -> UserStore:
    return services_of(state).users


def _gateways(state: State) -> GatewayDirectory:
    return services_of(state).gateways


def _passwords(state: State) -> Passwords:
    return services_of(state).passwords


def _chat(state: State) -> ChatStore:
    return services_of(state).chat


def _audit(state: State) -> AuditStore:
    return services_of(state).audit


def _presence(state: State) -> LivePresence:
    return services_of(state).presence


def _moderator(state: State) -> Moderator:
    return services_of(state).moderator


def _dead_letters(state: State) -> DeadLetterStreams:
    return services_of(state).dead_letters


DEPENDENCIES: Final = {
    "settings": Provide(settings_of, sync_to_thread=False),
    "users": Provide(_users, sync_to_thread=False),
    "gateways": Provide(_gateways, sync_to_thread=False),
    "passwords": Provide(_passwords, sync_to_thread=False),
    "chat": Provide(_chat, sync_to_thread=False),
    "audit": Provide(_audit, sync_to_thread=False),
    "presence": Provide(_presence, sync_to_thread=False),
    "moderator": Provide(_moderator, sync_to_thread=False),
    "dead_letters": Provide(_dead_letters, sync_to_thread=False),
}
