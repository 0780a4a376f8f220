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

_IP = r"\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+"
_DATE_SUFFIX = re.compile(r"[\s;]+(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d+ \w{3} \d+ \d+:\d+(?::\d+)? \S+$")
_ID = re.compile(r" id <?([^\s<>;]{3,})")
_HELO_EQUALS = re.compile(r"\bhelo=([-A-Za-z0-9.^+_&:=?!@%*$\\/]+)")
_HELO_WORD = re.compile(r"\b(?:HELO|EHLO) ([-A-Za-z0-9.^+_&:=?!@%*$\\/]+)")
_BY = re.compile(r" by (\S+?)(?:[^-A-Za-z0-9;.]|$)")
_AUTH = re.compile(r" with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)", re.IGNORECASE)
_LOCALHOST = r"(?:localhost(?:\.localdomain)?|127\.0\.0\.1|::1)"
_IGNORED = (
    re.compile(rf"^{_LOCALHOST} \((?:\S+@)?{_LOCALHOST}[)\[]", re.IGNORECASE),
    re.compile(rf"^\S+ \((?:\S+@)?{_LOCALHOST}\) ", re.IGNORECASE),
    re.compile(rf"^\S+ \(\S+@\S+ \[{_LOCALHOST}\]\) ", re.IGNORECASE),
    re.compile(r"^\S+@\S+ by \S+ "),
)
# The formats, tried in order: (pattern, its groups' meanings)
_FORMATS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), fields) for pattern, fields in (
        # qmail: from RDNS (HELO helo) (ident@IP) by ...
        (rf"^(\S+) \((?:HELO|EHLO) ([^ ()]*)\) \((?:(\S*)@)?\[?({_IP})\]?(?: with \S+)?\)",
         ("rdns", "helo", "ident", "ip")),
        # Exim (only where the line says Exim): from [IP] (helo=HELO) by ...
        (rf"^(?=.*Exim)\[({_IP})\] \(([^)]*)\) by ", ("ip", "sub")),
        # Exim: from RDNS ([IP] helo=HELO) by ...
        (rf"^(?=.*Exim)(\S+) \(\[({_IP})\]([^)]*)\) by ", ("rdns_exim", "ip", "sub")),
        # Postfix and sendmail: from HELO (RDNS [IP]) or (ident@RDNS [IP]) or ([IP])
        (rf"^(\S+) \((?:(\S*)@)?(\S*) ?\[({_IP})\](?: \(may be forged\))?\)",
         ("helo", "ident", "rdns", "ip")),
        # qmail without HELO: from RDNS (ident@IP) by ...
        (rf"^(\S+) \((?:(\S*)@)?({_IP})\) by ", ("rdns_qmail", "ident", "ip")),
        # a bare address: from IP [(comments)] by HOST (webmail with HTTP: Hotmail,
        # SquirrelMail, Yahoo's "via HTTP"; virus scanners' handovers)
        (rf"^({_IP}) (?:\([^()]*\) )*by (\S+)", ("ip", "by_bare")),
        # a header that names the sender's address (originating_ip_headers), as a hop
        (rf"^X-Originating-IP: ({_IP})$", ("ip",)),
    ))
_ANY_BRACKETED_IP = re.compile(rf"\[({_IP})\]")
# SpamAssassin's IP_PRIVATE (Mail::SpamAssassin::Constants)
_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
    "100.64.0.0/10", "::1/128", "fe80::/10", "fc00::/7"))
RELAY_PSEUDO_HEADERS = frozenset({"X-Spam-Relays-Trusted", "X-Spam-Relays-Untrusted",
                                  "X-Spam-Relays-Internal", "X-Spam-Relays-External"})
# SpamAssassin's RelayCountry: the add_header tags it sets and the pseudo-header each one
# gives, the country of each relay, most recent first, "**" for a private address and
# "XX" for one the database does not place
RELAY_COUNTRY_TAGS = {"_RELAYCOUNTRY_": "X-Relay-Countries", "_RELAYCOUNTRYEXT_": "X-Relay-Countries-External",
                      "_RELAYCOUNTRYALL_": "X-Relay-Countries-All", "_RELAYCOUNTRYAUTH_": "X-Relay-Countries-Auth"}
