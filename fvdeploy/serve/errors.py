"""The service's answers to bad requests: each is an :class:`ApiError` with an HTTP status and a
one-line message, sent as ``{"error": "<one line>"}`` (docs/design.md, Service). Routes and the
service layer raise them; one exception handler in ``serve.app`` writes them. Bad input is never
a 500: a 500 means a bug in fvdeploy."""

from __future__ import annotations

from ..errors import FvdeployError


class ApiError(FvdeployError):
    """An answer other than success: ``status`` (HTTP), ``message`` (one line), ``headers``."""

    status = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(one_line(message))
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class RequestTimeout(ApiError):
    status = 408


class TooLarge(ApiError):
    status = 413


class Unprocessable(ApiError):
    """The request was read, but the video (or URL) could not be classified: 422."""

    status = 422


class TooMany(ApiError):
    """Past ``--max-jobs`` or ``--max-streams``: 429 with ``Retry-After`` (seconds)."""

    status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


class Unavailable(ApiError):
    """Not ready yet, or shutting down: 503 with ``Retry-After``."""

    status = 503

    def __init__(self, message: str, retry_after_s: float = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


def one_line(message: object) -> str:
    """The first line of ``message``, at most 500 characters (an answer never carries a traceback)."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else "error"
    return text if len(text) <= 500 else text[:497] + "..."
