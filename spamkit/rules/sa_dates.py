"""Dates as SpamAssassin's parse_rfc822_date reads them, for the evals scored on its
reading (DATE_IN_PAST_*, DATE_IN_FUTURE_*, the Outlook Message-ID clock).

It is forgiving where the standard library is not, and the DATE_IN_* rules depend on
it: a two-digit year below 50 is 20xx and a three-digit one 1900 + it ("102", a Y2K bug
of old mailers, is 2002), a day past the month's end is the first of the next, an hour
past 23 is 23, a year past 2037 is 2037 and one before 1970 is 1970, and a date with no
zone, or a zone it does not know, is UTC.
"""

from __future__ import annotations

import calendar
import re

from spamkit.lazyregex import LazyPattern

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_MONTH = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# the day, month and year, in the three orders tried (the second, ctime's, swallows the time)
_DAY_MONTH_YEAR = (
    (LazyPattern(rf" ([0-9]+) {_MONTH} ([0-9]{{4}}) ", re.IGNORECASE), ("day", "month", "year")),
    (LazyPattern(rf" {_MONTH} +([0-9]+) [0-9]+:[0-9]+:[0-9]+ ([0-9]{{4}}) ", re.IGNORECASE), ("month", "day", "year")),
    (LazyPattern(rf" ([0-9]+) {_MONTH} ([0-9]{{2,3}}) ", re.IGNORECASE), ("day", "month", "year")),
)
_TIME = LazyPattern(r" ([0-9]?[0-9]):([0-9][0-9])(?::([0-9][0-9]))? ")
_NUMERIC_ZONE = LazyPattern(r" ([-+])([0-9]{2})([0-9]{2}) ")
_NAMED_ZONE = LazyPattern(r"\b([A-Z]{2,4}(?:-DST)?)\b")
# the zone names SpamAssassin knows, as offsets in minutes
ZONES = {
    "UT": 0, "UTC": 0, "GMT": 0, "WET": 0,
    "NDT": -150, "AST": -240, "ADT": -180, "NST": -210, "EST": -300, "EDT": -240, "CST": -360,
    "CDT": -300, "MST": -420, "MDT": -360, "PST": -480, "PDT": -420, "HST": -600, "AKST": -540,
    "AKDT": -480, "HADT": -540, "HAST": -600,
    "BST": 60, "IST": 60, "WEST": 60, "CET": 60, "CEST": 120, "EET": 120, "EEST": 180, "MSK": 180,
    "MSD": 240, "MET": 60, "MEZ": 60, "MEST": 120, "MESZ": 120,
    "BRST": -120, "BRT": -180,
    "AEST": 600, "AEDT": 660, "ACST": 570, "ACDT": 630, "AWST": 480, "NZST": 720, "NZDT": 780,
    "JST": 540, "KST": 540, "HKT": 480, "SGT": 480, "PHT": 480, "IDT": 180,
}
# a date line of a Received header: the first one in it is the one taken
RECEIVED_DATE = LazyPattern(r"(\s.?\d+ \S\S\S \d+ \d+:\d+:\d+ \S+)")


def parse_date(text: str) -> int | None:
    """A date as a Unix time, read as SpamAssassin reads it; None when it has no day,
    month and year it knows."""
    rest = re.sub(r"\s+", " ", re.sub(r", *", " ", f" {text} "))
    found: dict[str, str] = {}
    for pattern, names in _DAY_MONTH_YEAR:
        match = pattern.search(rest)
        if match:
            found = dict(zip(names, match.groups()))
            rest = rest[:match.start()] + " " + rest[match.end():]
            break
    if not found:
        return None
    day, month, year = int(found["day"]), _MONTHS[found["month"].lower()], int(found["year"])
    if len(found["year"]) == 2 and year < 50:
        year += 2000
    elif len(found["year"]) != 4:
        year += 1900
    hour = minute = second = 0
    if match := _TIME.search(rest):
        hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
        rest = rest[:match.start()] + " " + rest[match.end():]
    offset = 0
    if match := _NUMERIC_ZONE.search(rest):
        offset = (int(match.group(2)) * 60 + int(match.group(3))) * (-1 if match.group(1) == "-" else 1)
    elif match := _NAMED_ZONE.search(rest):
        offset = ZONES.get(match.group(1), 0)
    second, minute, hour = min(second, 59), min(minute, 59), min(hour, 23)
    if day > calendar.monthrange(year if 1 <= year <= 9999 else 2000, month)[1]:
        day, month = 1, month + 1
        if month > 12:
            month, year = 1, year + 1
    year = min(max(year, 1970), 2037)
    if day < 1:
        return None  # (Perl's timegm refuses day 0)
    stamp = calendar.timegm((year, month, day, hour, minute, second))
    if offset > 0 and stamp < offset * 60:  # (near 1970, a zone east of UTC)
        return 0
    return stamp - offset * 60


def date_header_time(values_by_name: dict[str, list[str]]) -> int | None:
    """The message's date: the first Resent-Date that reads, else the first Date."""
    for name in ("resent-date", "date"):
        for value in values_by_name.get(name, []):
            if value.strip() and (stamp := parse_date(value.rstrip("\n"))) is not None:
                return stamp
    return None
