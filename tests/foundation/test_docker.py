"""docker/: the compose file parses and declares the stack; the entrypoint serves the product.

No Docker engine runs here, so the image's entrypoint is exercised directly: in production mode
it migrates the test database and serves pages through gunicorn + whitenoise.
"""

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support import REPO, stop, test_database_url, wait_for

DOCKER = REPO / "docker"


def test_compose_declares_the_production_stack():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {
        "web", "worker", "gpu-worker", "gpu-worker-4", "gpu-worker-8", "flower", "postgres", "redis"
    }  # fmt: skip
    assert services["worker"]["command"] == ["worker", "cpu"]
    for name, count in (("gpu-worker", 1), ("gpu-worker-4", 4), ("gpu-worker-8", 8)):
        assert services[name]["command"] == ["worker", "gpu"]
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "count": count, "capabilities": ["gpu"]}
    assert services["gpu-worker-4"]["hostname"] != services["gpu-worker-8"]["hostname"]
    assert services["web"]["environment"]["DJANGO_ENV"] == "production"
    assert "/healthz/" in " ".join(services["web"]["healthcheck"]["test"])
    assert "gunicorn" in (DOCKER / "entrypoint.sh").read_text()


def test_entrypoint_is_valid_shell():
    subprocess.run(["sh", "-n", str(DOCKER / "entrypoint.sh")], check=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_entrypoint_web_migrates_and_serves_in_production_mode(tmp_path: Path):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": test_database_url(),
        "DATA_DIR": str(tmp_path),
        "STATIC_ROOT": str(tmp_path / "static"),
        "WEB_WORKERS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=REPO,
        env=env,
        check=True,
    )
    env.update(BIND="127.0.0.1", PORT=str(port))
    server = subprocess.Popen(
        [str(DOCKER / "entrypoint.sh"), "web"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def login_page():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as reply:
                return reply.status, reply.read().decode(), dict(reply.headers)
        except OSError:
            return None

    try:
        status, body, headers = wait_for(login_page, timeout=90, interval=0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/", timeout=5) as reply:
            health = reply.status, reply.read()  # the compose healthcheck's probe
    except (AssertionError, OSError) as exc:
        raise AssertionError(f"{exc}\n{stop(server)}") from exc
    output = stop(server)
    assert health == (200, b'{"status": "ok"}'), output
    assert status == 200 and "Log in" in body, output
    assert "htmx" in body and "/static/" in body  # hashed static URL from the manifest
    assert headers.get("X-Frame-Options") == "DENY"
    assert "Strict-Transport-Security" not in headers  # only sent over HTTPS
