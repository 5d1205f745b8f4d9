"""Fixtures shared by the hardening tests."""

import pytest
from celery import current_app

CLOSED_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def broker_down():
    """The Celery app publishes to a closed port (its connection pools rebuilt for it). With a
    Redis broker Celery has also resolved ``broker_write_url``, which publishing prefers."""
    app = current_app
    before = (app.conf.broker_url, app.conf.broker_write_url)

    def use(url: str, write_url: str | None) -> None:
        app.conf.broker_url = url
        app.conf.broker_write_url = write_url
        app._pool = None
        app.amqp._producer_pool = None

    use(CLOSED_BROKER, CLOSED_BROKER)
    yield
    use(*before)
