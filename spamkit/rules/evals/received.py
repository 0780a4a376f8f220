"""Evals that read the Received path (SpamAssassin's HeaderEval, RelayEval and WLBLEval
plugins): a From at a big freemail provider that the path does not bear out, a HELO
naming a big provider from an address without a reverse name, a HELO address far from
the connecting one, an AOL relay name outside AOL, hops that do not join up, the
envelope sender's domain against the relay that handed the mail over, a line no format
reads.

Each follows the behaviour SpamAssassin documents for the eval of the same name, with
its exceptions for the provider's own ways of sending (webmail over HTTP, bounces,
"mail this story to a friend"); the providers' formats are those of 2002-2024 mail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from spamkit.config.endpoints import is_ip_address
from spamkit.lazyregex import LazyPattern
from spamkit.rules.relays import is_private_address

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

_IP = r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})"
_IPV4 = LazyPattern(r"\d{1,3}(?:\.\d{1,3}){3}")

# mail that crossed a list manager or MSN Groups, which drop the sender's Received lines
_EZMLM_LIST = LazyPattern(r"^contact \S+@\S+; run by ezmlm$", re.MULTILINE)
_EZMLM_DELIVERED = LazyPattern(r"^mailing list \S+@\S+", re.MULTILINE)
_QMAIL_INVOKED = LazyPattern(r"qmail \d+ invoked (?:from network|by .{3,20})\); \d+ ... \d+")
_MSN_GROUPS_RECEIVED = LazyPattern(r"from groups\.msn\.com \(\S+\.msn\.com ")

# Yahoo's own ways of sending: webmail, its SMTP service, groups, bounces, news items
_YAHOO_OWN = tuple(LazyPattern(p) for p in (
    r"by web\S+\.mail\S*\.yahoo\.com via HTTP",
    r"by sonic\S+\.consmr\.mail\S*\.yahoo\.com with HTTP",
    r"by smtp\S+\.yahoo\.com with SMTP",
    rf"from \[{_IP}\] by \S+\.(?:groups|scd|dcn)\.yahoo\.com with NNFMP",
    r"by \w+\.\w+\.yahoo\.com \(\d+\.\d+\.\d+/\d+\.\d+\.\d+\)(?: with ESMTP)? id \w+",
))
_YAHOO_BULK = LazyPattern(r"\bmailer\d+\.bulk\.scd\.yahoo\.com\b")
_YAHOO_TRUSTED_RDNS = LazyPattern(r" rdns=\S+\.yahoo\.com ")
_YAHOO_FIRST_UNTRUSTED_RDNS = LazyPattern(r"^[^\]]+ rdns=\S+\.yahoo\.com ")

# Hotmail's and Outlook.com's own lines (each with its originating-address header)
_HOTMAIL_PICKUP = "from mail pickup service by hotmail.com with Microsoft SMTPSVC;"
_HOTMAIL_OWN_WITH_IP = tuple(LazyPattern(p) for p in (
    r"from (?:\S*\.)?hotmail.com \(\S+\.hotmail(?:\.msn)?\.com[ )]",
    rf"from \S*\.hotmail.com \(\[{_IP}\][ ):]",
    r"from \S+ by \S+\.hotmail(?:\.msn)?\.com with HTTP;",
    r"from \[66\.218.\S+\] by \S+\.yahoo\.com",
))
_HOTMAIL_OWN_WITH_ORIGINATOR = tuple(LazyPattern(p) for p in (
    r"from \S*\.outbound\.protection\.outlook\.com \(\S+\.outbound\.protection\.outlook\.com[ )]",
    rf"from \S*\.(?:eur|nam)prd\d+\.prod\.outlook\.com \({_IP}\)",
))
_HOTMAIL_ORIGINATOR = LazyPattern(r"hotmail\.com|msonline-outlook")
_HOTMAIL_HELO = LazyPattern(r"(?:from |HELO |helo=)\S*hotmail\.com\b")
_MSN_GROUP_ADDRESS_END = LazyPattern(r"@groups\.msn\.com>", re.IGNORECASE)
_NON_SPACE_RUN = LazyPattern(r"\S+")
_MSN_GROUP_ID_END = LazyPattern(r"\S+@groups\.msn\.com>")
_MSN_GROUP_PICKUP = LazyPattern(r"from mail pickup service by ((?:p\d\d\.)groups\.msn\.com)\b")

# the providers whose HELO a spammer borrows; they all have reverse names
_DOTCOM_HELO = LazyPattern(r"(?:\.|^)(?:lycos\.com|lycos\.co\.uk|hotmail\.com|localhost\.com|excite\.com"
                          r"|caramail\.com|cs\.com|aol\.com|msn\.com|yahoo\.com|drizzle\.com)$", re.IGNORECASE)


def _received_text(context: MessageContext, name: str = "received") -> str:
    """All the headers of that name, white space folded to single spaces."""
    return " ".join("\n".join(context.header_values(name, raw=True)).split())


def _public_ipv4(text: str) -> bool:
    """A dotted IPv4 address outside SpamAssassin's private ranges."""
    return _IPV4.fullmatch(text) is not None and is_ip_address(text) and not is_private_address(text)


