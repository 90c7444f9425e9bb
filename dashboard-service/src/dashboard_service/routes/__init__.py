"""Route handlers, one module per area; ``app.py`` mounts them."""

from dashboard_service.routes._common import BEARER
from dashboard_service.routes.audit import audit_log
from dashboard_service.routes.auth import AuthController
from dashboard_service.routes.channels import ChannelsController
from dashboard_service.routes.dead_letters import DeadLettersController
from dashboard_service.routes.gateway import get_gateway
from dashboard_service.routes.history import channel_messages
from dashboard_service.routes.moderation import SanctionsController
from dashboard_service.routes.ops import RequestCounter, openapi_json, ops_routes
from dashboard_service.routes.users import UsersController

__all__ = [
    "BEARER",
    "AuthController",
    "ChannelsController",
    "DeadLettersController",
    "RequestCounter",
    "SanctionsController",
    "UsersController",
    "audit_log",
    "channel_messages",
    "get_gateway",
    "openapi_json",
    "ops_routes",
]
