"""Dates in headers (Date:, and the one after a Received line's ";") as Unix times.

email.utils reads RFC 5322 dates, and tolerates most of what mailers write; what it
cannot read is None, never an exception. Its import (7.7 ms) waits for the first date.
"""

from __future__ import annotations

import re

# A Received line's date: day, month, year, time and zone
_RECEIVED_DATE = re.compile(r"\s(.?\d+ \S\S\S \d+ \d+:\d+:\d+ \S+)")


def date_timestamp(text: str) -> float | None:
    """An RFC 5322 date as a Unix time, or None."""
    from email.utils import mktime_tz, parsedate_tz

    parsed = parsedate_tz(text.strip())
    if parsed is None:
        return None
    try:
        return float(mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def received_timestamp(value: str) -> float | None:
    """The date a Received header carries, as a Unix time, or None."""
    match = _RECEIVED_DATE.search(" ".join(value.split()))
    return date_timestamp(match.group(1)) if match else None