def _gated_through_received_remover(context: MessageContext) -> bool:
    """Mail whose sender's Received lines a list manager or MSN Groups dropped, or
    with no Received line at all: the forgery tests have nothing to go on."""
    mailing_list = context.header_values("mailing-list", raw=True)
    if mailing_list and _EZMLM_LIST.search("\n".join(mailing_list)):
        delivered = "\n".join(context.header_values("delivered-to", raw=True))
        if _EZMLM_DELIVERED.search(delivered) and _QMAIL_INVOKED.search(
                "\n".join(context.header_values("received", raw=True))):
            return True
    received = context.header_values("received", raw=True)
    return not received or _MSN_GROUPS_RECEIVED.search("\n".join(received)) is not None


def check_for_forged_yahoo_received_headers(context: MessageContext) -> bool:
    """From a yahoo.com address, but no Yahoo relay or Yahoo way of sending in the path
    (FORGED_YAHOO_RCVD)."""
    sender = context.from_address
    if not re.search(r"\byahoo\.com$", sender, re.IGNORECASE):
        return False
    received = _received_text(context)
    if context.header_values("resent-from") and context.header_values("resent-to") \
            and context.header_values("x-received"):
        received = _received_text(context, "x-received")  # a resent message's own path
    if _gated_through_received_remover(context):
        return False
    pseudo = context.relays.pseudo_headers
    if _YAHOO_TRUSTED_RDNS.search(pseudo["X-Spam-Relays-Trusted"] + " ") \
            or _YAHOO_FIRST_UNTRUSTED_RDNS.search(pseudo["X-Spam-Relays-Untrusted"]):
        return False  # a bounce from Yahoo's own servers
    if any(pattern.search(received) for pattern in _YAHOO_OWN):
        return False
    return not (_YAHOO_BULK.search(received) and sender.lower().endswith("@reply.yahoo.com"))


def _hotmail_forgery(context: MessageContext) -> str:
    """"forged HELO" for a path that claims hotmail.com in a HELO without being
    Hotmail's, "no Hotmail relay" for a hotmail.com From the path does not bear out,
    or "" (worked out once: two rules ask)."""
    if "hotmail_forgery" not in context.cache:
        context.cache["hotmail_forgery"] = _find_hotmail_forgery(context)
    verdict = context.cache["hotmail_forgery"]
    assert isinstance(verdict, str)
    return verdict


def _find_hotmail_forgery(context: MessageContext) -> str:
    received = _received_text(context)
    if _HOTMAIL_PICKUP in received or _msn_groups_mail(context, received):
        return ""
    originating = context.header_values("x-originating-ip", raw=True)
    has_ip = bool(originating) and re.search(_IP, originating[0]) is not None
    originator = context.header_values("x-originatororg", raw=True)
    has_originator = bool(originator) and _HOTMAIL_ORIGINATOR.search(originator[0]) is not None
    if _gated_through_received_remover(context):
        return ""
    if has_ip and any(pattern.search(received) for pattern in _HOTMAIL_OWN_WITH_IP):
        return ""
    if has_originator and any(pattern.search(received) for pattern in _HOTMAIL_OWN_WITH_ORIGINATOR):
        return ""
    if _HOTMAIL_HELO.search(received):
        return "forged HELO"
    if re.search(r"\bhotmail\.com$", context.from_address, re.IGNORECASE):
        return "no Hotmail relay"
    return ""


