"""Envelope checks that need no DNS: relay control, bad senders, recipients and HELO names.

Patterns use * and ? over the whole address (or name), case-insensitive, like the lists.
An address entry may also name a whole domain as qmail's and qpsmtpd's files do:
`@example.com` (badmailfrom, badrcptto) or a bare `example.com` (whitelistsenders); either
stands for every address at that domain, not its subdomains (`*@*.example.com` for them).
The bad lists are for strangers: our own clients (LocalNetworks, RelayClients) are
immune, as qpsmtpd's plugins leave a relay client alone. So SME's "internal only"
recipients (badrcptto for the outside) stay reachable from the office, and our own
domain in BadMailFrom refuses only the outsiders who forge it.
"""

from __future__ import annotations

import ipaddress

from spamkit.config.endpoints import is_host_name
from smtpfilter.filter import CONTINUE, Action, Decision, Filter, Transaction, reject, tempfail
from smtpfilter.networks import LocalClients, Networks
from spamkit.lists import matches


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip("<>").lower().rstrip(".")  # (a final dot is the same domain)


def address_matches(entry: str, address: str) -> bool:
    """Whether an address list entry (lower case) covers `address` (see the module's
    docstring): `@domain` or a bare domain name covers the domain's addresses; else the
    entry is a pattern over the whole address."""
    address = address.lower()
    if entry.startswith("@"):
        return bool(address) and _domain(address) == entry[1:].rstrip(".")
    if "@" not in entry and not any(mark in entry for mark in "*?["):
        return bool(address) and _domain(address) == entry.rstrip(".")
    return matches(entry, address)


def _routed(recipient: str) -> bool:
    """Sender-specified routing: user%elsewhere@ours, elsewhere!user@ours, a quoted
    "user@elsewhere"@ours, a source route @ours:user@elsewhere. The next hop takes our
    mail as a relay client's, and Postfix (allow_percent_hack, swap_bangpath) or sendmail
    would send such an address on to `elsewhere`: an open relay through us. Postfix
    refuses them from strangers for the same reason (allow_untrusted_routing = no)."""
    address = recipient.strip().strip("<>")
    local = address.rpartition("@")[0]
    return address.startswith("@") or any(mark in local for mark in "@%!")


class Relay(Filter):
    """Take mail for LocalDomains only, unless the client may relay (RelayClients, or one
    that logged in with SMTP AUTH): never an open relay."""

    name = "relay"

    def __init__(self, local_domains: list[str], relay_clients: list[str], max_recipients: int) -> None:
        self.local_domains = {d.lower().rstrip(".") for d in local_domains}
        # (addresses and networks: a set of strings let no client of 192.168.1.0/24 relay);
        # a client that logged in (SMTP AUTH) relays too, as on SME
        self.relay_clients = LocalClients([], relay_clients)
        self.max_recipients = max_recipients

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        if len(tx.rcpt_tos) >= self.max_recipients:
            return tempfail(self.name, "452 4.5.3 Too many recipients")
        if self.relay_clients.holds(tx):
            return CONTINUE
        if recipient.strip().strip("<>").lower() == "postmaster":
            return CONTINUE  # RCPT TO:<Postmaster>, which RFC 5321 says every server takes
        if _domain(recipient) not in self.local_domains:
            return reject(self.name, "554 5.7.1 Relay access denied")
        if _routed(recipient):
            return reject(self.name, "554 5.7.1 Relay access denied: sender-specified routing")
        return CONTINUE


class BadMailFrom(Filter):
    name = "badmailfrom"

    def __init__(self, patterns: list[str], whitelist: list[str], local: LocalClients | None = None) -> None:
        self.patterns = [p.lower() for p in patterns]
        self.whitelist = [p.lower() for p in whitelist]
        self.local = local or LocalClients([], [])

    def mail(self, tx: Transaction) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        sender = tx.mail_from.lower()
        if any(address_matches(p, sender) for p in self.whitelist):
            return Decision(Action.CONTINUE)
        if any(address_matches(p, sender) for p in self.patterns):
            return reject(self.name, "550 5.7.1 Sender refused by policy")
        return CONTINUE


