"""An HTTP ``Retry-After`` header as a delay: how long a receiver or a gateway asked the
hub to wait before it tries again (RFC 9110 §10.2.3: seconds, or an HTTP date)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


def retry_after(
    value: str | None, now: datetime | None = None, longest: timedelta | None = None
) -> timedelta | None:
    """The delay ``value`` asks for, at most ``longest``; None for no header or one that
    is neither seconds nor a date. A date in the past is no delay."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = max(when - (now or datetime.now(UTC)), timedelta(0))
    return min(delay, longest) if longest is not None else delay