def _msn_groups_mail(context: MessageContext, received: str) -> bool:
    """Mail an MSN Group sent on for a Hotmail member (Microsoft passed it straight on)."""
    pickup = _MSN_GROUP_PICKUP.search(received)
    member = _msn_group_member("\n".join(context.header_values("to"))) if pickup is not None else None
    if member is None or pickup is None:
        return False
    message_id = "\n".join(context.header_values("message-id"))
    if member == "notifications":
        return re.match(rf"<\S+@{re.escape(pickup.group(1))}>", message_id) is not None
    envelope = context.header_text("EnvelopeFrom", "addr") or ""
    prefix = f"<{member}-"  # (not compiled into a pattern: the member may be a whole long To)
    return (message_id.startswith(prefix) and _MSN_GROUP_ID_END.match(message_id, len(prefix)) is not None
            and f"{member}-bounce@groups.msn.com" in envelope)


def _msn_group_member(text: str) -> str | None:
    r"""What <(\S+)@groups\.msn\.com> (any case) captures first in `text`, found in
    linear time: as a regex it scanned to the end of the word from every "<", and a To of
    "<" repeated took seconds. The first match is in the first word (run of non-space)
    where a "<" comes at least two characters before an "@groups.msn.com>", from its
    first "<" to the last such ending (a later "<" only has less room)."""
    for word in _NON_SPACE_RUN.finditer(text):
        opening = text.find("<", word.start(), word.end())
        if opening == -1:
            continue
        endings = list(_MSN_GROUP_ADDRESS_END.finditer(text, opening + 2, word.end()))
        if endings:
            return text[opening + 1:endings[-1].start()]
    return None


def check_for_forged_hotmail_received_headers(context: MessageContext) -> bool:
    """A HELO of hotmail.com from a host that is not Hotmail's (__FORGED_HOTMAIL_RCVD)."""
    return _hotmail_forgery(context) == "forged HELO"


def check_for_no_hotmail_received_headers(context: MessageContext) -> bool:
    """From a hotmail.com address, with no Hotmail relay in the path (FORGED_HOTMAIL_RCVD2)."""
    return _hotmail_forgery(context) == "no Hotmail relay"


def check_for_no_rdns_dotcom_helo(context: MessageContext) -> bool:
    """An untrusted public relay that said HELO as a big provider (aol.com, hotmail.com,
    yahoo.com, ...) from an address with no reverse name (NO_RDNS_DOTCOM_HELO).

    As in SpamAssassin, the oldest such relay (the last one read) decides.
    """
    verdict = False
    for relay in context.relays.untrusted:
        if relay.private:
            continue
        verdict = bool(_DOTCOM_HELO.search(relay.helo)) and relay.looked_up and not relay.rdns
    return verdict


def helo_ip_mismatch(context: MessageContext) -> bool:
    """An untrusted relay said HELO with a public IPv4 address outside the /24 it
    connected from (RCVD_HELO_IP_MISMATCH)."""
    for relay in context.relays.untrusted:
        if not _public_ipv4(relay.helo):
            continue
        if _public_ipv4(relay.ip) and relay.helo != relay.ip \
                and not relay.ip.startswith(relay.helo.rsplit(".", 1)[0] + "."):
            return True
    return False


_AOL_RELAY = LazyPattern(r" rly-[a-z][a-z]\d\d\.", re.IGNORECASE)
_AOL_OWN = (LazyPattern(r"/AOL-\d+\.\d+\.\d+\)"), LazyPattern(r"ESMTP id (?:RELAY|MAILRELAY|MAILIN)"))


def check_for_fake_aol_relay_in_rcvd(context: MessageContext) -> bool:
    """A relay named like AOL's (rly-xx00.) in a path with no AOL software or AOL queue
    id in it: spammers borrow the name (__FORGED_AOL_RCVD)."""
    received = _received_text(context)
    if not _AOL_RELAY.search(received):
        return False
    return not any(pattern.search(received) for pattern in _AOL_OWN)


