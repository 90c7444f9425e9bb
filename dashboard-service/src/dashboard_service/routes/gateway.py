"""``/gateway``: the WebSocket URL a client should connect to."""

from __future__ import annotations

import logging
from typing import Final

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException
from redis.exceptions import RedisError

from dashboard_service.gateways import GatewayDirectory
from dashboard_service.routes._docs import error, ok
from dashboard_service.schemas import GatewayUrl
from justchat.settings import Settings

log = logging.getLogger(__name__)

NO_GATEWAY: Final = "No gateway available"


@get(
    "/gateway",
    tags=["gateway"],
    summary="Pick a gateway",
    description="The load balancer's URL when one is configured (JUSTCHAT_PUBLIC_WS_URL);"
    " otherwise the live gateways in turn.",
    responses={
        200: ok("A WebSocket URL", GatewayUrl(url="ws://127.0.0.1:8001/ws")),
        503: error("No gateway is alive", NO_GATEWAY),
    },
)
async def get_gateway(
    settings: NamedDependency[Settings], gateways: NamedDependency[GatewayDirectory]
) -> GatewayUrl:
    if settings.public_ws_url:
        return GatewayUrl(url=settings.public_ws_url)
    try:
        url = await gateways.pick()
    except (RedisError, OSError) as exc:
        # Without Redis no gateway can be vouched for; the client retries like any 503.
        log.warning("gateway lookup failed: %r", exc)
        raise ServiceUnavailableException(detail=NO_GATEWAY) from exc
    if url is None:
        raise ServiceUnavailableException(detail=NO_GATEWAY)
    return GatewayUrl(url=url)
