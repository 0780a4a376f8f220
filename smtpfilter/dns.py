"""DNS for the filters that need it (dnsbl, rhsbl, resolvable_fromhost): three outcomes.

A mail filter must tell "this name does not exist" (the sender's domain is made up, the
client is not listed) from "DNS did not answer" (a list is down, the resolver is broken).
The first may refuse mail; the second must never refuse it: a DNSBL that times out lets
the mail through, and a sender domain that cannot be checked gets 451, so the sender
retries. `DnsClient.lookup` therefore answers FOUND, MISSING or FAILED, never raises.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass

import dns.exception
import dns.resolver

from smtpfilter.filter import time_left
from spamkit.atomicfile import file_signature

log = logging.getLogger("spamkit.smtpfilter.dns")

CACHE_ENTRIES = 10_000  # answers kept for their TTL: a client's MAIL and its RCPTs ask alike
RESOLV_CONF = "/etc/resolv.conf"
FOLLOW_SECONDS = 5.0  # how often a running filter looks whether RESOLV_CONF changed

# The big public resolvers (Google, Cloudflare, Quad9, OpenDNS), whose queries DNS block
# lists refuse: `spamkit lint` warns when the DNS list filters would go through one.
PUBLIC_RESOLVERS = frozenset({
    "8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
    "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001",
    "9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9",
    "208.67.222.222", "208.67.220.220",
})


class Outcome(enum.Enum):
    FOUND = "found"
    MISSING = "missing"  # NXDOMAIN, or the name exists without records of this type
    FAILED = "failed"  # timeout, SERVFAIL, REFUSED, no server reachable


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    records: tuple[str, ...] = ()  # each record as text ("127.0.0.2", "10 mx.example.org.")
    error: str = ""
    texts: tuple[bytes, ...] = ()  # TXT records: each one's strings joined, unquoted


class DnsClient:
    """Queries with one timeout for the whole lookup, through the system's resolvers or
    the ones DnsServers names ("127.0.0.1", "127.0.0.1:5353", "[::1]:53").

    The system's resolvers are followed as /etc/resolv.conf changes (`current`), as glibc
    does for Postfix's smtpd: an administrator who points it at a resolver of their own
    (a DNS list refuses the public ones), or a DHCP lease that names new ones, is heard
    without a restart. Before, the file was read once a process, SIGHUP included.
    """

    def __init__(self, servers: list[str] | None = None, timeout: float = 5.0,
                 resolv_conf: str = RESOLV_CONF) -> None:
        self.timeout = timeout  # seconds one lookup may take, all tries together
        self._resolv_conf = None if servers else resolv_conf  # (None: DnsServers, fixed)
        self._lock = threading.Lock()  # one thread reads a changed file; the others go on
        self._next_look = time.monotonic() + FOLLOW_SECONDS
        self._signature = None if servers else file_signature(resolv_conf)  # (before reading it)
        if servers:
            resolver = dns.resolver.Resolver(configure=False)
            addresses, ports = zip(*(parse_server(server) for server in servers))
            resolver.nameservers = list(addresses)
            resolver.port = ports[0]
            if len(set(ports)) > 1:  # dnspython takes one port for all the addresses
                raise ValueError("DnsServers: every server must use the same port")
        else:
            try:
                resolver = dns.resolver.Resolver(resolv_conf)
            except dns.resolver.NoResolverConfiguration as error:
                raise ValueError(f"none given, and the system names no resolver ({error}); "
                                 "set DnsServers") from None
        self.resolver = self._tuned(resolver)

    def _tuned(self, resolver: dns.resolver.Resolver) -> dns.resolver.Resolver:
        resolver.lifetime = self.timeout
        resolver.timeout = min(self.timeout, 2.0)  # per server try, within the lifetime
        resolver.cache = dns.resolver.LRUCache(CACHE_ENTRIES)
        return resolver

    def current(self) -> dns.resolver.Resolver:
        """The resolver to ask now. Every FOLLOW_SECONDS, with DnsServers empty, the
        system's file is looked at, and read again if it changed (replaced, or written in
        place). A file that then names no resolver (caught half written, say) changes
        nothing. The new resolvers start with an empty cache: what the old ones answered
        (a public resolver's refusals, say) is not kept."""
        now = time.monotonic()
        if self._resolv_conf is None or now < self._next_look or not self._lock.acquire(blocking=False):
            return self.resolver
        try:
            self._next_look = now + FOLLOW_SECONDS
            signature = file_signature(self._resolv_conf)
            if signature != self._signature:
                self._signature = signature
                self._follow(self._resolv_conf)
        finally:
            self._lock.release()
        return self.resolver

    def _follow(self, resolv_conf: str) -> None:
        before = ", ".join(map(str, self.resolver.nameservers))
        try:
            resolver = dns.resolver.Resolver(resolv_conf)
        except (dns.resolver.NoResolverConfiguration, OSError, ValueError) as error:
            log.warning("%s changed, and names no resolver now (%s): DNS lookups go on through %s",
                        resolv_conf, error, before)
            return
        after = ", ".join(map(str, resolver.nameservers))
        self.resolver = self._tuned(resolver)
        log.warning("%s changed: DNS lookups now go through %s (before: %s)", resolv_conf, after, before)
        public = [str(server) for server in resolver.nameservers if str(server) in PUBLIC_RESOLVERS]
        if public:  # (what `lint` says at start and reload, said when it happens)
            log.warning("%s is a public resolver: Spamhaus and URIBL refuse queries that come "
                        "through it, so the dnsbl, rhsbl and uribl filters, where on, refuse "
                        "nothing; name a resolver of your own in DnsServers or %s",
                        public[0], resolv_conf)

    def resolve(self, name: str, rdtype: str, seconds: float) -> dns.resolver.Answer:
        """dnspython's resolve (its exceptions too), over within `seconds` give or take
        0.1 s. dnspython pauses between rounds of tries (0.1 s, doubling up to 2 s) and
        looks at the lifetime only after the pause: a lookup given 5.4 s took 5.8 against
        a silent resolver, one given 27 s could take 29, and the DATA checks' deadline is
        3 s short of ScanBudget's 451. So each of its calls here gets one round (a try of
        each resolver), and rounds are asked again while time is left: its pause stays
        its first, 0.1 s."""
        resolver = self.current()
        started = time.monotonic()
        ends = started + seconds
        one_round = resolver.timeout * max(len(resolver.nameservers), 1)
        while True:
            try:
                return resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False,
                                        lifetime=min(one_round, max(ends - time.monotonic(), 0.001)))
            except dns.resolver.LifetimeTimeout as error:
                if time.monotonic() >= ends:  # (its message says how long, all rounds together)
                    raise dns.resolver.LifetimeTimeout(  # type: ignore[no-untyped-call]
                        timeout=time.monotonic() - started, errors=error.kwargs.get("errors", [])) from None

    def lookup(self, name: str, rdtype: str, deadline: float | None = None) -> Answer:
        """The answer, within DnsTimeout, or by `deadline` (time.monotonic(); the DATA
        checks' Transaction.deadline) if that comes first: FAILED past it, as a timeout."""
        lifetime = time_left(self.timeout, deadline)
        if lifetime <= 0:
            log.info("DNS %s %s not asked: the DATA checks' deadline has passed", rdtype, name)
            return Answer(Outcome.FAILED, error="Timeout: the DATA checks' deadline has passed")
        try:
            answer = self.resolve(name, rdtype, lifetime)
        except dns.resolver.NXDOMAIN:
            return Answer(Outcome.MISSING)
        except (dns.exception.DNSException, OSError, ValueError) as error:
            # Timeout, NoNameservers (SERVFAIL, REFUSED), a name too long or malformed
            log.info("DNS %s %s failed: %s", rdtype, name, error)
            return Answer(Outcome.FAILED, error=f"{type(error).__name__}: {error}")
        if answer.rrset is None:
            return Answer(Outcome.MISSING)
        texts = tuple(b"".join(record.strings) for record in answer.rrset) if rdtype == "TXT" else ()
        return Answer(Outcome.FOUND, tuple(record.to_text() for record in answer.rrset), texts=texts)


def parse_server(server: str) -> tuple[str, int]:
    """("address", port) of "address", "address:port" or "[v6 address]:port"; ValueError if
    the address is not an IP address (a resolver is given by address, not by name)."""
    host, port = server.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, text = host.partition(":")
        port = int(text)
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def reverse_name(address: str) -> str | None:
    """The PTR name of an address ("1.2.0.192.in-addr.arpa"); None for what is not one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:192.0.2.1, as a dual-stack socket reports an IPv4 client
    return ip.reverse_pointer


def reversed_address(address: str) -> str | None:
    """The name a DNSBL lists an address under: 192.0.2.1 → "1.2.0.192", IPv6 as 32
    reversed nibbles; None for what is not an IP address."""
    name = reverse_name(address)
    return name.rsplit(".", 2)[0] if name else None  # without in-addr.arpa / ip6.arpa
