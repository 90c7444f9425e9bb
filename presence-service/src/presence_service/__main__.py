"""``python -m presence_service``: run one presence-service replica."""

from justchat.service import main as run
from presence_service.app import create_app


def main() -> None:
    run("presence-service", create_app)


if __name__ == "__main__":
    main()
