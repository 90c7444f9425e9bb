"""``python -m gateway``: run one gateway replica."""

from gateway.app import create_app
from justchat.service import main as run


def main() -> None:
    run("gateway", create_app, ws="websockets-sansio", ws_ping_interval=20.0, ws_ping_timeout=20.0)


if __name__ == "__main__":
    main()
