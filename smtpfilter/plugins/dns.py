"""The envelope checks that ask DNS: dnsbl, rhsbl and resolvable_fromhost (qpsmtpd's names),
and the helo filter's rfc and strict policies (DnsHelo).

Clients in LocalNetworks or RelayClients are never asked about (SME turns these off for
local connections; DnsHelo, like the lenient helo check, spares LocalNetworks). A DNS
server that does not answer never refuses mail: a list that is down lets it through, a
HELO name that cannot be checked passes, and a sender domain that cannot be checked
gets 451. Nor does a list that answers every query as a listing (smtpfilter.dnslists).

dnsbl and rhsbl refuse at RCPT, not at MAIL, so that mail to postmaster@ and abuse@
still arrives (RFC 5321 4.5.1): a listed sender must be able to ask why.
"""

from __future__ import annotations

import ipaddress
import logging

from smtpfilter.dns import DnsClient, Outcome, reverse_name, reversed_address
from smtpfilter.dnslists import ListHealth
from smtpfilter.domains import ascii_domain
from smtpfilter.filter import CONTINUE, Action, Decision, Filter, Transaction, reject, tempfail
from smtpfilter.networks import LocalClients
from smtpfilter.plugins.envelope import Helo

log = logging.getLogger("spamkit.smtpfilter")

ALWAYS_RECEIVE = ("postmaster", "abuse")


def always_receives(recipient: str) -> bool:
    """postmaster@ and abuse@, whom the checks for strangers never refuse mail for
    (RFC 5321 4.5.1): a refused sender must be able to ask why."""
    return recipient.strip("<>").rpartition("@")[0].lower() in ALWAYS_RECEIVE


def _domain(address: str) -> str:
    """The sender's domain, in its ASCII (IDNA) form when it is international (one IDNA
    cannot encode is left as it is: _is_host_name refuses it)."""
    return ascii_domain(address.strip("<>").rpartition("@")[2])


class _ListCheck(Filter):
    """A check of one name against DNS lists (zones), at RCPT."""

    blocking = True

    option = ""  # the setting that names the zones

    def __init__(self, zones: list[str], local: LocalClients, dns: DnsClient) -> None:
        self.zones = zones
        self.local = local
        self.dns = dns
        self.health = ListHealth(dns, self.option)

    def spared(self, tx: Transaction, recipient: str) -> bool:
        return self.local.holds(tx) or always_receives(recipient)

    def listed_by(self, name: str) -> str | None:
        """The first zone that lists `name` ("1.2.0.192", "example.net"), or None. A zone
        that lists everything (RFC 5782's test entry) lists no one."""
        for zone in self.zones:
            if self.health.listed(zone, name, self.dns.lookup(f"{name}.{zone}", "A")):
                return zone
        return None


class Dnsbl(_ListCheck):
    """Refuse clients whose address an RBLList zone lists."""

    name = "dnsbl"
    option = "RBLList"

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        name = reversed_address(tx.peer)
        if name is None or self.spared(tx, recipient):
            return CONTINUE
        zone = self.listed_by(name)
        if zone is None:
            return CONTINUE
        tx.notes["dnsbl"] = zone
        return reject(self.name, f"554 5.7.1 Service unavailable; client host [{tx.peer}] "
                                 f"blocked using {zone}{self._reason(name, zone)}")

    def _reason(self, name: str, zone: str) -> str:
        """The list's TXT record (usually a URL explaining the listing), if it has one."""
        answer = self.dns.lookup(f"{name}.{zone}", "TXT")
        if answer.outcome is not Outcome.FOUND or not answer.texts:
            return ""
        text = answer.texts[0].decode("utf-8", "replace")
        return "; " + "".join(c for c in text if c.isprintable())[:200]


class Rhsbl(_ListCheck):
    """Refuse mail whose sender domain an SBLList zone lists (dbl.spamhaus.org and the like)."""

    name = "rhsbl"
    option = "SBLList"

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        domain = _domain(tx.mail_from)
        if not domain or domain.startswith("[") or not _is_host_name(domain) \
                or self.spared(tx, recipient):
            return CONTINUE  # no sender (a bounce), an address literal, or a local client
        zone = self.listed_by(domain)
        if zone is None:
            return CONTINUE
        tx.notes["rhsbl"] = zone
        return reject(self.name, f"554 5.7.1 Sender address rejected: {domain} is listed by {zone}")