RELAY_COUNTRY_HEADERS = frozenset(RELAY_COUNTRY_TAGS.values())
_FETCHER = re.compile(r"\bwith (?:POP3|IMAP|ETRN|ODMR|SDPS)\b.*\(fetchmail-", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Relay:
    ip: str
    rdns: str
    helo: str
    by: str
    ident: str = ""
    id: str = ""
    auth: str = ""

    def as_string(self, internal: bool) -> str:
        """SpamAssassin's form of the relay; rules match on it, field order included."""
        return (f"[ ip={self.ip} rdns={self.rdns} helo={self.helo} by={self.by} "
                f"ident={self.ident} envfrom= intl={int(internal)} id={self.id} "
                f"auth={self.auth} msa=0 ]")

    @property
    def private(self) -> bool:
        """In SpamAssassin's private ranges (not Python's is_private, which counts the
        documentation networks too)."""
        try:
            address = ipaddress.ip_address(self.ip.removeprefix("IPv6:"))
        except ValueError:
            return False
        return any(address in network for network in _PRIVATE_NETWORKS
                   if network.version == address.version)


def parse_received(value: str) -> Relay | Literal[False] | None:
    """One Received header's relay; False for a line that is not a hop (local
    delivery, localhost, no "from"), None for a hop whose format is not known."""
    line = " ".join(value.split())
    line = re.sub(r"\s?;$", "", line)
    if not re.match(r"^\(?from ", line, re.IGNORECASE) or " with local for " in line:
        return False
    if (match := re.match(r"^from (\S+) by [^\s;]+ ?;", line, re.IGNORECASE)) and \
            not re.match(r"^\[[\d.]+\]$", match.group(1)):
        return False
    line = _DATE_SUFFIX.sub("", line).replace(")by ", ") by ")
    found_id = _ID.search(line)
    helo_match = _HELO_EQUALS.search(line) or _HELO_WORD.search(line)
    by_match = _BY.search(line)
    auth_match = _AUTH.search(line) if " by " in line else None
    rest = re.sub(r"^\(?from ", "", line, flags=re.IGNORECASE)
    fields: dict[str, str] = {}
    for pattern, names in _FORMATS:
        match = pattern.match(rest)
        if match:
            fields = {name: group or "" for name, group in zip(names, match.groups())}
            break
    # (as in SpamAssassin, a line of a known format is a hop even when it is a handover
    # on the machine itself: "from lugh (root@localhost [127.0.0.1]) by lugh.example (8.9.3)")
    if not fields and any(pattern.match(rest) for pattern in _IGNORED):
        return False
    if not fields:
        loose = _ANY_BRACKETED_IP.search(rest.split(" by ", 1)[0])
        if loose is None:
            return None
        fields = {"ip": loose.group(1), "helo": rest.split(" ", 1)[0]}
    helo = fields.get("helo", "")
    rdns = fields.get("rdns", "")
    if "sub" in fields:  # Exim's "(helo=... ident=...)"
        sub_helo = re.search(r"helo=(\S+)", fields["sub"])
        ident = re.search(r"ident=(\S*)", fields["sub"])
        helo = sub_helo.group(1) if sub_helo else ""
        fields["ident"] = ident.group(1) if ident else ""
        if "rdns_exim" in fields:
            rdns = fields["rdns_exim"]
            helo = helo or rdns
    if "rdns_qmail" in fields:
        rdns = helo = fields["rdns_qmail"]
    if rdns.lower() == "unknown" or _ANY_BRACKETED_IP.fullmatch(f"[{rdns}]"):
        rdns = ""
    if not helo and helo_match:
        helo = helo_match.group(1)
    return Relay(ip=fields["ip"].removeprefix("IPv6:"), rdns=rdns, helo=helo,
                 by=fields.get("by_bare") or (by_match.group(1) if by_match else ""), ident=fields.get("ident", ""),
                 id=found_id.group(1) if found_id else "",
                 auth=auth_match.group(1) if auth_match else "")


class Relays:
    """A message's relays, most recent first, split at the trust line."""

    def __init__(self, received: list[str]) -> None:
        self.trusted: list[Relay] = []
        self.untrusted: list[Relay] = []
        self.unparseable = 0
        in_trusted = True
        for value in received:
            if _FETCHER.search(value):  # a mail fetcher's line: not a hop, the path starts again
                if in_trusted:
                    self.trusted, self.untrusted = [], []
                continue
            relay = parse_received(value)
            if relay is None:
                self.unparseable += 1
                continue
            if relay is False:
                continue
            if in_trusted and not (relay.private or relay.auth):
                in_trusted = False
            (self.trusted if in_trusted else self.untrusted).append(relay)

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
