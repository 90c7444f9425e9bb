"""``python -m gateway``: run one gateway replica."""

import gc
from typing import Final

from gateway.app import create_app
from gateway.protocol import GatewayProtocol
from justchat.service import main as run

# A gateway holds many long-lived objects (connections, sessions): with the default
# thresholds the collector scans them all again and again while connections pile up (10-40 %
# of the CPU during a burst of connects). Young collections less often, full ones seldom, and
# what exists at start never scanned.
GC_THRESHOLDS: Final = (20_000, 20, 100)


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    # No permessage-deflate: server frames go out uncompressed (written once for every member),
    # so a connection's zlib state (tens of KB) would buy nothing.
    run(
        "gateway",
        create_app,
        ws=GatewayProtocol,
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )


if __name__ == "__main__":
    main()
