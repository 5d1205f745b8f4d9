"""``/healthz/`` for load balancers and the container healthcheck.

Answered by the first middleware, before host validation, the HTTPS redirect, sessions and
login: a probe talks to the container directly (``http://127.0.0.1:8000``), which a production
``ALLOWED_HOSTS`` and ``SECURE_SSL_REDIRECT`` would otherwise refuse. The answer says only
whether this process reaches the database: 200 ``{"status": "ok"}`` or 503.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse

PATH = "/healthz/"


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info != PATH:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        status, body = 200, {"status": "ok"}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            status, body = 503, {"status": "unavailable", "database": type(exc).__name__}
        return JsonResponse(body, status=status, headers={"Cache-Control": "no-store"})
