"""geoip: the client's country, from a country database (spamkit.geoip), noted on the
log line and, if the administrator asks, refused: BlockedCountries, or every country
but AllowedCountries (the GeoIP plugin the SME guide points to).

Blocking by country is crude, and the guide says so: it refuses every sender of a
country, and the data misplaces some addresses. So the filter refuses only what the
database places (an address it does not know passes), never our own clients (who may
travel: their login is what counts), and never mail to postmaster@ or abuse@, at RCPT
as the DNS lists do, so that a refused sender can still ask why.
"""

from __future__ import annotations

from collections.abc import Iterable

from smtpfilter.filter import CONTINUE, COUNTRY_NOTE, Decision, Filter, Transaction, reject
from smtpfilter.networks import LocalClients
from smtpfilter.plugins.dns import always_receives
from spamkit.geoip import Countries


class GeoIP(Filter):
    name = "geoip"
    # Lookups are in memory (under 10 us); the database is read when the filter is built,
    # and a replaced file is read again on a thread of its own (Countries).
    blocking = False

    def __init__(self, countries: Countries, blocked: Iterable[str], allowed: Iterable[str],
                 local: LocalClients) -> None:
        self.countries = countries
        self.blocked = frozenset(code.upper() for code in blocked)
        self.allowed = frozenset(code.upper() for code in allowed)
        self.local = local

    def mail(self, tx: Transaction) -> Decision:
        tx.notes[COUNTRY_NOTE] = self.countries.country(tx.peer) or "-"
        return CONTINUE

    def rcpt(self, tx: Transaction, recipient: str) -> Decision:
        country = str(tx.notes.get(COUNTRY_NOTE, "-"))
        if country == "-" or not self.refuses(country) or self.local.holds(tx) \
                or always_receives(recipient):
            return CONTINUE
        return reject(self.name, f"550 5.7.1 Mail from your address [{tx.peer}] in {country} "
                                 "is not accepted here; write to postmaster")

    def refuses(self, country: str) -> bool:
        return country in self.blocked or bool(self.allowed) and country not in self.allowed
