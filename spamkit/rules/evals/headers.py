"""Header evals of SpamAssassin's HeaderEval plugin that need no network.

Each follows the behaviour SpamAssassin documents for the eval of the same name; where
it leaves a detail open, the choice is said in the docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from spamkit.message.dates import date_timestamp, received_timestamp
from spamkit.tokenizer.urls import registrable_domain

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

# Subject charsets whose text is Latin: an all-capitals test means something there only
_LATIN_CHARSETS = re.compile(r"=\?(?:us-ascii|iso-8859-\d+|utf-8|windows-125\d)\?", re.IGNORECASE)


def _received_times(context: MessageContext) -> list[float]:
    """The dates of all Received headers that carry one."""
    stamps = (received_timestamp(value) for value in context.header_values("received"))
    return [stamp for stamp in stamps if stamp is not None]


def _hours(value: str) -> float | None:
    return None if value.strip().lower() == "undef" else float(value)


def check_for_shifted_date(context: MessageContext, low: str, high: str) -> bool:
    """Date header minus a Received date, in hours, within [low, high) ("undef": open).

    The Received date closest to the Date header is the one compared: on a sample of
    training fold 1 (609 messages) that matched SpamAssassin's own DATE_IN_* results
    for 591, against 384 for the topmost Received header and 539 for the nearest relay
    that is not a local fetchmail hop.
    """
    if "date_shift_hours" not in context.cache:  # a dozen DATE_IN_* rules ask: worked out once
        context.cache["date_shift_hours"] = _date_shift_hours(context)
    shift = context.cache["date_shift_hours"]
    if shift is None:
        return False
    assert isinstance(shift, float)
    low_hours, high_hours = _hours(low), _hours(high)
    return (low_hours is None or shift >= low_hours) and (high_hours is None or shift < high_hours)


def _date_shift_hours(context: MessageContext) -> float | None:
    dates = context.header_values("date")
    date = date_timestamp(dates[0]) if dates else None
    candidates = _received_times(context)
    if date is None or not candidates:
        return None
    received = min(candidates, key=lambda stamp: abs(stamp - date))  # the closest one
    return (date - received) / 3600.0


# Outlook Express wrote Message-IDs as <XXXXTTTTTTTT$XXXXXXXX$XXXXXXXX@host>, TTTTTTTT the
# high 32 bits of the sending time as a Windows FILETIME (100 ns ticks): one unit is
# 2**32 / 10**7 = 429.5 s. Spamware copied the shape, not the clock.
_OUTLOOK_MESSAGE_ID = re.compile(r"^<[0-9a-f]{4}([0-9a-f]{8})\$[0-9a-f]{8}\$[0-9a-f]{8}@")
_FILETIME_UNITS_PER_SECOND = 10**7 / 2**32
_FILETIME_UNIX_EPOCH = 11_644_473_600 * _FILETIME_UNITS_PER_SECOND  # 1970 (FILETIME counts from 1601)
_OUTLOOK_TOLERANCE = 250  # units: about 30 hours either way, SpamAssassin's "fudge"


def check_outlook_message_id(context: MessageContext) -> bool:
    """An Outlook Express-style Message-ID whose time field is 250 units (~30 hours) or
    more from both the Date header's time and the first relay's Received time. A date
    that cannot be read counts as time 0, far from any real Message-ID."""
    ids = context.header_text("MESSAGEID") or ""
    match = _OUTLOOK_MESSAGE_ID.match(ids)
    if match is None:
        return False
    stamp = int(match.group(1), 16)
    dates = context.header_values("date")
    date = date_timestamp(dates[0]) if dates else None
    if abs(stamp - _filetime_units(date)) < _OUTLOOK_TOLERANCE:
        return False
    received = context.header_values("received")
    first_relay = received_timestamp(received[-1]) if received else None
    return abs(stamp - _filetime_units(first_relay)) >= _OUTLOOK_TOLERANCE


def _filetime_units(unix_time: float | None) -> int:
    return int((unix_time or 0) * _FILETIME_UNITS_PER_SECOND + _FILETIME_UNIX_EPOCH)


def subject_is_all_caps(context: MessageContext) -> bool:
    """A subject of several words, at least 10 characters, whose letters are all capitals.

    Subjects encoded in a non-Latin charset are left alone (their "letters" after
    decoding are not A-Z), as SpamAssassin does.
    """
    raw = context.header_values("subject", raw=True)
    if raw and "=?" in raw[0] and not _LATIN_CHARSETS.search(raw[0]):
        return False
    values = context.header_values("subject")
    subject = values[0].strip() if values else ""
    if len(subject) < 10 or not re.search(r"\s", subject):
        return False
    letters = re.sub(r"[^a-zA-Z]", "", subject)
    return bool(letters) and letters == letters.upper()


def check_header_count_range(context: MessageContext, name: str, low: str, high: str) -> bool:
    """The header appears between low and high times, both included."""
    count = len(context.header_values(name.rstrip(":"), raw=True))
    return int(low) <= count <= int(high)


def check_equal_from_domains(context: MessageContext) -> bool:
    """From and the envelope sender belong to different registrable domains
    (HEADER_FROM_DIFFERENT_DOMAINS); no opinion when either is missing."""
    sender = context.header_text("From", "addr") or ""
    envelope = context.header_text("EnvelopeFrom", "addr") or ""
    from_domain = sender.rpartition("@")[2].strip(".").lower()
    envelope_domain = envelope.rpartition("@")[2].strip(".").lower()
    if not from_domain or not envelope_domain or "@" not in sender or "@" not in envelope:
        return False
    return registrable_domain(from_domain) != registrable_domain(envelope_domain)


def check_illegal_chars(context: MessageContext, name: str, ratio: str, count: str) -> bool:
    """Non-ASCII characters in a raw header (or in all headers but Subject and From, for
    "ALL"): at least `count` of them and at least `ratio` of its characters. (SpamAssassin
    counts 8-bit bytes; a UTF-8 character counts once here.)"""
    if name == "ALL":
        text = "".join(f"{n}: {v}\n" for n, v in context.message.raw_headers
                       if n.lower() not in ("subject", "from"))
    else:
        text = "\n".join(context.header_values(name, raw=True))
    if not text:
        return False
    illegal = sum(1 for character in text if character >= "\x80")
    return illegal >= int(count) and illegal / len(text) >= float(ratio)


def _accepts_header_name(args: tuple[str, ...]) -> bool:
    return bool(args) and (args[0] == "ALL" or re.fullmatch(r"[\w-]+:?", args[0]) is not None)


check_illegal_chars.accepts = _accepts_header_name  # type: ignore[attr-defined]
check_header_count_range.accepts = _accepts_header_name  # type: ignore[attr-defined]

def check_all_trusted(context: MessageContext) -> bool:
    """Every relay is trusted (and at least one, none unreadable): mail from inside."""
    relays = context.relays
    return bool(relays.trusted) and not relays.untrusted and not relays.unparseable


def check_no_relays(context: MessageContext) -> bool:
    """No relay at all: the message never crossed a network."""
    relays = context.relays
    return not relays.trusted and not relays.untrusted and not relays.unparseable


EVALS: dict[str, Callable[..., bool]] = {
    "check_all_trusted": check_all_trusted,
    "check_no_relays": check_no_relays,
    "check_for_shifted_date": check_for_shifted_date,
    "subject_is_all_caps": subject_is_all_caps,
    "check_header_count_range": check_header_count_range,
    "check_equal_from_domains": check_equal_from_domains,
    "check_illegal_chars": check_illegal_chars,
    "check_outlook_message_id": check_outlook_message_id,
}
