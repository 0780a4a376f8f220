"""uribl: the domains a message links to, asked of URI blocklists (SME's URIBL plugin).

SME's guide: "works a bit like RHSBL, except that it checks domain names found in the
body of the email", with the lists in UBLList. An entry is a zone, optionally with the
answer bits that count: "multi.surbl.org:8-16-64-128" (SME's default) counts an answer
whose address has any of those bits, so one query to a combined list asks only about
the lists chosen.

What is asked: each link's organizational domain (example.co.uk for
www.shop.example.co.uk, as the lists list them), or, for a link to an IP address, that
address reversed. The links come from the parsed message, so they are found in HTML,
base64 and quoted-printable parts alike. At most MAX_DOMAINS a message, in the order they
appear (SpamAssassin's uridnsbl_max_domains), less LocalDomains and UriblSkipDomains.
Mail from LocalNetworks and RelayClients is not checked: a user forwarding a spam report
links to spam.

What a listing does is UriblAction: deny (554, the default, as RHSBL refuses), denysoft
(451), add-header (an X-URIBL-Match header per listing, for the rules or the users'
filters), or log. A list that does not answer, or answers with an error code
(127.255.255.x, URIBL's 127.0.0.1 for a refused query), lists nothing, and so does one
that lists the name INVALID, which RFC 5782 says no list may (smtpfilter.dnslists). Any
X-URIBL-Match that arrived with the message is removed, so the header can be trusted.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from smtpfilter.dns import DnsClient, Outcome
from smtpfilter.dnslists import ListHealth, zones
from smtpfilter.domains import organizational_domain
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject, tempfail, time_left
from smtpfilter.headers import without_fields
from smtpfilter.networks import LocalClients
from spamkit.errors import ConfigError
from spamkit.message import DEFAULT_LIMITS, ParsedMessage, ParseLimits, parse_message
from spamkit.tokenizer.urls import MAX_URLS, url_host

log = logging.getLogger("spamkit.smtpfilter")

MAX_DOMAINS = 20  # domains asked about per message (SpamAssassin's uridnsbl_max_domains)
LOOKUP_THREADS = 8  # lookups of one message in flight together
ACTIONS = ("deny", "denysoft", "add-header", "log")
HEADER = "X-URIBL-Match"
ANY_LISTING = 0xFFFFFFFF
_MASKS = re.compile(r"[0-9]+(?:-[0-9]+)*")
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")


@dataclass(frozen=True)
class UriZone:
    zone: str
    mask: int = ANY_LISTING  # bits of the answer's address that make a listing

    def answers(self, record: str) -> bool:
        """Whether a listing's address has one of the bits this zone is asked for."""
        try:
            return bool(int(ipaddress.IPv4Address(record)) & self.mask & 0x00FFFFFF)
        except ValueError:  # an IPv6 record in an A answer: not one of ours
            return False


@dataclass(frozen=True)
class Listing:
    name: str  # the domain (or reversed address) asked about
    zone: str
    answer: str

    def describe(self) -> str:
        return f"{self.name} in {self.zone}: {self.answer}"


def uri_zones(entries: list[str], origin: str = "UBLList") -> list[UriZone]:
    """UBLList's entries: "zone", "zone:8-16-64-128", or zones joined by ',' (as SME
    writes UBLList) or ':' (as it writes its other lists); a mask belongs to the zone just
    before it."""
    out: list[UriZone] = []
    for part in zones(entries):
        if _MASKS.fullmatch(part):
            if not out:
                raise ConfigError(f"{origin}: mask {part!r} comes before any zone")
            mask = 0
            for bits in part.split("-"):
                mask |= int(bits)
            out[-1] = UriZone(out[-1].zone, mask)
        else:
            out.append(UriZone(part))
    return out


def link_names(message: ParsedMessage, skip: frozenset[str]) -> list[str]:
    """What the lists are asked about for this message's links, in order, at most MAX_DOMAINS."""
    names: list[str] = []
    for url in message.urls[:MAX_URLS]:
        host = url_host(url)
        if not host:
            continue
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        if address is not None:
            if address.version != 4 or not address.is_global:
                continue  # the lists list public IPv4 addresses
            name = ".".join(reversed(str(address).split(".")))
        else:
            if not host.isascii():
                try:
                    host = host.encode("idna").decode("ascii")
                except UnicodeError:
                    continue
            if not _HOST_NAME.fullmatch(host):
                continue
            name = organizational_domain(host)
            if name in skip:
                continue
        if name not in names:
            names.append(name)
            if len(names) == MAX_DOMAINS:
                break
    return names


class Uribl(Filter):
    name = "uribl"
    blocking = True

    def __init__(self, zones: list[UriZone], local: LocalClients, dns: DnsClient, action: str,
                 skip_domains: list[str], limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.zones = zones
        self.local = local
        self.dns = dns
        self.action = action
        self.skip = frozenset(d.lower().strip(".") for d in skip_domains)
        self.limits = limits
        self.health = ListHealth(dns, "UBLList")
        self._pool = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="spamkit-uribl")

    def data(self, tx: Transaction) -> Decision:
        tx.data = without_fields(tx.data, HEADER)  # only ours may be trusted
        if self.local.holds(tx):
            return CONTINUE  # our own users' mail (a forwarded spam report links to spam)
        earlier = tx.notes.get("parsed")
        message = earlier[1] if isinstance(earlier, tuple) and earlier[0] is tx.data else None
        if message is None:
            message = parse_message(tx.data, self.limits)
            tx.notes["parsed"] = (tx.data, message)  # spamscore scores this parse
        found = self.listings(link_names(message, self.skip), tx.deadline)
        if not found:
            return CONTINUE
        tx.notes["uribl"] = "; ".join(listing.describe() for listing in found)
        log.warning("uribl: message from %s links to listed domains: %s", tx.peer, tx.notes["uribl"])
        first = found[0]
        if self.action == "deny":
            return reject(self.name, f"554 5.7.1 Message refused: it links to {first.name}, "
                                     f"listed by {first.zone}")
        if self.action == "denysoft":
            return tempfail(self.name, f"451 4.7.1 Message deferred: it links to {first.name}, "
                                       f"listed by {first.zone}")
        if self.action == "add-header":
            headers = b"".join(f"{HEADER}: {listing.describe()}\r\n".encode() for listing in found)
            tx.data = headers + tx.data
        return CONTINUE

    def listings(self, names: list[str], deadline: float | None = None) -> list[Listing]:
        """Every (name, zone) that lists, each name and zone asked once, LOOKUP_THREADS at
        a time. Once a zone's lookup fails, its lookups not yet sent are dropped, and none
        is sent later than one DnsTimeout after the first: a dead list or resolver costs a
        message about one DnsTimeout, not one per domain; none is sent, nor waited for,
        past `deadline` (the DATA checks')."""
        failed: set[str] = set()
        send_by = time.monotonic() + time_left(self.dns.timeout, deadline)
        queries = [(name, zone) for name in names for zone in self.zones]
        answers = list(self._pool.map(
            lambda query: self._ask(query[0], query[1], failed, send_by, deadline), queries))
        return [found for found in answers if found is not None]

    def _ask(self, name: str, zone: UriZone, failed: set[str], send_by: float,
             deadline: float | None) -> Listing | None:
        if zone.zone in failed or time.monotonic() > send_by:
            return None
        answer = self.dns.lookup(f"{name}.{zone.zone}", "A", deadline)
        if answer.outcome is Outcome.FAILED:
            failed.add(zone.zone)
        record = self.health.listed(zone.zone, name, answer, zone.answers)
        return Listing(name, zone.zone, record) if record is not None else None
