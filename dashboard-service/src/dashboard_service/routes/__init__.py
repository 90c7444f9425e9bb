"""Route handlers, one module per area; ``app.py`` mounts them."""

from dashboard_service.routes.auth import AuthController
from dashboard_service.routes.gateway import get_gateway
from dashboard_service.routes.ops import RequestCounter, openapi_json, ops_routes

__all__ = ["AuthController", "RequestCounter", "get_gateway", "openapi_json", "ops_routes"]