# RelayEval's host shape, ^\w+(?:[\w.-]+\.)+\w+$, written without its nested repeat (the
# same strings: a word character, then at least one of [\w.-], a dot, and word characters
# to the end), which backtracked without end on a "by" of "1.1.1. ... 1."
_HOST_SHAPE = LazyPattern(r"^\w[\w.-]+\.\w+$")
_LAST_LABEL_KEEPS_TWO = LazyPattern(r"(?:\S{3,}|ie|fr|de)")


def _hostname_to_domain(name: str) -> str:
    """RelayEval's rough domain of a host: the last two labels when the last one is long
    (or ie, fr, de), else the last three; an address as it is."""
    if not re.search(r"[a-zA-Z]", name):
        return name
    labels = name.split(".")
    while labels and not labels[-1]:
        labels.pop()  # (as Perl's split drops trailing empty fields)
    if len(labels) > 1 and _LAST_LABEL_KEEPS_TWO.search(labels[-1]):
        return ".".join(labels[-2:])
    if len(labels) > 2:
        return ".".join(labels[-3:])
    return name


def check_for_forged_received_trail(context: MessageContext) -> bool:
    """More than one untrusted hop whose receiving host ("by") is not the domain the
    next hop saw it connect from: a path written by the sender, not the relays
    (__FORGED_RCVD_TRAIL)."""
    relays = context.relays.untrusted
    received_by = [_hostname_to_domain(relay.by.lower()) for relay in relays]
    came_from: list[str | None] = [_hostname_to_domain(relay.rdns.lower()) for relay in relays]
    mismatches = 0
    for index, relay in enumerate(relays):
        by = received_by[index]
        if not _HOST_SHAPE.search(by):
            continue
        if re.fullmatch(r"localhost(?:\.localdomain)?", came_from[index] or "") and relay.ip == "127.0.0.1":
            came_from[index] = None  # (one machine passing mail to itself)
        previous = came_from[index - 1] if index > 0 else None
        if previous is not None and _HOST_SHAPE.search(previous) and by != previous \
                and not (by == "msn.com" and previous == "hotmail.com"):
            mismatches += 1
    return mismatches > 1


_ADDRESS_DOMAIN = LazyPattern(r"@([^@]+\.[^@]+)\Z")


def check_mailfrom_matches_rcvd(context: MessageContext) -> bool:
    """The envelope sender's registered domain is that of the first untrusted relay's
    reverse name (or, with no untrusted relay, of any trusted one's): the sender's own
    server handed the mail over (__RP_MATCHES_RCVD)."""
    envelope = context.header_text("EnvelopeFrom", "addr") or ""
    match = _ADDRESS_DOMAIN.search(envelope)
    if match is None or context.registry is None:
        return False
    relays = context.relays
    candidates = relays.untrusted[:1] or relays.trusted
    domain = context.registry.trim_domain(match.group(1).lower())
    return any(relay.rdns and context.registry.trim_domain(relay.rdns.lower()) == domain
               for relay in candidates)


def check_relays_unparseable(context: MessageContext) -> bool:
    """A Received line no known format reads (UNPARSEABLE_RELAY)."""
    return context.relays.unparseable > 0


def gated_through_received_hdr_remover(context: MessageContext) -> bool:
    """Mail that passed a Received-line remover (ezmlm, MSN Groups) or has no Received
    line at all (__GATED_THROUGH_RCVD_REMOVER)."""
    return _gated_through_received_remover(context)


def _header(context: MessageContext, name: str, modifier: str = "") -> str:
    """SpamAssassin's get(NAME): every value, each with its line break; "" when absent."""
    return context.header_text(name, modifier) or ""


_GMAIL_OWN = tuple(LazyPattern(p) for p in (
    r"by 10\.\S+ with SMTP id \S+", r"by 2002:a\d\d:\w+:\S+ with SMTP id \S+"))
