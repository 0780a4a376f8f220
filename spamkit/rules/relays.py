"""The relays a message passed through, read from its Received headers as SpamAssassin does.

SpamAssassin's rules look at the path through pseudo-headers: X-Spam-Relays-Trusted,
-Untrusted, -Internal and -External, one "[ ip=... rdns=... helo=... by=... ]" entry per
relay (RDNS_NONE: the first external relay had no reverse DNS; FSL_HELO_NON_FQDN_1,
KHOP_HELO_FCRDNS, ...), and ALL_TRUSTED / NO_RELAYS count them. This reads the Received
formats that carry nearly all mail (sendmail, Postfix, qmail, Exim and the generic
"from HELO (RDNS [IP])") - not every one of the dozens SpamAssassin knows - and draws
the trust line as SpamAssassin does when no trusted_networks are configured: relays
are trusted while they come from private addresses (or authenticated), and from the
first public one on everything is untrusted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from spamkit.config.endpoints import is_ip_address
from spamkit.lazyregex import LazyPattern

# an address as Received lines write it: IPv4, IPv6 after "IPv6:" (Postfix, sendmail), or
# IPv6 bare (Exim, Gmail's and Microsoft's own hops: "[2607:f8b0:4864:20::62d]"); a bare
# one is checked by ipaddress once matched, since the pattern takes some that are not
_IPV6_BARE = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?::\d{1,3}(?:\.\d{1,3}){3})?"
_IP = rf"\d{{1,3}}(?:\.\d{{1,3}}){{3}}|(?i:IPv6:)[0-9A-Fa-f:.]+|{_IPV6_BARE}"
IP_IN_TEXT = LazyPattern(rf"(?<![\w.:])(?:\d{{1,3}}(?:\.\d{{1,3}}){{3}}|{_IPV6_BARE})(?![\w.:])")
# tried only where a run of white space and ";" starts, and not backtracked into (a
# date cannot begin with either): a run of 95,000 ";" took minutes, tried at every one
_DATE_SUFFIX = LazyPattern(r"(?<![\s;])[\s;]++(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d+ \w{3} \d+ \d+:\d+(?::\d+)? \S+$")
_ID = LazyPattern(r" id <?([^\s<>;]{3,})")
_HELO_EQUALS = LazyPattern(r"\bhelo=([-A-Za-z0-9.^+_&:=?!@%*$\\/]+)")
_HELO_WORD = LazyPattern(r"\b(?:HELO|EHLO) ([-A-Za-z0-9.^+_&:=?!@%*$\\/]+)")
_BY = LazyPattern(r" by (\S+)")  # the whole next word, a port or "(JetMail" included
_ENVELOPE_FROM = LazyPattern(r"(?:return-path:? |envelope-(?:sender|from)[ =])(\S+)\b", re.IGNORECASE)
# what a relay's fields may not hold: SpamAssassin writes "!" for each, so a HELO of
# "[192.0.2.1]" reads "!192.0.2.1!" in the relay's entry
_STRIP_CHARS = str.maketrans(dict.fromkeys(" \t\n\r\f\v\x00#[]()<>|", "!"))
_FROM = LazyPattern(r"^\(?from ", re.IGNORECASE)
_FROM_BY_ONLY = LazyPattern(r"^from (\S+) by [^\s;]+ ?;", re.IGNORECASE)
_BRACKETED_IPV4 = LazyPattern(r"^\[[\d.]+\]$")
_SUB_HELO = LazyPattern(r"helo=(\S+)")
_SUB_IDENT = LazyPattern(r"ident=(\S*)")
# the other ways a Received line says its client logged in, after "with ESMTPA" and its
# kin, in SpamAssassin's order, each with the name its relay's auth= gets
_AUTH_FORMS: tuple[tuple[str, LazyPattern[str], Callable[[re.Match[str]], str]], ...] = (
    # (a word the line must hold, in lower case, before the pattern is tried)
    ("(auth: ", LazyPattern(r"^from .*?(?:\]\)|\)\]) \(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) \S+(?:, .*?)?\) by "),
     lambda found: found.group(1)),  # Courier
    ("authenticated", LazyPattern(r"^(?=.*authenticated)from .*?(?:\](?: \([^)]*\))?\)|\)\]) .*?\(.*?authenticated.*?\).*? by"),
     lambda found: "Sendmail"),  # Sendmail, MDaemon, webmail
    ("(authenticated as ",
     LazyPattern(r"^(?=.* \(authenticated as ).*\) by .+ \(\d{1,2}\.\d\.\d{3}(?:\.\d{1,3})?\) \(authenticated as .+\) id "),
     lambda found: "CriticalPath"),
    ("(authenticated sender: ", LazyPattern(r"\) \(Authenticated sender: \S+\) by \S+ \(([^)]+)\) with "),
     lambda found: found.group(1) if found.group(1) == "Postfix" else f"Postfix ({found.group(1)})"),  # its mail_name
    ("communigate pro", LazyPattern(r"^(?=.* \(account )(?=.*CommuniGate Pro (?:HTTP|SMTP|XIMSS|IMAP))"),
     lambda found: "Communigate"),
    ("http-dav", LazyPattern(r" with Microsoft Exchange Server HTTP-DAV\b"), lambda found: "HTTP-DAV"),
    ("(via http", LazyPattern(r"^(?=.* by ).* \(via (HTTP.?)\)(?: |;|$)", re.IGNORECASE), lambda found: found.group(1)),
)
_AUTH = LazyPattern(r" with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)", re.IGNORECASE)
_LOCALHOST = r"(?:localhost(?:\.localdomain)?|127\.0\.0\.1|::1)"
# Lines of a "from " Received header that are not a hop SpamAssassin can use, known
# formats of handovers on one machine or of MTAs that log no address: no hop, and not
# counted as unparseable (UNPARSEABLE_RELAY, ALL_TRUSTED). Tried before the formats:
# Exchange's pickup service and Exim's local deliveries; after them, _IGNORED, in
# SpamAssassin's order.
_IGNORED_FIRST = (
    (" SMTPSVC", LazyPattern(r"^mail pickup service by \S+ with Microsoft SMTPSVC$")),
    ("Exim", LazyPattern(r"\bwith local(?:-\S+)? ")),
)
_IGNORED = tuple(LazyPattern(pattern, flags) for pattern, flags in (
    (rf"^\S+ \([^\s@]+@{_LOCALHOST}\) by \S+ \(", re.IGNORECASE),
    (r"^\S+ \S+ by \S+ with local-e?smtp ", 0),
    (r"^127\.0\.0\.1 \(AVG SMTP \S+ \[\S+\]\)", 0),
    (r"^\S+@\S+ by \S+ ", 0),  # (also "... by uid N")
    (r"^Unknown/Local \(", 0),
    (rf"^{_LOCALHOST} \((?:\S+@)?{_LOCALHOST}[)\[]", re.IGNORECASE),
    (rf"^\S+ \((?:\S+@)?{_LOCALHOST}\) ", re.IGNORECASE),
    (rf"^\S+ \(\S+@\S+ \[{_LOCALHOST}\]\) ", re.IGNORECASE),
))
# ... and, when the line has no bracketed address to take either, these, whose MTAs log
# none (SpamAssassin reaches them only after its dozens of formats with an address)
_IGNORED_ADDRESSLESS = tuple(LazyPattern(pattern) for pattern in (
    r"^\S+ \(\S+\) by \S+ \(Content Technologies ",
    r"^\(AUTH: \S+\) by \S+ with ",
    r"^localhost \(localhost \[\[UNIX: localhost\]\]\) by ",
    r"^\S+\.amazon\.com by \S+\.amazon\.com with ESMTP \(peer crosscheck: ",
    r"^[^.]+ by \S+ with Novell_GroupWise",
    r"^no\.name\.available by \S+ via smtpd \(for ",
    r"^\S+ by \S+ \(.{0,100}\) with qmail-scanner",
    r"^\S+ by \S+ with local",
    r"^\S+ \(\[unix socket\]\) by \S+ \(Cyrus v\d*?\.\d*?\.\d*?\) with LMTPA",
    r"^\S+ by \S+ (?:with|via|for|\()",  # MTAs that log no address
    r"^\S+ (?:(?:with|via|for) \S+|\(unverified\)) by\b",
    r"^\S+ \(unknown\) by \S+ \(SG\) with \b",
    r"^\S+ \(\S+ \[local\]\) by \S+ \(OpenSMTPD\) with \b",
    r"^.*\(LSMTP for",
    rf"^\(\[(?i:{_LOCALHOST})\]\) with MailEnable ",
    r"^facebook\.com \([^)]+\) by facebook\.com with Thrift id \S+$",
    r"^\S+ named \S+ by gmailapi\.google\.com with HTTPREST$",
    r"^\S+ id \S+$",
    r"^\[<.*? \(Jetsend",
))
# the same for a "(from " line: sendmail's command-line submissions, Juno's queue
_IGNORED_PARENTHESIZED = (
    LazyPattern(r"^\S+@localhost\) by \S+ "),
    LazyPattern(r"^[^\s@]+@[^)]+\) by \S+\(jqueuemail\) id [^\s;]+"),
)
# The formats, tried in order: (pattern, its groups' meanings)
_FORMATS: tuple[tuple[LazyPattern[str], tuple[str, ...]], ...] = tuple(
    (LazyPattern(pattern), fields) for pattern, fields in (
        # qmail: from RDNS (HELO helo) (ident@IP) by ...
        (rf"^(\S+) \((?:HELO|EHLO) ([^ ()]*)\) \((?:(\S*)@)?\[?({_IP})\]?(?: with \S+)?\)",
         ("rdns", "helo", "ident", "ip")),
        # Exim (only where the line says Exim): from [IP] (helo=HELO) by ...
        (rf"^(?=.*Exim)\[({_IP})\] \(([^)]*)\) by ", ("ip", "sub")),
        # Exim: from RDNS ([IP] helo=HELO) by ...
        (rf"^(?=.*Exim)(\S+) \(\[({_IP})\]([^)]*)\) by ", ("rdns_exim", "ip", "sub")),
        # an MTA that looked for a reverse name and found none: from HELO (ident@[IP]) ... by HOST (
        (rf"^(\S+) \((\S*)@\[({_IP})\].*\) by (\S+) \(", ("helo", "ident", "ip", "by_given")),
        # Exchange's SMTP service, which never looks the address up: from HELO ([IP]
        # [up to 40 characters of comment]) by HOST with Microsoft SMTPSVC
        (rf"^(\S*) \(\[({_IP})\][^)]{{0,40}}\) by (\S+) with Microsoft SMTPSVC", ("helo", "ip", "by_given")),
        # qmail (and qmail-ldap): from RDNS [(HELO helo)] ([ident@][IP]) [(envelope-sender <..>)]
        # by HOST [(...)] with [...] SMTP|QMQP, no " id " after (Exchange's "SMTPSVC" is not
        # qmail): no HELO means the HELO was the reverse name; "unknown", no reverse name
        (rf"^(\S+)(?: \((?:HELO|EHLO) ([^ ()]*)\))? \((?:(\S*)@)?\[?({_IP})\]?\)"
         rf"(?: \(envelope-sender <\S+>\))? by (\S+)(?: \(.+\))* with (?:.* )?(?:SMTP|QMQP)(?!SVC)(?! id )",
         ("rdns_qmail_block", "helo_qmail_block", "ident", "ip", "by_given")),
        # Postfix and sendmail: from HELO (RDNS [IP]) or (ident@RDNS [IP]) or ([IP])
        (rf"^(\S+) \((?:(\S*)@)?(\S*) ?\[({_IP})\](?: \(may be forged\))?\)",
         ("helo", "ident", "rdns", "ip")),
        # qmail without HELO: from RDNS (ident@IP) by HOST ... (a line that ends at the
        # host is not read, as in SpamAssassin: "... by areca.wanadoo.fr; 29 Jul 2001")
        (rf"^(\S+) \((?:(\S*)@)?({_IP})\) by \S+ ", ("rdns_qmail", "ident", "ip")),
        # no HELO word: from (HELO [IP]) by HOST (MailEnable, and others)
        (rf"^\((\S+) \[({_IP})\]\) by (\S+) ", ("helo", "ip", "by_given")),
        # a bare address: from IP [(comments)] by HOST (webmail with HTTP: Hotmail,
        # SquirrelMail, Yahoo's "via HTTP"; virus scanners' handovers)
        (rf"^({_IP}) (?:\([^()]*\) )*by (\S+)", ("ip", "by_bare")),
        # Obtuse smtpd: from RDNS(IP)[, claiming to be "HELO"] via SMTP by HOST, id ...
        (rf"^(\S+)\(({_IP})\)(?:, claiming to be \"(\S+)\")? via \S+ by (\S+),",
         ("rdns", "ip", "helo", "by_given")),
        # a header that names the sender's address (originating_ip_headers), as a hop
        (rf"^X-Originating-IP: ({_IP})$", ("ip",)),
    ))
# the formats above whose MTAs write the reverse name they looked up, or its absence
# (SpamAssassin's mta_looked_up_dns): all but Exim's "[IP] (helo=)", Exchange's,
# MailEnable's, the bare address and the originating-IP hop
_LOOKING_UP_FORMATS = frozenset(names for _, names in _FORMATS
                                if {"rdns", "rdns_exim", "rdns_qmail", "rdns_qmail_block"} & set(names)
                                or names == ("helo", "ident", "ip", "by_given"))
_MAPPED_IPV4 = LazyPattern(r"^0*:0*:(?:0*:)*ffff:(\d{1,3}(?:\.\d{1,3}){3})$", re.IGNORECASE)
_ANY_BRACKETED_IP = LazyPattern(rf"\[({_IP})\]")
# SpamAssassin's IP_PRIVATE (Mail::SpamAssassin::Constants)
_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
    "100.64.0.0/10", "::1/128", "fe80::/10", "fc00::/7"))
RELAY_PSEUDO_HEADERS = frozenset({"X-Spam-Relays-Trusted", "X-Spam-Relays-Untrusted",
                                  "X-Spam-Relays-Internal", "X-Spam-Relays-External"})
# SpamAssassin's headers on either side of the trust line: (name, whether the untrusted side)
TRUST_SIDE_HEADERS = {"ALL-TRUSTED": False, "ALL-INTERNAL": False, "ALL-UNTRUSTED": True,
                      "ALL-EXTERNAL": True}
# SpamAssassin's RelayCountry: the add_header tags it sets and the pseudo-header each one
# gives, the country of each relay, most recent first, "**" for a private address and
# "XX" for one the database does not place
RELAY_COUNTRY_TAGS = {"_RELAYCOUNTRY_": "X-Relay-Countries", "_RELAYCOUNTRYEXT_": "X-Relay-Countries-External",
                      "_RELAYCOUNTRYALL_": "X-Relay-Countries-All", "_RELAYCOUNTRYAUTH_": "X-Relay-Countries-Auth"}
RELAY_COUNTRY_HEADERS = frozenset(RELAY_COUNTRY_TAGS.values())
_FETCHER = LazyPattern(r"\bwith (?:POP3|IMAP|ETRN|ODMR|SDPS)\b.*\(fetchmail-", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Relay:
    ip: str
    rdns: str
    helo: str
    by: str
    ident: str = ""
    id: str = ""
    auth: str = ""
    envfrom: str = ""
    # the line's format is one whose MTA looks the address up, so an empty rdns means
    # the address has no reverse name (SpamAssassin's no_reverse_dns), not that the
    # MTA never asked
    looked_up: bool = False

    def as_string(self, internal: bool) -> str:
        """SpamAssassin's form of the relay; rules match on it, field order included."""
        return (f"[ ip={self.ip} rdns={self.rdns} helo={self.helo} by={self.by} "
                f"ident={self.ident} envfrom={self.envfrom} intl={int(internal)} id={self.id} "
                f"auth={self.auth} msa=0 ]")

    @property
    def private(self) -> bool:
        return is_private_address(self.ip)


