"""Provider errors that retrying cannot fix."""

from __future__ import annotations

from bounded.http import HTTPError, HTTPStatusError

__all__ = ["QuotaExceeded", "is_quota_error"]

# Markers of exhausted credit or spend limits in OpenAI and Anthropic error bodies.
_QUOTA_MARKERS = (
    "insufficient_quota",
    "enforced_spend_limit_reached",
    "billing_hard_limit_reached",
    "spend limit",
    "specified api usage limits",
    "credit balance is too low",
)


class QuotaExceeded(HTTPStatusError):
    """The account is out of quota or over its spend limit: not retryable.

    OpenAI answers 429 with ``insufficient_quota``; Anthropic reports spend limits
    (``enforced_spend_limit_reached``) with a 429 or 400. Waiting seconds will not help.
    """


def is_quota_error(error: HTTPError) -> bool:
    """Whether an error response reports exhausted quota or a spend limit."""
    if error.status_code not in (400, 402, 403, 429):
        return False
    body = error.body.lower()
    return any(marker in body for marker in _QUOTA_MARKERS)


def as_quota_error(error: HTTPError) -> QuotaExceeded:
    """The same response as a `QuotaExceeded` (no retry_after: retrying cannot help)."""
    return QuotaExceeded(
        error.status_code,
        None,
        method=error.method,
        url=error.url,
        headers=error.headers,
        body=error.body,
    )