_GMAIL_SUBMISSION = LazyPattern(r"by smtp\.googlemail\.com with ESMTPSA id \S+")
GOOGLE_HEADER_LENGTH_MIN = 60  # X-Gm-Message-State and X-Google-Smtp-Source, as Gmail writes them


def check_for_forged_gmail_received_headers(context: MessageContext) -> bool:
    """From a gmail.com address, without Gmail's own X-Received line, its submission
    server's Received line, or its two long state headers (FORGED_GMAIL_RCVD)."""
    if not re.search(r"\bgmail\.com$", _header(context, "From", "addr"), re.IGNORECASE):
        return False
    x_received = _header(context, "X-Received")
    if any(pattern.search(x_received) for pattern in _GMAIL_OWN):
        return False
    if _GMAIL_SUBMISSION.search(_header(context, "Received")):
        return False
    return not (len(_header(context, "X-Gm-Message-State")) >= GOOGLE_HEADER_LENGTH_MIN
                and len(_header(context, "X-Google-Smtp-Source")) >= GOOGLE_HEADER_LENGTH_MIN)


_JUNO_RELAY = LazyPattern(rf"from.*\b(?:juno|untd)\.com.*[\[(]{_IP}[\])].*by")
_JUNO_COOKIE = LazyPattern(r" cookie\.(?:juno|untd)\.com ")
_MAIL_COM_RELAY = LazyPattern(rf"from.*\bmail\.com.*\[{_IP}\].*by")
_UNTD_WEBMAIL = LazyPattern(rf"from (webmail\S+\.untd\.com) \(\1 \[{_IP}\]\) by")


def check_for_forged_juno_received_headers(context: MessageContext) -> bool:
    """From a juno.com address, without the relay, X-Originating-IP and X-Mailer that
    Juno's own mail carries (__FORGED_JUNO_RCVD). As in SpamAssassin, mail without
    X-Originating-IP always counts: its last test asks that header for an address."""
    if not re.search(r"\bjuno\.com$", _header(context, "From", "addr"), re.IGNORECASE):
        return False
    if _gated_through_received_remover(context):
        return False
    originating, mailer, received = (_header(context, name) for name in ("X-Originating-IP", "X-Mailer", "Received"))
    if originating:
        if not _JUNO_RELAY.search(received) and not _JUNO_COOKIE.search(received):
            return True
        return "Juno " not in mailer
    return True


def check_for_forged_eudoramail_received_headers(context: MessageContext) -> bool:
    """From a eudoramail.com address, but not handed over by whowhere.com with an
    X-Sender-Ip (__FORGED_EUDORAMAIL_RCVD)."""
    if not re.search(r"\beudoramail\.com$", _header(context, "From", "addr"), re.IGNORECASE):
        return False
    if _gated_through_received_remover(context):
        return False
    received = " ".join(_header(context, "Received").split())
    sender_ip = context.header_text("X-Sender-Ip")
    return not (re.search(r"by \S*whowhere.com;", received) and sender_ip is not None
                and re.search(_IP, sender_ip) is not None)


EVALS: dict[str, Callable[..., bool]] = {
    "check_for_forged_yahoo_received_headers": check_for_forged_yahoo_received_headers,
    "check_for_forged_hotmail_received_headers": check_for_forged_hotmail_received_headers,
    "check_for_no_hotmail_received_headers": check_for_no_hotmail_received_headers,
    "check_for_no_rdns_dotcom_helo": check_for_no_rdns_dotcom_helo,
    "helo_ip_mismatch": helo_ip_mismatch,
    "check_for_fake_aol_relay_in_rcvd": check_for_fake_aol_relay_in_rcvd,
    "check_for_forged_received_trail": check_for_forged_received_trail,
    "check_mailfrom_matches_rcvd": check_mailfrom_matches_rcvd,
    "check_relays_unparseable": check_relays_unparseable,
    "gated_through_received_hdr_remover": gated_through_received_hdr_remover,
    "check_for_forged_gmail_received_headers": check_for_forged_gmail_received_headers,
    "check_for_forged_juno_received_headers": check_for_forged_juno_received_headers,
    "check_for_forged_eudoramail_received_headers": check_for_forged_eudoramail_received_headers,
}