def is_private_address(text: str) -> bool:
    """An address in SpamAssassin's private ranges (IP_PRIVATE; not Python's
    is_private, which counts the documentation networks too); False for no address."""
    try:
        address = ipaddress.ip_address(text.removeprefix("IPv6:"))
    except ValueError:
        return False
    return any(address in network for network in _PRIVATE_NETWORKS if network.version == address.version)


def parse_received(value: str) -> Relay | Literal[False] | None:
    """One Received header's relay; False for a line that is not a hop (local
    delivery, localhost, no "from"), None for a hop whose format is not known."""
    line = " ".join(value.split())
    line = line.removesuffix(";").removesuffix(" ")  # (with the space before it, if any)
    if not _FROM.match(line) or " with local for " in line:
        return False
    if (match := _FROM_BY_ONLY.match(line)) and not _BRACKETED_IPV4.match(match.group(1)):
        return False
    line = _DATE_SUFFIX.sub("", line).replace(")by ", ") by ")
    found_id = _ID.search(line)
    helo_match = _HELO_EQUALS.search(line) or _HELO_WORD.search(line)
    # (past "from ": a client that says HELO by, written "from by (...) by us", is not a "by")
    by_match = _BY.search(line, 5 if line[:5].lower() == "from " else 0)
    lowered = line.lower()
    auth = _authenticated(line, lowered)
    rest = _FROM.sub("", line, count=1)
    envelope = _ENVELOPE_FROM.search(rest) if "envelope-" in lowered or "return-path" in lowered else None
    fields: dict[str, str] = {}
    looked_up = False
    # (the formats are of lines that start "from " in lower case, as SpamAssassin reads
    # them; of a "From " or "FROM " line only its bracketed address and "by" are read)
    lower_from = line.startswith("from ")
    if lower_from and any(needed in rest and pattern.search(rest) for needed, pattern in _IGNORED_FIRST):
        return False
    for pattern, names in _FORMATS if lower_from else ():
        match = pattern.match(rest)
        if match:
            fields = {name: group or "" for name, group in zip(names, match.groups())}
            looked_up = names in _LOOKING_UP_FORMATS
            break
    # (as in SpamAssassin, a line of a known format is a hop even when it is a handover
    # on the machine itself: "from lugh (root@localhost [127.0.0.1]) by lugh.example (8.9.3)")
    if not fields:
        ignored = _IGNORED if lower_from else _IGNORED_PARENTHESIZED if line.startswith("(from ") else ()
        if any(pattern.match(rest) for pattern in ignored):
            return False
        loose = _ANY_BRACKETED_IP.search(rest.split(" by ", 1)[0])
        if loose is None or by_match is None:  # (an address and a "by", or nothing usable)
            if lower_from and any(pattern.match(rest) for pattern in _IGNORED_ADDRESSLESS):
                return False
            return None
        first_word = rest.split(" ", 1)[0]
        # (the first word is the HELO, unless it is the bracketed address itself)
        fields = {"ip": loose.group(1), "helo": "" if first_word == loose.group(0) or not line.startswith("from ")
                  else first_word}
    helo = fields.get("helo", "")
    rdns = fields.get("rdns", "")
    if "sub" in fields:  # Exim's "(helo=... ident=...)"
        sub_helo = _SUB_HELO.search(fields["sub"])
        sub_ident = _SUB_IDENT.search(fields["sub"])
        helo = sub_helo.group(1) if sub_helo else ""
        fields["ident"] = sub_ident.group(1) if sub_ident else ""
        if "rdns_exim" in fields:
            rdns = fields["rdns_exim"]
            helo = helo or rdns
    if "rdns_qmail" in fields:
        rdns = helo = fields["rdns_qmail"]
    if "rdns_qmail_block" in fields:
        rdns = fields["rdns_qmail_block"]
        helo = fields["helo_qmail_block"] if "HELO " in line or "EHLO " in line else rdns
        looked_up = rdns.lower() != "unknown"  # qmail's "unknown": maybe never asked
    ident = fields.get("ident", "")
    if "rdns" in fields and "helo" in fields:  # sendmail's "(IDENT:user@rdns [IP])"
        ident = ident.removeprefix("IDENT:")
    rdns = rdns.rstrip(".")
    if rdns.lower() == "unknown" or rdns.startswith("["):
        rdns = ""
    if not helo and helo_match:
        helo = helo_match.group(1)
    ip = fields["ip"]
    if ip[:5].lower() == "ipv6:":
        ip = ip[5:]
    if ":" in ip and not is_ip_address(ip):
        return None  # (looked like a bare IPv6 address, was not one)
    ip = _MAPPED_IPV4.sub(r"\1", ip)  # ::ffff:192.0.2.1 is 192.0.2.1, as SpamAssassin writes it
    by = fields.get("by_bare") or fields.get("by_given") or (by_match.group(1) if by_match else "")
    return Relay(ip=_shown(ip), rdns=_shown(rdns), helo=_shown(helo), by=_shown(by.removesuffix(";")),
                 ident=_shown(ident), id=found_id.group(1) if found_id else "", auth=auth,
                 envfrom=_shown(envelope.group(1).lstrip("<").rstrip(">")) if envelope else "",
                 looked_up=looked_up)


