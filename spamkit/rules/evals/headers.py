"""Header evals of SpamAssassin's HeaderEval plugin that need no network.

Each follows the behaviour SpamAssassin documents for the eval of the same name; where
it leaves a detail open, the choice is said in the docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from spamkit.lazyregex import LazyPattern
from spamkit.rules.sa_dates import RECEIVED_DATE, date_header_time, parse_date

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

# a domain's last two labels, the part of it SpamAssassin compares
_LAST_TWO_LABELS = LazyPattern(r"^.+\.([^.]+\.[^.]+)$", re.DOTALL)
# Subject charsets whose text is Latin: an all-capitals test means something there only
_LATIN_CHARSETS = LazyPattern(r"=\?(?:us-ascii|iso-8859-\d+|utf-8|windows-125\d)\?", re.IGNORECASE)


def _bound(value: str) -> float | None:
    """A range end as rules write it: a number, or "undef" for none."""
    return None if value.strip().lower() == "undef" else float(value)


def check_for_shifted_date(context: MessageContext, low: str, high: str) -> bool:
    """Date header minus a Received date, in hours, within [low, high) ("undef": open).

    As SpamAssassin works it out: the date is Resent-Date's, else Date's; the Received
    dates are those of every Received header but a local fetchmail handover on top, the
    oldest left out when it equals the Date; the closest of them is compared. With no
    date or no Received date the shift is 0.
    """
    if "date_shift_hours" not in context.cache:  # a dozen DATE_IN_* rules ask: worked out once
        context.cache["date_shift_hours"] = _date_shift_hours(context)
    shift = context.cache["date_shift_hours"]
    assert isinstance(shift, float)
    low_hours, high_hours = _bound(low), _bound(high)
    return (low_hours is None or shift >= low_hours) and (high_hours is None or shift < high_hours)


# the top Received lines of a mailbox fetched with fetchmail: a local handover, then the fetch
_LOCAL_HANDOVER = LazyPattern(r"\bfrom (?:localhost\s|(?:\S+ ){1,2}\S*\b127\.0\.0\.1\b)|qmail \d+ invoked by uid \d+")
_FETCHMAIL = LazyPattern(r"\bby localhost with \w+ \(fetchmail-[\d.]+")


def _date_shift_hours(context: MessageContext) -> float:
    date = date_header_time({name: context.header_values(name) for name in ("resent-date", "date")})
    if date is None:
        return 0.0
    received = [value for value in context.header_values("received") if value.strip()]
    local = 1 if received and _LOCAL_HANDOVER.search(received[0]) else 0
    if len(received) > local and _FETCHMAIL.search(received[local]):
        received = received[local + 1:]  # the fetch, and the handover above it
    stamps = [stamp for value in received if (found := RECEIVED_DATE.search(value))
              and (stamp := parse_date(found.group(1))) is not None]
    if not stamps:
        return 0.0
    shifts = [date - stamp for stamp in stamps]
    if len(shifts) > 1 and shifts[-1] == 0:  # the oldest hop, stamped with the Date itself
        shifts.pop()
    return min(shifts, key=abs) / 3600.0


# Outlook Express wrote Message-IDs as <XXXXTTTTTTTT$XXXXXXXX$XXXXXXXX@host>, TTTTTTTT the
# high 32 bits of the sending time as a Windows FILETIME (100 ns ticks): one unit is
# 2**32 / 10**7 = 429.5 s. Spamware copied the shape, not the clock.
_OUTLOOK_MESSAGE_ID = LazyPattern(r"^<[0-9a-f]{4}([0-9a-f]{8})\$[0-9a-f]{8}\$[0-9a-f]{8}@")
_FILETIME_UNITS_PER_SECOND = 10**7 / 2**32
_FILETIME_UNIX_EPOCH = 11_644_473_600 * _FILETIME_UNITS_PER_SECOND  # 1970 (FILETIME counts from 1601)
_OUTLOOK_TOLERANCE = 250  # units: about 30 hours either way, SpamAssassin's "fudge"


def check_outlook_message_id(context: MessageContext) -> bool:
    """An Outlook Express-style Message-ID whose time field is 250 units (~30 hours) or
    more from both the Date header's time and the Received headers' (SpamAssassin reads
    them all as one date: the topmost hop's). A date that cannot be read counts as time
    0, far from any real Message-ID."""
    ids = context.header_text("MESSAGEID") or ""
    match = _OUTLOOK_MESSAGE_ID.match(ids)
    if match is None:
        return False
    stamp = int(match.group(1), 16)
    date = parse_date(context.header_text("Date") or "")
    if abs(stamp - _filetime_units(date)) < _OUTLOOK_TOLERANCE:
        return False
    # (SpamAssassin reads all the Received headers as one date: the first date in them,
    # the topmost hop's)
    received = parse_date("\n".join(context.header_values("received")))
    return abs(stamp - _filetime_units(received)) >= _OUTLOOK_TOLERANCE


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
    """From and the envelope sender end in different two-label domains
    (HEADER_FROM_DIFFERENT_DOMAINS); no opinion when either is missing.

    The last two labels, as SpamAssassin compares them, not the registrable domain:
    its score was set on that reading (mail.example.co.uk and list.other.co.uk are the
    same "co.uk" to it). Before, with registrable domains and Return-Path as the only
    envelope, the rule hit 44 test-fold ham SpamAssassin does not and missed 26 spam it
    hits (docs/decisions/0038).
    """
    sender = context.header_text("From", "addr") or ""
    envelope = context.header_text("EnvelopeFrom", "addr") or ""
    from_domain, envelope_domain = _last_two_labels(sender), _last_two_labels(envelope)
    return bool(from_domain) and bool(envelope_domain) and from_domain != envelope_domain


def check_for_matching_env_and_hdr_from(context: MessageContext) -> bool:
    """The envelope sender is the From address, in any case (__ENV_AND_HDR_FROM_MATCH:
    mail its author sent, not a list's or a bounce handler's). As in SpamAssassin, two
    missing addresses match."""
    envelope = context.header_text("EnvelopeFrom", "addr") or ""
    sender = context.header_text("From", "addr") or ""
    return envelope.lower() == sender.lower()


def check_for_to_in_subject(context: MessageContext, test: str) -> bool:
    """The recipient's address ("address") or user name ("user") in the Subject, as
    "john: your account" or "Re: john" (LOCALPART_IN_SUBJECT)."""
    recipient = context.header_text("To", "addr") or ""
    if not recipient:
        return False
    subject = context.header_text("Subject") or ""
    if test == "address":
        return re.search(rf"\b{re.escape(recipient)}\b", subject, re.IGNORECASE) is not None
    user = re.escape(recipient.partition("@")[0])
    return re.search(rf"^(?:(?:re|fw):\s*(?:\w+\s+)?{user}$|(?-i:{user})\s*[,:;!?-](?:$|\s)"
                     rf"|{user}$|,\s*{user}[,:;!?-]$)", subject, re.IGNORECASE) is not None


check_for_to_in_subject.accepts = lambda args: args in (("address",), ("user",))  # type: ignore[attr-defined]

# headers whose values may hold %WORD without a mail-merge gone wrong
_TEMPLATE_EXEMPT = LazyPattern(r"^(?:X-VMS-To|X-UIDL|X-Face|To|Cc|From|Subject|References|In-Reply-To"
                               r"|(?:X-|Resent-|X-Original-)?Message-Id):", re.IGNORECASE)
_TEMPLATE_FIELD = LazyPattern(r"%[A-Z][A-Z_-]")


def check_unresolved_template(context: MessageContext) -> bool:
    """A header still holding a mail-merge field, "%FIRSTNAME" (UNRESOLVED_TEMPLATE)."""
    for line in (context.header_text("ALL") or "").split("\n"):
        if _TEMPLATE_FIELD.search(line) and not _TEMPLATE_EXEMPT.search(line):
            return True
    return False


_RATWARE_MESSAGE_ID = LazyPattern(r"<[A-Z]{28}\.([^>]+?)>")


def check_ratware_name_id(context: MessageContext) -> bool:
    """A Message-ID of 28 capitals, a dot and the From address, with a quoted display
    name before that address: one bulk mailer's mark (RATWARE_NAME_ID)."""
    match = _RATWARE_MESSAGE_ID.search(context.header_text("MESSAGEID") or "")
    if match is None:
        return False
    sender = context.header_text("From") or ""
    return re.search(rf'"[^"]+"\s*<{re.escape(match.group(1))}>', sender) is not None


def check_ratware_envelope_from(context: MessageContext) -> bool:
    """An envelope sender made of the recipient's domain and user name,
    "example.com.john@..." for john@example.com (RATWARE_EFROM). SRS addresses
    (a forwarder's rewriting) are not."""
    recipient = context.header_text("To", "addr") or ""
    envelope = context.header_text("EnvelopeFrom", "addr") or ""
    if not recipient or not envelope or re.match(r"SRS\d[=+-]", envelope, re.IGNORECASE):
        return False
    match = re.match(r"([^@]+)@(.+)$", recipient, re.DOTALL)
    if match is None or context.registry is None:
        return False
    user, domain = match.groups()
    domain = context.registry.trim_domain(domain)
    if not context.registry.is_domain_valid(domain):
        return False
    # (the dot between them is any character, as SpamAssassin writes it)
    return re.search(rf"\b{re.escape(domain)}.{re.escape(user)}@", envelope, re.IGNORECASE) is not None


def _last_two_labels(address: str) -> str:
    if "@" not in address:
        return ""
    return _LAST_TWO_LABELS.sub(r"\1", address.rpartition("@")[2].lower())


def check_illegal_chars(context: MessageContext, name: str, ratio: str, count: str) -> bool:
    """Characters RFC 2045 does not allow in a raw header (8-bit ones, and controls but
    tab and line ends), in one header or in all headers but Subject and From, for
    "ALL": at least `count` of them and at least `ratio` of its characters.

    As SpamAssassin 4.0: a header written in UTF-8 without controls is legal, whatever
    it holds (the header block decoded as UTF-8, here); one in another charset counts
    its bytes (it was decoded one character a byte); a Subject's one cent, pound or
    registered sign is let off. (Counting every 8-bit character would give raw UTF-8
    From and Subject lines FROM_ILLEGAL_CHARS and SUBJ_ILLEGAL_CHARS, 2.8 points.)"""
    if name == "ALL":
        text = "".join(f"{n}: {v}\n" for n, v in context.message.raw_headers
                       if n.lower() not in ("subject", "from"))
    else:
        text = "\n".join(context.header_values(name, raw=True))
    if not text:
        return False
    if _HEADER_CONTROL.search(text) is None and (text.isascii() or context.headers_in_utf8):
        return False
    illegal = len(_ILLEGAL_IN_HEADER.findall(text))
    if illegal and name.lower() == "subject" and sum(map(text.count, "\xa2\xa3\xae")) == 1:
        illegal -= 1
    return illegal >= int(count) and illegal / len(text) >= float(ratio)


_HEADER_CONTROL = LazyPattern(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ILLEGAL_IN_HEADER = LazyPattern(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\U0010ffff]")


def _accepts_header_name(args: tuple[str, ...]) -> bool:
    return bool(args) and (args[0] == "ALL" or re.fullmatch(r"[\w-]+:?", args[0]) is not None)


def _accepts_bounds(args: tuple[str, ...]) -> bool:
    """Two range ends, each a number or "undef"."""
    try:
        return len(args) == 2 and all(_bound(arg) is not None or arg.strip().lower() == "undef" for arg in args)
    except ValueError:
        return False


check_illegal_chars.accepts = _accepts_header_name  # type: ignore[attr-defined]
check_header_count_range.accepts = _accepts_header_name  # type: ignore[attr-defined]
check_for_shifted_date.accepts = _accepts_bounds  # type: ignore[attr-defined]

# SpamAssassin's constants for its recipient-list tests, "best experimentally derived"
_SORTED_MIN_ADDRESSES = 7
_SIMILAR_MIN_ADDRESSES = 5
_SIMILAR_PREFIX = 2
_MAX_RECIPIENTS = 256
# tried only where a run of address characters starts, so a long run with no @ is read
# once, not once a character (the same matches: a run whose start fails has none)
_RECIPIENT = LazyPattern(r"(?<![^\s<>\"',;:()])[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")


def _recipients(context: MessageContext) -> list[str]:
    """The To and Cc addresses in order (Bcc's too while there are fewer than five), an
    address repeated right after itself (in any case) taken once, at most 256."""
    found: list[str] = []
    for names in (("to", "cc"), ("bcc",)):
        for name in names:
            for value in context.header_values(name):
                found.extend(_RECIPIENT.findall(value))
        if len(found) >= _SIMILAR_MIN_ADDRESSES:
            break
    addresses: list[str] = []
    for address in found:
        if not addresses or address.lower() != addresses[-1].lower():
            addresses.append(address)
            if len(addresses) == _MAX_RECIPIENTS:
                break
    return addresses


def sorted_recipients(context: MessageContext) -> bool:
    """Seven or more recipients, in alphabetical order: a list run from a sorted
    database of harvested addresses (SORTED_RECIPS)."""
    addresses = _recipients(context)
    return len(addresses) >= _SORTED_MIN_ADDRESSES and addresses == sorted(addresses)


def similar_recipients(context: MessageContext, low: str, high: str) -> bool:
    """How alike five or more recipients are, in [low, high) ("undef": open): over every
    pair, one point when the user names start with the same two characters and one
    when different hosts do, divided by the number of pairs. Dictionary spam to
    ann@, anna@, andy@ ... scores high (SUSPICIOUS_RECIPS: 0.5 or more)."""
    if "recipients_similarity" not in context.cache:
        context.cache["recipients_similarity"] = _similarity(_recipients(context))
    similarity = context.cache["recipients_similarity"]
    assert isinstance(similarity, float)
    low_value, high_value = _bound(low), _bound(high)
    return (low_value is None or similarity >= low_value) and (high_value is None or similarity < high_value)


similar_recipients.accepts = _accepts_bounds  # type: ignore[attr-defined]


def _similarity(addresses: list[str]) -> float:
    if len(addresses) < _SIMILAR_MIN_ADDRESSES:
        return 0.0
    users = [address[:_SIMILAR_PREFIX] for address in addresses]
    hosts = [address.partition("@")[2] for address in addresses]
    host_starts = [host[:_SIMILAR_PREFIX] for host in hosts]
    hits = pairs = 0
    for i in range(len(addresses)):
        for j in range(i + 1, len(addresses)):
            hits += (users[i] == users[j]) + (host_starts[i] == host_starts[j] and hosts[i] != hosts[j])
            pairs += 1
    return hits / pairs


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
    "sorted_recipients": sorted_recipients,
    "similar_recipients": similar_recipients,
    "check_for_matching_env_and_hdr_from": check_for_matching_env_and_hdr_from,
    "check_for_to_in_subject": check_for_to_in_subject,
    "check_unresolved_template": check_unresolved_template,
    "check_ratware_name_id": check_ratware_name_id,
    "check_ratware_envelope_from": check_ratware_envelope_from,
}
