"""``python -m gateway``: run one gateway replica."""

from gateway.app import create_app
from gateway.protocol import GatewayProtocol
from justchat.service import main as run


def main() -> None:
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