def _shown(field: str) -> str:
    return field.translate(_STRIP_CHARS)


def _authenticated(line: str, lowered: str) -> str:
    """How the line says its client logged in ("ESMTPA", "Sendmail", ...), or ""
    (`lowered`: the line in lower case, which the caller has made already)."""
    if " by " in line and (found := _AUTH.search(line)):
        return found.group(1)
    for needed, pattern, name in _AUTH_FORMS:
        if needed in lowered and (found := pattern.search(line)):
            return name(found)
    return ""


def first_address_in(text: str) -> str | None:
    """The first IPv4 or IPv6 address written in `text` (an originating_ip_headers value,
    "[2001:db8::5]" or "192.0.2.7, 10.0.0.1"), as SpamAssassin takes it; None if none."""
    for found in IP_IN_TEXT.finditer(text):
        if is_ip_address(found.group(0)):
            return found.group(0)
    return None


class Relays:
    """A message's relays, most recent first, split at the trust line."""

    def __init__(self, received: list[str]) -> None:
        self.trusted: list[Relay] = []
        self.untrusted: list[Relay] = []
        self.unparseable = 0
        # how many lines, from the top, were read inside the trusted part (SpamAssassin's
        # last_trusted_relay_index + 1): where its ALL-UNTRUSTED and ALL-TRUSTED divide
        self.trusted_lines = 0
        in_trusted = True
        for value in received:
            if _FETCHER.search(value):  # a mail fetcher's line: not a hop, the path starts again
                if in_trusted:
                    self.trusted, self.untrusted = [], []
                    self.trusted_lines += 1
                continue
            relay = parse_received(value)
            if relay is None or relay is False:
                self.unparseable += relay is None
                self.trusted_lines += in_trusted
                continue
            if in_trusted and not (relay.private or relay.auth):
                in_trusted = False
            (self.trusted if in_trusted else self.untrusted).append(relay)
            self.trusted_lines += in_trusted

    @cached_property
    def pseudo_headers(self) -> dict[str, str]:
        trusted = " ".join(r.as_string(True) for r in self.trusted)
        untrusted = " ".join(r.as_string(False) for r in self.untrusted)
        return {"X-Spam-Relays-Trusted": trusted, "X-Spam-Relays-Internal": trusted,
                "X-Spam-Relays-Untrusted": untrusted, "X-Spam-Relays-External": untrusted}

    def country_headers(self, country: Callable[[str], str | None]) -> dict[str, str]:
        """RELAY_COUNTRY_HEADERS as RelayCountry writes them: the untrusted relays (here
        also the external ones: spamkit draws one trust line), all of them, and the
        trusted ones from the first that logged in."""
        def codes(relays: list[Relay]) -> str:
            return " ".join("**" if relay.private else country(relay.ip) or "XX" for relay in relays)

        first_auth = next((i for i, relay in enumerate(self.trusted) if relay.auth), len(self.trusted))
        untrusted = codes(self.untrusted)
        return {"X-Relay-Countries": untrusted, "X-Relay-Countries-External": untrusted,
                "X-Relay-Countries-All": codes(self.trusted + self.untrusted),
                "X-Relay-Countries-Auth": codes(self.trusted[first_auth:])}
