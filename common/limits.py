"""Request and payload limits: JSON nesting depth (without recursing), the upload cap enforced
while a multipart body streams in, and the API's limit and error answers as JSON.

Settings: ``JSON_MAX_DEPTH``, ``UPLOAD_MAX_BYTES`` and Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
"""

from __future__ import annotations

import io
import re

import numpy as np
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# A JSON string, from its opening quote to its closing one (or the end of the input: the match
# never fails once started, so the scan stays linear on unterminated strings).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_STEPS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")  # opening +1, closing -1 (int8)
_CHUNK = 1 << 20


def json_max_depth() -> int:
    return int(getattr(settings, "JSON_MAX_DEPTH", 64))


def nesting_depth(data: bytes, at_most: int | None = None) -> int:
    """The deepest nesting of arrays and objects in JSON ``data``, brackets inside strings
    ignored; a linear scan, no recursion. With ``at_most``, any answer ≤ ``at_most`` means
    "not deeper than that" (a cheap count of opening brackets settles most inputs)."""
    if at_most is not None and data.count(b"[") + data.count(b"{") <= at_most:
        return 0
    steps = np.frombuffer(_STRING.sub(b"", data).translate(_STEPS, _NOT_BRACKETS), dtype=np.int8)
    depth = deepest = 0
    for start in range(0, len(steps), _CHUNK):
        running = np.cumsum(steps[start : start + _CHUNK], dtype=np.int64) + depth
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
    return deepest


def too_deep(data: bytes, limit: int | None = None) -> str | None:
    """Why ``data`` is refused (nested deeper than ``JSON_MAX_DEPTH``), or None."""
    limit = json_max_depth() if limit is None else limit
    if nesting_depth(data, at_most=limit) > limit:
        return f"JSON nested deeper than {limit} levels (JSON_MAX_DEPTH)"
    return None


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing (400) a body nested deeper than ``JSON_MAX_DEPTH`` before
    decoding it (the standard decoder recurses once per level)."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        reason = too_deep(raw)
        if reason is not None:
            raise ParseError(f"JSON parse error - {reason}")
        try:
            return super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc


def upload_max_bytes() -> int:
    return int(getattr(settings, "UPLOAD_MAX_BYTES", 2 * 1024**3))


class UploadTooLarge(RequestDataTooBig):
    """A multipart body or one of its files is larger than ``UPLOAD_MAX_BYTES``."""

    setting = "UPLOAD_MAX_BYTES"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"upload larger than {limit} bytes (UPLOAD_MAX_BYTES)")


class UploadCapHandler(FileUploadHandler):
    """First of ``FILE_UPLOAD_HANDLERS``: refuses a request whose declared length, or a file
    whose received bytes, pass ``UPLOAD_MAX_BYTES``, while the body streams in (nothing more
    is read or written to disk)."""

    def _refuse(self) -> None:
        error = UploadTooLarge(upload_max_bytes())
        self.request.limit_error = error  # the answer, whichever layer meets the exception
        raise error

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length > upload_max_bytes():
            self._refuse()

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > upload_max_bytes():
            self._refuse()
        return raw_data

    def file_complete(self, file_size):
        return None


def _limit_answer(request: HttpRequest, error: Exception) -> HttpResponse:
    """413 for a body too large (naming the setting), 400 for too many fields or files."""
    too_big = isinstance(error, RequestDataTooBig)
    status = 413 if too_big else 400
    if isinstance(error, UploadTooLarge):
        setting, limit = error.setting, error.limit
    elif too_big:
        setting, limit = "DATA_UPLOAD_MAX_MEMORY_SIZE", settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    elif isinstance(error, TooManyFilesSent):
        setting, limit = "DATA_UPLOAD_MAX_NUMBER_FILES", settings.DATA_UPLOAD_MAX_NUMBER_FILES
    else:
        setting, limit = "DATA_UPLOAD_MAX_NUMBER_FIELDS", settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    what = f"more than {limit} bytes" if too_big else f"more than {limit} fields or files"
    detail = f"request body has {what} ({setting})"
    if _is_api(request):
        return JsonResponse({"detail": detail, "limit": setting, "max": limit}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


_LIMIT_ERRORS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


class RequestLimitsMiddleware:
    """Near the top of ``MIDDLEWARE``. Refuses a non-multipart body longer than
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` before any view reads it (DRF's parsers read the stream
    past Django's check), answers the request limits with 413/400 naming the setting, and
    turns any other HTML error page under ``/api/`` into ``{"detail": …}`` JSON."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and not request.content_type.startswith("multipart/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return _limit_answer(request, RequestDataTooBig())
        response = self.get_response(request)
        error = getattr(request, "limit_error", None)
        if error is not None and response.status_code == 400:
            return _limit_answer(request, error)
        if (
            _is_api(request)
            and response.status_code >= 400
            and response.get("Content-Type", "").startswith("text/html")
        ):
            return JsonResponse({"detail": response.reason_phrase}, status=response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        if isinstance(exception, _LIMIT_ERRORS):
            return _limit_answer(request, exception)
        return None