class BadRcptTo(Filter):
    name = "badrcptto"

    def __init__(self, patterns: list[str], local: LocalClients | None = None) -> None:
        self.patterns = [p.lower() for p in patterns]
        self.local = local or LocalClients([], [])

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        if any(address_matches(p, recipient) for p in self.patterns):
            return reject(self.name, "550 5.7.1 Recipient refused by policy")
        return CONTINUE


class BadHelo(Filter):
    """Lenient: refuses only configured names and a HELO that is empty."""

    name = "badhelo"

    def __init__(self, patterns: list[str], local: LocalClients | None = None) -> None:
        self.patterns = [p.lower() for p in patterns]
        self.local = local or LocalClients([], [])

    def mail(self, tx: Transaction) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        helo = tx.helo.strip().lower()
        if not helo:
            return reject(self.name, "503 5.5.1 Say HELO or EHLO first")
        if any(matches(p, helo) for p in self.patterns):
            return reject(self.name, f"550 5.7.1 HELO {helo} refused by policy")
        return CONTINUE


class Helo(Filter):
    """qpsmtpd's `helo` at its lenient policy, the SME default, without DNS.

    A client outside LocalNetworks must greet with a host name or an address literal
    of its own address: not a bare IP, not malformed, not "localhost", not one of our
    own names (a spam engine's favourite lie). Checked at MAIL, like qpsmtpd, so the
    client hears why. (The rfc and strict policies add DNS checks: plugins/dns.py.)
    """

    name = "helo"

    def __init__(self, own_names: list[str], local_networks: list[str]) -> None:
        self.own_names = {n.strip().lower().rstrip(".") for n in own_names if n.strip()}
        self.local = LocalClients(local_networks, [])

    def mail(self, tx: Transaction) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        try:
            client = ipaddress.ip_address(tx.peer)
        except ValueError:
            client = None
        helo = tx.helo.strip().lower()
        if not helo:
            return CONTINUE  # badhelo's case
        if helo.startswith("[") and helo.endswith("]"):
            literal = helo[1:-1].removeprefix("ipv6:")
            try:
                claimed = ipaddress.ip_address(literal)
            except ValueError:
                return reject(self.name, f"550 5.7.1 HELO {helo} is not an address literal")
            if claimed != client:
                return reject(self.name, f"550 5.7.1 HELO {helo} is not your address")
            return CONTINUE
        try:
            ipaddress.ip_address(helo)
        except ValueError:
            pass
        else:
            return reject(self.name, f"550 5.7.1 HELO {helo}: a bare IP address; say [{helo}]")
        name = helo.rstrip(".")
        if not is_host_name(name):
            return reject(self.name, "550 5.7.1 HELO is not a host name")
        if name == "localhost" or name.endswith(".localhost"):
            return reject(self.name, "550 5.7.1 You are not localhost")
        if name in self.own_names:
            return reject(self.name, f"550 5.7.1 You are not {name}")
        return CONTINUE


class WhitelistHosts(Filter):
    """Clients (addresses or networks) whose mail skips every other filter."""

    name = "whitelisthosts"

    def __init__(self, networks: list[str]) -> None:
        self.networks = Networks(networks)

    def connect(self, tx: Transaction) -> Decision:
        if tx.peer in self.networks:
            return Decision(Action.ACCEPT, "", self.name)
        return CONTINUE


class WhitelistHelo(Filter):
    """HELO names (patterns) whose mail skips every other filter."""

    name = "whitelisthelo"

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p.lower() for p in patterns]

    def helo(self, tx: Transaction) -> Decision:
        if any(matches(p, tx.helo.strip().lower()) for p in self.patterns):
            return Decision(Action.ACCEPT, "", self.name)
        return CONTINUE


class BadMailFromTo(Filter):
    """Sender and recipient pairs refused together ("SENDER RECIPIENT", patterns)."""

    name = "badmailfromto"

    def __init__(self, pairs: list[str], local: LocalClients | None = None) -> None:
        self.pairs = []
        for pair in pairs:
            parts = pair.lower().split()
            if len(parts) == 2:
                self.pairs.append((parts[0], parts[1]))
        self.local = local or LocalClients([], [])

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        sender = tx.mail_from.lower()
        if any(address_matches(s, sender) and address_matches(r, recipient) for s, r in self.pairs):
            return reject(self.name, "550 5.7.1 Mail from this sender to this recipient is refused")
        return CONTINUE
