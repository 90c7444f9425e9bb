"""``python -m dashboard_service``: run one dashboard-service replica."""

from dashboard_service.app import create_app
from justchat.service import main as run


def main() -> None:
    run("dashboard-service", create_app)


if __name__ == "__main__":
    main()
