"""Request and payload limits: JSON nesting depth (without recursing), the upload cap enforced
while a multipart body streams in, and the API's limit and error answers as JSON.

Settings: ``JSON_MAX_DEPTH``, ``UPLOAD_MAX_BYTES`` and Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
"""

from __future__ import annotations

import io

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding


def json_max_depth() -> int:
    return int(getattr(settings, "JSON_MAX_DEPTH", 64))


def depth_message(limit: int) -> str:
    return f"JSON nested deeper than {limit} levels (JSON_MAX_DEPTH)"


def value_depth(value: object, stop_above: int) -> int:
    """How deeply lists and dicts nest in a decoded value (a scalar: 0), walked without
    recursion; the walk stops once past ``stop_above``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            item = item.values()
        elif kind is not list:
            continue
        deepest = max(deepest, depth)
        if deepest > stop_above:
            break
        stack.extend((child, depth + 1) for child in item if type(child) in _CONTAINERS)
    return deepest


_CONTAINERS = (dict, list)


def too_deep(data: bytes, limit: int | None = None) -> str | None:
    """Why JSON ``data`` is refused (nested deeper than ``JSON_MAX_DEPTH``), or None. Decoded
    by orjson (no Python recursion; it stops itself at 1,024 levels) only when it has more
    opening brackets than the limit; invalid JSON is left to the caller's decoder."""
    limit = json_max_depth() if limit is None else limit
    if data.count(b"[") + data.count(b"{") <= limit:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return depth_message(limit) if "depth limit" in str(exc) else None
    return depth_message(limit) if value_depth(value, limit) > limit else None


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing (400) a body nested deeper than ``JSON_MAX_DEPTH`` before
    the standard decoder (which recurses once per level) sees it. UTF-8 bodies are decoded by
    orjson, which also refuses half a surrogate pair (``"\\ud800"``: no database stores it);
    the standard decoder reads them again only for integers beyond 64 bits (orjson makes
    those floats)."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        limit = json_max_depth()
        if get_encoding(parser_context or {}).lower().replace("_", "-") not in ("utf-8", "utf8"):
            if (reason := too_deep(raw, limit)) is not None:
                raise ParseError(f"JSON parse error - {reason}")
            return self._standard(raw, media_type, parser_context)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            reason = depth_message(limit) if "depth limit" in str(exc) else str(exc)
            raise ParseError(f"JSON parse error - {reason}") from exc
        if value_depth(value, limit) > limit:
            raise ParseError(f"JSON parse error - {depth_message(limit)}")
        if _holds_a_wide_integer(value):
            return self._standard(raw, media_type, parser_context)
        return value

    def _standard(self, raw: bytes, media_type, parser_context):
        try:
            return super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc


def _holds_a_wide_integer(value: object) -> bool:
    """Whether a decoded value holds an integral float beyond 64-bit range (how orjson reads
    a wider integer), walked without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if item.is_integer() and abs(item) >= 2.0**63:
                return True
        elif kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


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
    past Django's check), answers the request limits with 413/400 naming the setting (and a
    recursion on input under ``/api/`` with 400), and turns Django's HTML error pages under
    ``/api/`` (404 for an unknown URL, 400, 500) into ``{"detail": …}`` JSON."""

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
            and not hasattr(response, "accepted_renderer")  # DRF's, as the client asked
        ):
            return JsonResponse({"detail": response.reason_phrase}, status=response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        if isinstance(exception, _LIMIT_ERRORS):
            return _limit_answer(request, exception)
        if isinstance(exception, RecursionError) and _is_api(request):
            # a fallback: a parser or serializer recursed once per level of some input
            return JsonResponse({"detail": "input nested too deeply"}, status=400)
        return None
