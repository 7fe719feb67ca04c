"""One exception hierarchy for the whole pipeline; each HTTP edge maps it to its wire format once."""

from __future__ import annotations


class LLMScopeError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(LLMScopeError):
    status, code = 400, "bad_request"


class Unauthenticated(LLMScopeError):
    status, code = 401, "unauthenticated"


class Forbidden(LLMScopeError):
    status, code = 403, "forbidden"


class NotFound(LLMScopeError):
    status, code = 404, "not_found"


class Conflict(LLMScopeError):
    status, code = 409, "conflict"


class PayloadTooLarge(LLMScopeError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(LLMScopeError):
    status, code = 415, "unsupported_media_type"


class RateLimited(LLMScopeError):
    status, code = 429, "rate_limited"


class Unavailable(LLMScopeError):
    """A dependency (broker, store) is down or slow: retryable, always with Retry-After."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, *, retry_after: int | None = 1) -> None:
        super().__init__(message, retry_after=retry_after)