class ResolvableFromHost(Filter):
    """The sender's domain must be able to take a reply: an MX, or an address when it has
    no MX (RFC 5321 5.1). A made-up domain is refused with 550; a null MX (RFC 7505, the
    domain says it takes no mail) too; a lookup that fails gets 451."""

    name = "resolvable_fromhost"
    blocking = True

    def __init__(self, local: LocalClients, dns: DnsClient) -> None:
        self.local = local
        self.dns = dns

    def mail(self, tx: Transaction) -> Decision:
        domain = _domain(tx.mail_from)
        if not domain or self.local.holds(tx) or domain.startswith("["):
            return CONTINUE  # the null sender (bounces), local clients, address literals
        if not _is_host_name(domain):
            return reject(self.name, f"550 5.1.8 Sender address rejected: {domain!r} is not a "
                                     "domain name")
        mx = self.dns.lookup(domain, "MX")
        if mx.outcome is Outcome.FOUND:
            if all(record.split()[-1] == "." for record in mx.records):
                return reject(self.name, f"550 5.1.8 Sender address rejected: {domain} accepts "
                                         "no mail (null MX)")
            return CONTINUE
        # A failed lookup ends it at once: the next would most likely wait out the same
        # broken resolver, and the client would wait for all of them.
        answer = mx
        for rdtype in ("A", "AAAA"):
            if answer.outcome is Outcome.FAILED:
                break
            answer = self.dns.lookup(domain, rdtype)
            if answer.outcome is Outcome.FOUND:
                return CONTINUE
        if answer.outcome is Outcome.FAILED:
            return tempfail(self.name, f"451 4.1.8 Sender address rejected: cannot look up "
                                       f"{domain} now, please try again later")
        return reject(self.name, f"550 5.1.8 Sender address rejected: domain {domain} has no "
                                 "mail server or address")


class DnsHelo(Helo):
    """qpsmtpd's helo at its rfc and strict policies: the lenient checks, then DNS.

    rfc: the name must be fully qualified and resolve (A, AAAA or MX), and the client's
    address must have a reverse name (PTR). strict: and the name must be the client's:
    one of its addresses is the client's, or the client's reverse name is it. A lookup
    that fails refuses nothing. Address literals were checked against the client by the
    lenient policy and are not looked up.
    """

    blocking = True

    def __init__(self, own_names: list[str], local_networks: list[str], policy: str,
                 dns: DnsClient) -> None:
        super().__init__(own_names, local_networks)
        self.strict = policy == "strict"
        self.dns = dns

    def mail(self, tx: Transaction) -> Decision:
        decision = super().mail(tx)
        name = tx.helo.strip().lower().rstrip(".")
        if decision.action is not Action.CONTINUE or self.local.holds(tx) or not name \
                or name.startswith("["):
            return decision
        if "." not in name:
            return reject(self.name, f"550 5.7.1 HELO {name} is not a fully qualified host name")
        answers = []
        for rdtype in ("A", "AAAA", "MX"):
            answers.append(self.dns.lookup(name, rdtype))
            if answers[-1].outcome is Outcome.FAILED:
                return CONTINUE  # and ask no more of a resolver that does not answer
        if all(answer.outcome is Outcome.MISSING for answer in answers):
            return reject(self.name, f"550 5.7.1 HELO {name} does not resolve")
        pointer = reverse_name(tx.peer)
        reverse = self.dns.lookup(pointer, "PTR") if pointer else None
        if reverse is not None and reverse.outcome is Outcome.MISSING:
            return reject(self.name, f"550 5.7.1 Your address [{tx.peer}] has no reverse DNS name")
        if not self.strict or reverse is None or reverse.outcome is Outcome.FAILED:
            return CONTINUE
        addresses = {record for answer in answers[:2] for record in answer.records}
        reverse_names = {record.lower().rstrip(".") for record in reverse.records}
        client = str(ipaddress.ip_address(tx.peer))
        if client in addresses or name in reverse_names:
            return CONTINUE
        return reject(self.name, f"550 5.7.1 HELO {name} does not match your address [{tx.peer}]")


def _is_host_name(domain: str) -> bool:
    labels = domain.split(".")
    return (len(domain) <= 253 and len(labels) >= 2
            and all(0 < len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
                    and label.isascii() for label in labels))
