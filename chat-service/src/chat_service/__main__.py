"""``python -m chat_service``: run one chat-service replica."""

from chat_service.app import create_app
from justchat.service import main as run


def main() -> None:
    run("chat-service", create_app)


if __name__ == "__main__":
    main()
