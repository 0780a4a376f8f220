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
from dataclasses import dataclass

import dns.exception
import dns.resolver

log = logging.getLogger("spamkit.smtpfilter.dns")

CACHE_ENTRIES = 10_000  # answers kept for their TTL: a client's MAIL and its RCPTs ask alike

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
    the ones DnsServers names ("127.0.0.1", "127.0.0.1:5353", "[::1]:53")."""

    def __init__(self, servers: list[str] | None = None, timeout: float = 5.0) -> None:
        if servers:
            self.resolver = dns.resolver.Resolver(configure=False)
            addresses, ports = zip(*(parse_server(server) for server in servers))
            self.resolver.nameservers = list(addresses)
            self.resolver.port = ports[0]
            if len(set(ports)) > 1:  # dnspython takes one port for all the addresses
                raise ValueError("DnsServers: every server must use the same port")
        else:
            try:
                self.resolver = dns.resolver.Resolver()  # /etc/resolv.conf
            except dns.resolver.NoResolverConfiguration as error:
                raise ValueError(f"none given, and the system names no resolver ({error}); "
                                 "set DnsServers") from None
        self.timeout = timeout  # seconds one lookup may take, all tries together
        self.resolver.lifetime = timeout
        self.resolver.timeout = min(timeout, 2.0)  # per server try, within the lifetime
        self.resolver.cache = dns.resolver.LRUCache(CACHE_ENTRIES)

    def lookup(self, name: str, rdtype: str) -> Answer:
        try:
            answer = self.resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
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
