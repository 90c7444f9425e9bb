"""dashboard-service: accounts, login tokens, gateway discovery and the dashboard."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final, Literal

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, OpenAPI, Operation, SecurityScheme
from litestar.types import Method

from dashboard_service.audit_store import AuditStore
from dashboard_service.chat_store import ChatStore
from dashboard_service.dead_letters import DeadLetterStreams
from dashboard_service.deps import DEPENDENCIES, SERVICES, SETTINGS, Services
from dashboard_service.errors import EXCEPTION_HANDLERS
from dashboard_service.gateways import GatewayDirectory
from dashboard_service.guards import provide_current_user
from dashboard_service.moderation import DEFAULT_WAIT_S, Moderator
from dashboard_service.passwords import Passwords
from dashboard_service.presence import LivePresence
from dashboard_service.routes import (
    BEARER,
    AuthController,
    ChannelsController,
    DeadLettersController,
    RequestCounter,
    SanctionsController,
    UsersController,
    audit_log,
    channel_messages,
    get_gateway,
    openapi_json,
    ops_routes,
)
from dashboard_service.rules import InvalidInput, check_password, clean_username
from dashboard_service.store import UserStore
from dashboard_service.swagger import OfflineSwagger
from justchat import db
from justchat.errors import ConfigError
from justchat.keys import Keys
from justchat.metrics import Registry
from justchat.service import redis_client
from justchat.settings import Settings

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
# Litestar answers unknown paths under its docs path with an HTML page, so the docs live one
# level down and /api/v1/openapi.json is served by a handler of ours.
DOCS_PATH: Final = f"{API_PREFIX}/docs"
CORS_METHODS: Final[list[Method | Literal["*"]]] = ["GET", "POST", "PATCH", "DELETE", "OPTIONS"]
CORS_HEADERS: Final = ["Authorization", "Content-Type"]
# Bodies here are names, passwords and a short reason; anything near this size is abuse.
MAX_BODY_BYTES: Final = 64 * 1024


def create_app(settings: Settings, *, moderation_wait_s: float = DEFAULT_WAIT_S) -> Litestar:
    """The app; ``moderation_wait_s`` bounds how long REST moderation waits for chat-service."""
    registry = Registry()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        admin = _admin_account(settings)  # before any connection: a bad one stops start-up
        pool = await db.create_pool(settings.database_url)
        redis = redis_client(settings.redis_url)
        keys = Keys(settings.redis_prefix)
        chat = ChatStore(pool)
        try:
            services = Services(
                pool=pool,
                redis=redis,
                users=UserStore(pool),
                gateways=GatewayDirectory(redis, keys),
                passwords=await Passwords.create(),
                chat=chat,
                audit=AuditStore(pool),
                presence=LivePresence(redis, keys),
                moderator=Moderator(redis, keys, settings.partitions, wait_s=moderation_wait_s),
                dead_letters=DeadLetterStreams(redis, keys),
            )
            if admin is not None:
                await _ensure_admin(services.users, services.passwords, *admin)
            app.state[SERVICES] = services
            log.info("dashboard-service ready")
            yield
        finally:
            app.state.pop(SERVICES, None)
            await redis.aclose()
            await pool.close()

    api = Router(
        path=API_PREFIX,
        route_handlers=[
            AuthController,
            get_gateway,
            openapi_json,
            channel_messages,
            # The dashboard: each guarded by guards.require_roles("admin", "moderator").
            UsersController,
            ChannelsController,
            SanctionsController,
            audit_log,
            DeadLettersController,
        ],
    )
    app = Litestar(
        route_handlers=[api, *ops_routes(registry)],
        lifespan=[lifespan],
        state=State({SETTINGS: settings}),
        dependencies={**DEPENDENCIES, "current_user": Provide(provide_current_user)},
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[RequestCounter(registry)],
        cors_config=CORSConfig(
            allow_origins=_origins(settings.cors_origins),
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
        ),
        openapi_config=OpenAPIConfig(
            title="justchat REST API",
            version="1.0.0",
            description="Accounts, login tokens, gateway discovery and the admin dashboard"
            ' (protocol section 7). Errors are `{"detail": str}`; datetimes are UTC ISO-8601.',
            path=DOCS_PATH,
            components=Components(
                security_schemes={
                    BEARER: SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            # Its scripts and style are served here too: the page works without internet.
            render_plugins=[OfflineSwagger(DOCS_PATH)],
        ),
        request_max_body_size=MAX_BODY_BYTES,
        # uvicorn's process logging is set up by justchat.logs; Litestar must not replace it.
        logging_config=None,
    )
    _drop_litestar_400(app.openapi_schema)
    return app


def _admin_account(settings: Settings) -> tuple[str, str] | None:
    """(username, password) of the configured first admin, or None when none is configured.

    The signup rules apply; ``ConfigError`` naming the variable when they are broken.
    """
    if not settings.admin_username:
        return None  # settings validation makes the two come together
    try:
        username = clean_username(settings.admin_username)
    except InvalidInput as exc:
        raise ConfigError(f"JUSTCHAT_ADMIN_USERNAME is unfit: {exc}") from None
    try:
        check_password(settings.admin_password)
    except InvalidInput as exc:
        raise ConfigError(f"JUSTCHAT_ADMIN_PASSWORD is unfit: {exc}") from None
    return username, settings.admin_password


async def _ensure_admin(
    users: UserStore, passwords: Passwords, username: str, password: str
) -> None:
    """Create the admin account ``username`` unless a user of that name exists.

    An existing user is left as it is (password and role too): the configured password only
    bootstraps, and changes made since must survive restarts. Replicas starting together are
    safe: the insert does nothing for all but one of them.
    """
    existing = await users.by_username(username)
    if existing is not None:
        log.info(
            "the admin user %r exists already (role %s); left unchanged", username, existing.role
        )
        return
    # The SELECT above only spares a hash on every later start; the insert decides.
    created = await users.create_if_absent(username, await passwords.hash(password), role="admin")
    if created is None:
        log.info("the admin user %r was created meanwhile by another replica", username)
    else:
        log.info("created the admin user %r (JUSTCHAT_ADMIN_USERNAME)", username)


def _origins(value: str) -> list[str]:
    return [origin.strip() for origin in value.split(",") if origin.strip()] or ["*"]


def _drop_litestar_400(schema: OpenAPI) -> None:
    """Remove the 400 response Litestar documents for every handler that takes input.

    It describes Litestar's own error shape; the exception handlers answer 422 with a string
    ``detail`` instead, which each such handler documents itself.
    """
    for path_item in (schema.paths or {}).values():
        for method in ("get", "post", "patch", "put", "delete"):
            operation: Operation | None = getattr(path_item, method, None)
            if operation is not None and operation.responses is not None:
                operation.responses.pop("400", None)
