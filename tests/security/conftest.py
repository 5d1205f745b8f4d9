"""Fixtures shared by the hardening tests."""

import pytest
from celery import current_app

CLOSED_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def broker_down():
    """The Celery app publishes to a closed port (its connection pools rebuilt for it)."""
    app = current_app
    before = app.conf.broker_url

    def use(url: str) -> None:
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    use(CLOSED_BROKER)
    yield
    use(before)
