"""senderlogin: a user who logged in (SMTP AUTH) sends only as an address of theirs.

Without it, whoever has one user's password may send as any address: as the manager to
the accountant, from our own server (which SPF passes) and with our DKIM signature
(dkimsign signs our clients' mail). Postfix's reject_sender_login_mismatch does this.
SME's qpsmtpd has no such check, so the filter runs only where SmtpFilters names it.

Whose address is whose:
- a login owns LOGIN@ each of LocalDomains (a login that is an address owns that address);
- SenderLogins gives more, as `ADDRESS LOGIN...`: ADDRESS is a local part (at each of
  LocalDomains: SME's pseudonyms, which `config import-sme` writes so; * and ? match in
  it), a whole address, `@domain` for all of a domain's addresses, or a pattern with *
  and ? over the whole address.
Case does not matter, as Dovecot's logins and mail domains are compared in lower case.

The null sender (<>) passes: it is no one's address, and read receipts (RFC 8098) and
bounces go with it. A client that did not log in is not this filter's: our own domains
in BadMailFrom refuse the strangers who forge them.
"""

from __future__ import annotations

from smtpfilter.domains import ascii_domain
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject
from smtpfilter.logtext import reply_text
from smtpfilter.plugins.envelope import address_matches
from spamkit.lists import matches


def _pattern(address: str) -> str:
    """A SenderLogins entry's address as senders are compared: a local part (no "@"), or
    an address list entry (envelope.address_matches) whose domain, if no pattern, is in
    its DNS form."""
    local, at, domain = address.rpartition("@")
    if at and not any(mark in domain for mark in "*?["):
        return f"{local}@{ascii_domain(domain)}"
    return address


class SenderLogin(Filter):
    name = "senderlogin"

    def __init__(self, local_domains: list[str], grants: list[str]) -> None:
        self.local_domains = frozenset(ascii_domain(domain) for domain in local_domains)
        # each login's patterns, so a MAIL reads only its own user's entries
        # (the entries as the configuration checked them: options._not_a_grant)
        self.patterns_of: dict[str, list[str]] = {}
        for entry in grants:
            address, *logins = entry.lower().split()
            for login in logins:
                self.patterns_of.setdefault(login, []).append(_pattern(address))

    def mail(self, tx: Transaction) -> Decision:
        sender = tx.mail_from.strip().strip("<>")  # (aiosmtpd gives the null sender as "<>")
        if not tx.authenticated or not sender or self.owns(tx.authenticated, sender):
            return CONTINUE
        return reject(self.name, "553 5.7.1 Sender address rejected: not owned by user "
                                 f"{reply_text(tx.authenticated)}")

    def owns(self, login: str, sender: str) -> bool:
        """Whether `login` may send as `sender` (see the module's docstring)."""
        login = login.lower()
        local, _, domain = sender.lower().rpartition("@")
        domain = ascii_domain(domain)
        ours = domain in self.local_domains
        if "@" in login:
            login_local, _, login_domain = login.rpartition("@")
            if (local, domain) == (login_local, ascii_domain(login_domain)):
                return True
        elif ours and local == login:
            return True
        address = f"{local}@{domain}"
        for pattern in self.patterns_of.get(login, ()):
            if "@" in pattern:
                if address_matches(pattern, address):
                    return True
            elif ours and matches(pattern, local):
                return True
        return False
