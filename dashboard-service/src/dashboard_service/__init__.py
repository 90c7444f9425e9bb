"""dashboard-service: the REST API (accounts, login tokens, gateway discovery, dashboard)."""

from dashboard_service.app import create_app

__all__ = ["create_app"]
